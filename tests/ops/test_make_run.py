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


def test_the_console_says_once_when_the_platform_is_ready() -> None:
    import threading

    from bridge.management.commands.dev_up import TRY_IT, announce_when_ready

    lines: list[str] = []
    answers = iter([False, False, True])
    assert announce_when_ready(lines.append, threading.Event(), probe=lambda: next(answers), within_s=30)
    [ready] = lines
    assert "kafka-platform is ready: http://127.0.0.1:8000/admin/" in ready and TRY_IT in ready
    assert TRY_IT.startswith("DJANGO_DEBUG=1 ")  # pasted into a fresh shell, it works

    lines.clear()
    assert not announce_when_ready(lines.append, threading.Event(), probe=lambda: False, within_s=0)
    assert len(lines) == 1 and "not ready after 0 s" in lines[0]


def test_the_development_console_leaves_out_beats_routine_lines_and_a_second_timestamp() -> None:
    import logging

    from core.logs import QuietRoutine, logging_config

    console = logging_config(level="INFO", fmt="console")
    assert console["handlers"]["console"]["filters"] == ["quiet_routine"]
    routine = logging.makeLogRecord(
        {"name": "celery.beat", "msg": "Scheduler: Sending due task %s", "args": ("dispatch_due",)}
    )
    other = logging.makeLogRecord({"name": "celery.beat", "msg": "beat: Starting..."})
    assert not QuietRoutine().filter(routine) and QuietRoutine().filter(other)
    # honcho puts the time before each line: the console line carries no second one.
    chain = console["formatters"]["structured"]["foreign_pre_chain"]
    assert not any(type(step).__name__ == "TimeStamper" for step in chain)
    # At DEBUG everything shows; JSON logs keep every line and their timestamp.
    assert "filters" not in logging_config(level="DEBUG", fmt="console")["handlers"]["console"]
    json_config = logging_config(level="INFO", fmt="json")
    assert "filters" not in json_config["handlers"]["console"]
    assert any(
        type(s).__name__ == "TimeStamper"
        for s in json_config["formatters"]["structured"]["foreign_pre_chain"]
    )
