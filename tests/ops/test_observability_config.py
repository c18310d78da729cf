"""Alert rules and dashboard query only metrics and labels the platform defines; promtool agrees."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from core import metrics
from tests.support.processes import ROOT

DOCKER = ROOT / "docker"
PROMETHEUS = DOCKER / "prometheus"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "kafka-platform.json"

# Series that Prometheus itself makes for every target, with the labels of its scrape config.
PROMETHEUS_SERIES: dict[str, frozenset[str]] = {"up": frozenset()}
TARGET_LABELS = frozenset({"job", "instance"})
# Metrics a rule may name before core/metrics.py has them (none now): an entry here
# fails test_allowed_missing_metrics_are_still_missing as soon as the registry has it.
NOT_YET_IN_REGISTRY: dict[str, frozenset[str]] = {}

# PromQL words that look like metric names: functions are followed by "(" and filtered out by
# the parser below; these are the keywords and modifiers that are not.
PROMQL_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"})
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
IDENTIFIER = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name the platform's metrics module exposes, with the labels it carries.

    Walks the module's metric objects (not the global registry, which also holds process and
    Django metrics the platform does not own) and expands each family as the exposition format
    does: a counter `x` is scraped as `x_total`, a histogram as `x_bucket` (+ `le`), `x_sum`, `x_count`.
    """
    series: dict[str, frozenset[str]] = {}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            # prometheus_client offers no public accessor for a metric's label names.
            labels = frozenset(obj._labelnames)
        elif Collector in type(obj).__mro__:  # a Protocol: isinstance() refuses it; the mro does not
            labels = frozenset()
        else:
            continue
        for family in obj.describe():
            if family.type == "counter":
                series[f"{family.name}_total"] = labels
            elif family.type == "histogram":
                series[f"{family.name}_bucket"] = labels | {"le"}
                series[f"{family.name}_sum"] = labels
                series[f"{family.name}_count"] = labels
            else:
                series[family.name] = labels
    return series


@dataclass(frozen=True)
class Use:
    """A metric named in a query, and the labels the query matches it on."""

    metric: str
    labels: frozenset[str]


def metrics_used(expr: str) -> Iterator[Use]:
    """The metric names of a PromQL expression (functions, keywords and label values excluded)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values are data, not names
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations, Grafana variables
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    for match in SELECTOR.finditer(text):
        if match.group(1):
            labels = frozenset(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", match.group(2)))
            yield Use(match.group(1), labels)
    text = SELECTOR.sub(" ", text)
    for name in IDENTIFIER.findall(text):
        if name not in PROMQL_KEYWORDS and not re.fullmatch(r"\d+[smhdwy]|e\d+|inf|nan", name, re.IGNORECASE):
            yield Use(name, frozenset())


def problems(expr: str, known: dict[str, frozenset[str]]) -> list[str]:
    found = []
    for use in metrics_used(expr):
        if use.metric not in known:
            found.append(f"unknown metric {use.metric}")
        elif unknown := use.labels - known[use.metric] - TARGET_LABELS:
            found.append(f"{use.metric} has no label {sorted(unknown)}")
    return found


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", [])]


def known_series() -> dict[str, frozenset[str]]:
    return {**NOT_YET_IN_REGISTRY, **exported_series(), **PROMETHEUS_SERIES}


def test_the_parser_finds_names_and_labels_and_skips_functions_and_values() -> None:
    uses = set(
        metrics_used(
            'sum by (rule) (increase(compliance_violations_total{rule="ledger_imbalance"}[$__range]))'
            " / on (job) max_over_time(outbox_pending[5m] offset 1h) > bool 2e3"
        )
    )
    assert uses == {
        Use("compliance_violations_total", frozenset({"rule"})),
        Use("outbox_pending", frozenset()),
    }
    known = exported_series()
    assert problems("rate(payments_capture_total[5m])", known) == ["unknown metric payments_capture_total"]
    assert problems('payments_failed_total{channel="sms"}', known) == [
        "payments_failed_total has no label ['channel']"
    ]


def test_registry_walk_sees_the_platform_metrics_as_scraped() -> None:
    known = exported_series()
    assert known["payments_failed_total"] == {"reason"}
    assert known["payment_processing_duration_seconds_bucket"] == {"le"}
    assert known["ledger_balance_total"] == {"currency"}
    assert known["bridge_consumer_lag"] == {"topic", "partition"}
    assert "outbox_pending" in known


def test_allowed_missing_metrics_are_still_missing() -> None:
    """The allow-list is for metrics in flight; once one is registered its entry must go."""
    assert not set(NOT_YET_IN_REGISTRY) & set(exported_series())


def test_every_alert_rule_is_well_formed_and_queries_known_metrics() -> None:
    rules = alert_rules()
    assert len(rules) >= 8
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in (ROOT / "docs" / "operations.md").read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in rules:
        found = problems(rule["expr"], known_series())
        assert not found, (rule["alert"], found)
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "docs/operations.md" and anchor in headings, (rule["alert"], anchor)


def test_the_alerts_the_runbook_promises_exist() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    uses = {name: {u.metric for u in metrics_used(expr)} for name, expr in exprs.items()}
    assert "bridge_consumer_lag" in uses["ConsumerLagHigh"]
    assert "bridge_partition_stuck" in uses["PartitionStuck"]
    assert "dlq_messages_total" in uses["DeadLettersArriving"]
    assert "outbox_pending" in uses["OutboxBacklog"]
    assert "ledger_imbalance" in exprs["LedgerImbalance"]
    assert uses["PaymentsFailureRatioHigh"] == {"payments_failed_total", "payments_processed_total"}
    assert 'job=~"web|bridge|worker"' in exprs["ProcessDown"]
    documented = (ROOT / "docs" / "operations.md").read_text()
    for name in exprs:
        assert f"`{name}`" in documented, f"{name} is not in docs/operations.md's alert table"


def test_every_dashboard_query_uses_known_metrics_and_covers_each_domain() -> None:
    exprs = dashboard_exprs()
    for expr in exprs:
        found = problems(expr, known_series())
        assert not found, (expr, found)
    used = {u.metric for expr in exprs for u in metrics_used(expr)}
    assert used >= {
        "payments_processed_total",
        "payments_failed_total",
        "payment_processing_duration_seconds_bucket",
        "ledger_entries_total",
        "ledger_balance_total",
        "compliance_violations_total",
        "notifications_sent_total",
        "notifications_failed_total",
        "dlq_messages_total",
        "bridge_consumer_lag",
        "outbox_pending",
    }
    assert any('rule="ledger_imbalance"' in expr for expr in exprs)


def test_prometheus_in_compose_loads_the_rules_file() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    prometheus = yaml.safe_load((DOCKER / "compose.yml").read_text())["services"]["prometheus"]
    # rule_files is relative to the config file: both must sit in the same container directory.
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus["volumes"]


def test_compose_has_kafka_ui_on_the_compose_kafka_and_jaeger_with_otlp() -> None:
    services = yaml.safe_load((DOCKER / "compose.yml").read_text())["services"]
    bootstrap = services["bridge"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
    ui = services["kafka-ui"]
    assert ui["image"].startswith("provectuslabs/kafka-ui:")
    assert ui["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == bootstrap
    assert ui["depends_on"]["kafka"]["condition"] == "service_healthy"
    jaeger = services["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    published = {port.rsplit(":", 1)[1] for port in jaeger["ports"]}
    assert published == {"4317", "4318", "16686"}
    assert all(port.startswith("127.0.0.1:") for s in (ui, jaeger) for port in s["ports"])


@pytest.mark.processes  # runs promtool
@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_config_and_the_rule_unit_tests_pass() -> None:
    for argv in (
        ["promtool", "check", "config", str(PROMETHEUS / "prometheus.yml")],
        ["promtool", "test", "rules", str(PROMETHEUS / "alerts.test.yml")],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
        assert result.returncode == 0, result.stdout + result.stderr
