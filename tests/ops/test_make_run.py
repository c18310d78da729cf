"""`make run`: the Procfile honcho supervises, and the development admin (only in development)."""

from __future__ import annotations

import subprocess

import pytest
from django.contrib.auth import get_user_model
from pytest_django.fixtures import Settings

from bridge.embedded import EmbeddedBroker
from bridge.management.commands.dev_up import DEV_ADMIN, Command
from tests.support.processes import ROOT, VENV_BIN


@pytest.mark.processes  # runs honcho
def test_procfile_supervises_every_process_make_run_promises() -> None:
    check = subprocess.run(
        [str(VENV_BIN / "honcho"), "check", "-f", "Procfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    entries = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )
    assert set(entries) == {"web", "bridge", "worker", "beat", "flower"}
    assert "0.0.0.0:8000" in entries["web"]
    assert "celery -A kafka_platform flower --port=5555" in entries["flower"]
    assert "manage.py run_bridge" in entries["bridge"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("debug", [True, False])
def test_development_admin_is_created_only_in_development(
    settings: Settings, kafka_broker: EmbeddedBroker, debug: bool
) -> None:
    settings.DEBUG = debug
    settings.KAFKA_BOOTSTRAP_SERVERS = kafka_broker.bootstrap

    Command()._prepare()

    assert get_user_model().objects.filter(username=DEV_ADMIN[0], is_superuser=True).exists() is debug


@pytest.mark.processes  # runs make -n
def test_make_run_logs_for_a_terminal_and_everything_else_logs_json() -> None:
    """`make run` asks for the console format; other targets (the tests) keep JSON lines."""
    import subprocess

    def log_format(target: str) -> str:
        database = subprocess.run(
            ["make", "-n", "-p", target], capture_output=True, text=True, check=False
        ).stdout
        for line in database.splitlines():
            if line.startswith(f"{target}: LOG_FORMAT"):
                return line.split("=", 1)[1].strip()
        return ""

    assert log_format("run") == "console"
    assert log_format("test") == ""

    from core.logs import logging_config

    console = logging_config(level="INFO", fmt="console")
    renderer = console["formatters"]["structured"]["processors"][-1]
    line = renderer(None, "info", {"event": "payment captured", "level": "info"})
    assert "payment captured" in line and not line.lstrip().startswith("{")
