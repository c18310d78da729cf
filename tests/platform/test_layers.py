"""The layers point down (docs/architecture.md, "Layers and the ways between domains"): core imports
no app, the bridge only core, and a domain never reaches into another's models or private names."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = {
    "kafka_platform",
    "core",
    "bridge",
    "payments",
    "ledger",
    "notifications",
    "audit",
    "orders",
    "bench",
}
DOMAINS = {"payments", "ledger", "notifications", "audit", "orders"}


def _imports(package: str) -> Iterator[tuple[str, str, list[str]]]:
    """(file, imported module, names) for every absolute import in the package, lazy ones too."""
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            where = str(path.relative_to(ROOT))
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield where, node.module, [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield where, alias.name, []


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def test_core_imports_no_app_of_the_project() -> None:
    found = [(f, m) for f, m, _ in _imports("core") if _top(m) in PROJECT - {"core"}]
    assert found == []


def test_the_bridge_imports_only_core() -> None:
    found = [(f, m) for f, m, _ in _imports("bridge") if _top(m) in PROJECT - {"core", "bridge"}]
    assert found == []


def test_no_domain_reads_another_domains_models_or_private_names() -> None:
    found = []
    for domain in sorted(DOMAINS):
        for where, module, names in _imports(domain):
            other = _top(module)
            if other not in DOMAINS or other == domain or "/migrations/" in where:
                continue
            if ".models" in module or "models" in names or any(n.startswith("_") for n in names):
                found.append((where, module, names))
    assert found == []


def test_the_scan_reads_imports_inside_functions() -> None:
    """Lazy imports count (one inside a function hid an arrow before): payments/events.py reads
    its own models only inside `PaymentProcessed.is_capture`."""
    imports = [module for where, module, _ in _imports("payments") if where == "payments/events.py"]
    assert "payments.models" in imports
