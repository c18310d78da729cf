"""docker/: what can be checked without a Docker daemon (YAML, settings names, scrape targets, image)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.test_metrics import PLATFORM_METRICS
from tests.support.processes import ROOT

DOCKER = ROOT / "docker"
PLATFORM_SERVICES = ("init", "web", "bridge", "worker", "beat", "flower")

# The settings every deployment may set (the deployment table of docs/settings.md).
DEPLOYMENT_SETTINGS = frozenset(
    {
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CAFILE",
        "KAFKA_CONSUMER_GROUP",
        "EMAIL_HOST",
        "EMAIL_PORT",
        "EMAIL_HOST_USER",
        "EMAIL_HOST_PASSWORD",
        "EMAIL_USE_TLS",
        "DEFAULT_FROM_EMAIL",
        "WEBHOOK_SIGNING_SECRET",
        "DJANGO_SECRET_KEY",
        "DJANGO_DEBUG",
        "DJANGO_ALLOWED_HOSTS",
        "COMPLIANCE_HIGH_VALUE_THRESHOLD",
        "WEBHOOK_ALLOWED_HOSTS",
        "BRIDGE_METRICS_PORT",
        "WORKER_METRICS_PORT",
        "HEALTH_MAX_SILENCE_S",
        "BRIDGE_STUCK_AFTER_S",
        "AUDIT_CHECKPOINT_KEY",
        "PLATFORM_EVENT_KEY",
        "PLATFORM_EVENT_KEY_PREVIOUS",
        "KAFKA_TRUSTED_INPUTS",
        "PLATFORM_ALLOW_INSECURE_KAFKA",
        "KAFKA_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TOPIC_MIN_INSYNC_REPLICAS",
    }
)


def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


def documented_settings() -> set[str]:
    """Names in the first column of docs/settings.md's tables."""
    names: set[str] = set()
    for line in (ROOT / "docs" / "settings.md").read_text().splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_compose_runs_every_process_against_apache_kafka_in_kraft_mode() -> None:
    services = compose()["services"]
    assert set(services) >= {*PLATFORM_SERVICES, "kafka", "postgres", "redis", "prometheus", "grafana"}
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert not any("zookeeper" in name for name in services)

    commands = {name: " ".join(services[name]["command"]) for name in PLATFORM_SERVICES}
    assert commands["web"].startswith("gunicorn kafka_platform.wsgi")
    assert "manage.py run_bridge" in commands["bridge"]
    assert "celery -A kafka_platform worker" in commands["worker"]
    assert "celery -A kafka_platform beat" in commands["beat"]
    assert "celery -A kafka_platform flower" in commands["flower"]
    for name in PLATFORM_SERVICES:
        assert services[name]["read_only"] is True and "/tmp" in services[name]["tmpfs"], name  # noqa: S108


def test_every_platform_setting_in_compose_is_a_documented_setting_the_code_reads() -> None:
    documented = DEPLOYMENT_SETTINGS | documented_settings()
    read_by_code = (ROOT / "kafka_platform" / "settings.py").read_text()
    for name in PLATFORM_SERVICES:
        for variable in compose()["services"][name]["environment"]:
            assert variable in documented, f"{name}: {variable} is not in docs/settings.md"
            assert f'"{variable}"' in read_by_code, f"{name}: {variable} is not read by settings.py"


def test_prometheus_scrapes_and_compose_probes_each_process_on_its_port() -> None:
    services = compose()["services"]
    env = services["bridge"]["environment"]
    scrape = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in scrape["scrape_configs"]}
    assert targets["web"] == ["web:8000"]
    assert targets["bridge"] == [f"bridge:{env['BRIDGE_METRICS_PORT']}"]
    assert targets["worker"] == [f"worker:{env['WORKER_METRICS_PORT']}"]
    assert "web" in env["DJANGO_ALLOWED_HOSTS"], "Prometheus's Host header must be allowed"

    for name, port in (("bridge", env["BRIDGE_METRICS_PORT"]), ("worker", env["WORKER_METRICS_PORT"])):
        assert f"127.0.0.1:{port}/healthz" in " ".join(services[name]["healthcheck"]["test"])
    # The web container is healthy when it can serve (its own dependencies), not when every
    # bridge and worker is: /ready, while /health (the whole platform) is for alerting.
    assert "/ready" in " ".join(services["web"]["healthcheck"]["test"])


PROMQL_WORDS = {"sum", "max", "by", "rate", "increase", "histogram_quantile", "up", "le"}
LABELS = {"topic", "partition", "outcome", "reason", "channel", "currency", "rule"}


def test_grafana_dashboard_queries_only_metrics_the_platform_exports() -> None:
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "kafka-platform.json").read_text())

    def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for item in items for p in (item, *panels(item.get("panels", [])))]

    exprs = [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", [])]
    assert exprs
    exported = set(PLATFORM_METRICS) | {f"{m}_bucket" for m in PLATFORM_METRICS}
    for expr in exprs:
        # Label values ("ledger_imbalance") are data, not names; ranges may be Grafana variables.
        names = set(re.findall(r"[a-z_][a-z0-9_]*", re.sub(r'"[^"]*"|\[[^\]]*\]|[0-9.]+', "", expr)))
        unknown = names - exported - PROMQL_WORDS - LABELS
        assert not unknown, f"{expr}: {unknown}"
    datasource = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert {p["datasource"]["uid"] for p in panels(dashboard["panels"]) if "datasource" in p} == {
        datasource["datasources"][0]["uid"]
    }


def test_image_is_multi_stage_non_root_and_ships_the_process_config_files() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, flags=re.MULTILINE)) >= 2
    assert re.search(r"^USER 1001(:1001)?$", dockerfile, flags=re.MULTILINE)
    ignored = [
        line.strip()
        for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for shipped in ("gunicorn.conf.py", "flowerconfig.py", "manage.py", "kafka_platform/settings.py"):
        assert not any(fnmatch.fnmatch(shipped, pattern) for pattern in ignored), shipped


@pytest.mark.processes  # runs docker compose
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """`docker compose config` where a Compose client can run; v1 lacks only the top-level `name`."""
    if shutil.which("docker") and _ok(["docker", "compose", "version"]):
        argv = ["docker", "compose", "-f", str(DOCKER / "compose.yml"), "config", "-q"]
    elif shutil.which("docker-compose"):
        # Compose v1 knows the Compose Specification except the project `name` key (Compose v2).
        copy = tmp_path / "compose.yml"
        copy.write_text(re.sub(r"^name: .*$", "", (DOCKER / "compose.yml").read_text(), flags=re.MULTILINE))
        argv = ["docker-compose", "-f", str(copy), "--project-directory", str(DOCKER), "config", "-q"]
    else:
        pytest.skip("no Docker Compose client (docker compose / docker-compose) on this machine")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert result.returncode == 0, result.stdout + result.stderr


def _ok(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0  # noqa: S603
