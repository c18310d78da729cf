"""docs/settings.md against the code: every environment variable read is listed, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_DOC = ROOT / "docs" / "settings.md"

# `env.int("NAME", ...)`, `env("NAME")`, `env.list(\n    "NAME", ...)`: django-environ reads.
ENV_READ = re.compile(r"\benv(?:\.[a-z_]+)?\(\s*\"([A-Z][A-Z0-9_]*)\"")
# gunicorn.conf.py runs before Django and reads os.environ itself.
OS_ENVIRON_READ = re.compile(r"os\.environ\.get\(\s*\"([A-Z][A-Z0-9_]*)\"")
# Names settings.py reads through a loop over a tuple (the OTLP endpoints).
NAME_TUPLE = re.compile(r"^[A-Z_]+_VARIABLES = \(([^)]*)\)", re.MULTILINE)
# Read by gunicorn.conf.py but the operating system's, not the platform's.
NOT_PLATFORM_SETTINGS = frozenset({"TMPDIR"})


def names_read_by_code() -> set[str]:
    settings = (ROOT / "kafka_platform" / "settings.py").read_text()
    names = set(ENV_READ.findall(settings))
    for group in NAME_TUPLE.findall(settings):
        names.update(re.findall(r"\"([A-Z][A-Z0-9_]*)\"", group))
    names.update(OS_ENVIRON_READ.findall((ROOT / "gunicorn.conf.py").read_text()))
    return names - NOT_PLATFORM_SETTINGS


def names_documented(text: str) -> set[str]:
    """Names in backticks in the first column of the document's tables (`ANYMAIL_<ESP>_...` is a pattern)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_the_parsers_see_the_forms_the_code_uses() -> None:
    sample = 'A = env.int("ONE", default=1)\nB = env.list(\n    "TWO", default=[]\n)\nC = env("THREE")\n'
    assert set(ENV_READ.findall(sample)) == {"ONE", "TWO", "THREE"}
    table = "| `ONE`, `TWO` | `1` | x `NOT_FIRST_COLUMN` |\n| `ANYMAIL_<ESP>_<SETTING>` | - | - |\n"
    assert names_documented(table) == {"ONE", "TWO"}


def test_the_code_reads_variables_the_settings_doc_names() -> None:
    # A sanity floor: the parsers found the bulk of the settings, not next to nothing.
    read = names_read_by_code()
    assert {"DATABASE_URL", "BRIDGE_BATCH_MAX", "GUNICORN_BIND", "OTEL_EXPORTER_OTLP_ENDPOINT"} <= read
    assert len(read) > 80


def test_every_variable_the_code_reads_is_in_the_settings_doc() -> None:
    missing = names_read_by_code() - names_documented(SETTINGS_DOC.read_text())
    assert not missing, f"read by the code but not in docs/settings.md: {sorted(missing)}"


def test_every_variable_in_the_settings_doc_is_read_by_the_code() -> None:
    stale = names_documented(SETTINGS_DOC.read_text()) - names_read_by_code()
    assert not stale, f"in docs/settings.md but read by no code: {sorted(stale)}"
