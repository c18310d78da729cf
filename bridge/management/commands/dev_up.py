"""`manage.py dev_up` (what `make run` calls): everything up locally under one supervisor.

Starts the embedded broker when KAFKA_BOOTSTRAP_SERVERS is unset, creates the database if it is
missing, migrates, creates the topics and a development admin, then runs the Procfile's web,
bridge, worker, beat and flower with honcho until Ctrl-C.

Shutdown order: Ctrl-C (or SIGTERM, SIGHUP) reaches this command only, as the broker and honcho
run in sessions of their own; it is passed on to honcho once, which stops the processes it
supervises, and the broker is stopped last, once nothing is left to commit offsets or flush
events to it (otherwise the bridge and relay log a connection refused for every retry).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from bridge.embedded import EmbeddedBroker

EMBEDDED_PORT = 9092
DEV_ADMIN = ("admin", "admin")
HEALTH_URL = "http://127.0.0.1:8000/health"
# How long the platform may take to answer /health with 200 before the console says it is not ready.
READY_WITHIN_S = 180.0
# A fresh shell has no DJANGO_DEBUG: the line works pasted as it is.
TRY_IT = "DJANGO_DEBUG=1 .venv/bin/python manage.py send_demo_events --wait"


def health_ok(url: str = HEALTH_URL) -> bool:
    """True once `url` answers 200 (every dependency and process of the platform is up)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our own local address
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def announce_when_ready(
    write: Any, stopped: threading.Event, *, probe: Any = health_ok, within_s: float = READY_WITHIN_S
) -> bool:
    """Write one "ready" line once `probe` says so, or one line saying it is not, after `within_s`."""
    deadline = time.monotonic() + within_s
    while not stopped.is_set():
        if probe():
            write(
                "\n kafka-platform is ready: http://127.0.0.1:8000/admin/ (API docs /api/docs/)\n"
                f"   try it        {TRY_IT}\n"
            )
            return True
        if time.monotonic() > deadline:
            write(
                f"\n kafka-platform is not ready after {within_s:.0f} s: see {HEALTH_URL}"
                " and the lines above\n"
            )
            return False
        stopped.wait(1.0)
    return False


class Command(BaseCommand):
    help = "Run the whole platform locally (web :8000, flower :5555, bridge, worker, beat)."

    def handle(self, *args: Any, **options: Any) -> None:
        broker = None
        if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
            broker = EmbeddedBroker(port=EMBEDDED_PORT, log_path=Path(".run/tansu.log"))
            Path(".run").mkdir(exist_ok=True)
            self.stdout.write(
                f"starting the embedded Kafka broker on {broker.bootstrap} (log .run/tansu.log)"
            )
            try:
                broker.start()
            except Exception as exc:
                raise CommandError(
                    f"embedded broker did not start (port {EMBEDDED_PORT} busy?): {exc}"
                ) from exc
            os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
            settings.KAFKA_BOOTSTRAP_SERVERS = broker.bootstrap
        try:
            self._prepare()
            self._banner(embedded=broker is not None)
            # The supervised processes run in the mode this command runs in (`make run`: DEBUG on).
            env = dict(
                os.environ,
                DJANGO_DEBUG="1" if settings.DEBUG else "0",
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            )
            supervisor = subprocess.Popen(  # noqa: S603
                [str(Path(sys.executable).parent / "honcho"), "start", "-f", "Procfile"],
                env=env,
                start_new_session=True,
            )

            def stop_supervised(signum: int, frame: Any) -> None:
                # honcho answers its first signal by stopping every process (SIGKILL after 5 s).
                if supervisor.poll() is None:
                    supervisor.send_signal(signum)

            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, stop_supervised)
            stopped = threading.Event()
            threading.Thread(
                target=announce_when_ready,
                args=(lambda text: self.stdout.write(self.style.SUCCESS(text)), stopped),
                name="ready-line",
                daemon=True,
            ).start()
            try:
                supervisor.wait()
            finally:
                stopped.set()
        finally:
            if broker:
                self.stdout.write("stopping the embedded Kafka broker")
                broker.stop()

    def _prepare(self) -> None:
        self._create_database()
        call_command("migrate", interactive=False, verbosity=0)
        call_command("kafka_topics", create=True, stdout=open(os.devnull, "w"))  # noqa: SIM115
        if settings.DEBUG:
            from django.contrib.auth import get_user_model

            user_model = get_user_model()
            if not user_model.objects.filter(username=DEV_ADMIN[0]).exists():
                user_model.objects.create_superuser(DEV_ADMIN[0], "admin@localhost", DEV_ADMIN[1])

    def _create_database(self) -> None:
        params = connection.get_connection_params()
        name = params.pop("dbname")
        params = {k: v for k, v in params.items() if k not in ("cursor_factory", "context")}
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
                self.stdout.write(f"created database {name}")

    def _banner(self, *, embedded: bool) -> None:
        kafka = settings.KAFKA_BOOTSTRAP_SERVERS + (" (embedded tansu)" if embedded else "")
        admin = f" (development login {DEV_ADMIN[0]} / {DEV_ADMIN[1]})" if settings.DEBUG else ""
        flower = " (basic auth: FLOWER_BASIC_AUTH)" if settings.FLOWER_BASIC_AUTH else ""
        self.stdout.write(
            self.style.SUCCESS(
                "\n kafka-platform is starting; a line below will say when it is up\n"
                f"   web + admin   http://127.0.0.1:8000/admin/{admin}\n"
                "   API docs      http://127.0.0.1:8000/api/docs/\n"
                "   health        http://127.0.0.1:8000/health   metrics /metrics\n"
                f"   flower        http://127.0.0.1:5555/{flower}\n"
                f"   bridge        http://127.0.0.1:{settings.BRIDGE_METRICS_PORT}/metrics   /healthz\n"
                f"   worker        http://127.0.0.1:{settings.WORKER_METRICS_PORT}/metrics   /healthz\n"
                f"   kafka         {kafka}\n"
                f"   try it        {TRY_IT}\n"
            )
        )
