"""Stopping what `make run` and `make bench` started: nothing left running, the broker last.

`make run` (dev_up) on Ctrl-C stops the processes honcho supervises first and the embedded broker
last, so the bridge and relay never talk to a broker that is gone (connection-refused noise in
their logs); `python -m bench.run` told to stop by SIGTERM or SIGINT mid-run leaves no broker,
worker or bridge behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from bridge.embedded import free_port
from bridge.management.commands.dev_up import EMBEDDED_PORT
from tests.conftest import TEST_REDIS_URL
from tests.support.private_redis import PrivateRedis
from tests.support.processes import ROOT, child_env, descendants

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.processes]

# What a broker stopped under its clients makes them log (kafka-python, psycopg, kombu).
NOISE = ("connection refused", "nobrokersavailable", "kafkaconnectionerror", "traceback")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int, command: str) -> bool:
    """`pid` still runs `command` (not a zombie, not a new process that got the id)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and cmdline(pid) == command


class Tree:
    """Watches the descendants of a process: each one's command line and when it was last seen."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, tuple[str, float]] = {}
        self.groups: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._look()
            except OSError:
                pass  # a process vanished while we read /proc: look again
            self._stop.wait(0.05)

    def _look(self) -> None:
        now = time.monotonic()
        for pid in descendants(self.root):
            # Read every time: between fork and exec a child still shows its parent's command.
            command = cmdline(pid)
            if command:
                self.seen[pid] = (command, now)
            try:
                self.groups.add(os.getpgid(pid))
            except ProcessLookupError:
                pass

    def having(self, needle: str) -> list[int]:
        return [pid for pid, (command, _) in self.seen.items() if needle in command]

    def survivors(self) -> list[str]:
        return [command for pid, (command, _) in self.seen.items() if alive(pid, command)]

    def live_groups(self) -> list[int]:
        """Groups of the tree's processes that still have a member (the root's excepted)."""
        live = []
        for group in self.groups - {os.getpgid(0)}:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass
            live.append(group)
        return live

    @contextmanager
    def watching(self) -> Iterator[Tree]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def wait_for_text(
    path: Path, needles: tuple[str, ...], process: subprocess.Popen[Any], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if all(needle in text for needle in needles):
            return
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{text[-3000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"{needles} not all logged:\n{path.read_text(errors='replace')[-3000:]}")


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_make_run_stops_the_broker_last_and_quietly(django_db_setup: None, tmp_path: Path) -> None:
    # dev_up's ports are fixed (Procfile: web 8000, flower 5555; the embedded broker 9092).
    busy = [port for port in (EMBEDDED_PORT, 8000, 5555) if port_taken(port)]
    if busy:
        pytest.skip(f"ports {busy} are in use (is `make run` up?)")
    from django.db import connection

    db = connection.settings_dict
    env = child_env(
        {
            # The test database, already migrated: dev_up's migrate has nothing to do.
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "CELERY_BROKER_URL": TEST_REDIS_URL,
            "BRIDGE_METRICS_PORT": str(free_port()),
            "WORKER_METRICS_PORT": str(free_port()),
            "KAFKA_CONSUMER_GROUP": f"test-dev-up-{os.getpid()}",
        }
    )
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # unset: dev_up starts the embedded broker
    log_path = tmp_path / "dev_up.log"
    with log_path.open("wb") as log:
        # Its own process group, like a shell's foreground job: Ctrl-C is SIGINT to that group.
        dev_up = subprocess.Popen(  # noqa: S603
            [sys.executable, "manage.py", "dev_up"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with Tree(dev_up.pid).watching() as tree:
            wait_for_text(log_path, ("bridge assigned", "ready."), dev_up, timeout_s=240)
            started_at = log_path.stat().st_size
            os.killpg(dev_up.pid, signal.SIGINT)
            assert dev_up.wait(timeout=120) == 0
            time.sleep(0.2)  # one more look at the tree
    finally:
        if dev_up.poll() is None:
            os.killpg(dev_up.pid, signal.SIGKILL)
            dev_up.wait()

    brokers = tree.having("--listener-url")
    assert len(brokers) == 1, "\n".join(command for command, _ in tree.seen.values())
    broker_gone = tree.seen[brokers[0]][1]
    others = {command: last for pid, (command, last) in tree.seen.items() if pid not in brokers}
    assert any("run_bridge" in command for command in others), others
    late = [command for command, last in others.items() if last > broker_gone]
    assert not late, f"still running after the broker stopped: {late}"
    assert not tree.survivors()
    shutdown = log_path.read_bytes()[started_at:].decode(errors="replace")
    assert "stopping the embedded Kafka broker" in shutdown
    noise = [line for line in shutdown.splitlines() if any(n in line.lower() for n in NOISE)]
    assert not noise, "\n".join(noise[:20])


@pytest.fixture
def bench_database() -> Iterator[str]:
    """A database of this test's own beside the test database (bench drops and creates it)."""
    url = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kafka_platform"))
    name = f"{url.path.lstrip('/')}_bench_shutdown"
    yield urlunsplit(url._replace(path=f"/{name}"))
    with psycopg.connect(urlunsplit(url._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_bench_stopped_mid_run_leaves_no_process(bench_database: str, tmp_path: Path, sig: int) -> None:
    redis_server = PrivateRedis(tmp_path / "redis.log").start()
    env = child_env(
        {
            "BENCH_DATABASE_URL": bench_database,
            "BENCH_REDIS_URL": redis_server.url,
            "BENCH_LOG_DIR": str(tmp_path),
        }
    )
    log_path = tmp_path / "bench.log"
    try:
        with log_path.open("wb") as log:
            bench = subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "bench.run",
                    "--n",
                    "1000",
                    "--only",
                    "pipeline",
                    "--workers",
                    "1",
                    "--out",
                    str(tmp_path / "result.json"),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with Tree(bench.pid).watching() as tree:
            # Mid-run: the broker, worker and bridge are all up.
            deadline = time.monotonic() + 180
            while not (tree.having("--listener-url") and tree.having("worker") and tree.having("run_bridge")):
                assert bench.poll() is None, log_path.read_text(errors="replace")
                assert time.monotonic() < deadline, f"not all started: {tree.seen}"
                time.sleep(0.2)
            time.sleep(2)
            bench.send_signal(sig)  # to the benchmark alone, as `kill` does
            bench.wait(timeout=90)
            time.sleep(0.2)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
        redis_server.stop()

    assert not (tmp_path / "result.json").exists(), "the benchmark finished before it was stopped"
    assert bench.returncode != 0
    assert not tree.survivors(), f"left running: {tree.survivors()}"
    assert not tree.live_groups(), f"process groups not empty: {tree.live_groups()}"
