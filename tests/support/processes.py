"""Subprocesses of the real stack (bridge, relay, Celery worker) with their logs kept for failures.

Each runs in a process group of its own: a signal meant for the parent (Ctrl-C in a terminal, a
`timeout`) does not reach it behind the parent's back, and stopping it stops its whole tree (a
Celery worker's pool too). Whatever is still running when the parent exits is killed then.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


class Proc:
    """One long-running process of the stack, restartable, logging to `log_path`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._signalled = False

    def start(self) -> Proc:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(  # noqa: S603 - our own commands
            self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._signalled = False
        _RUNNING.add(self)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int | None:
        """Send `sig` to the process (it shuts down its own children), wait, then kill whatever
        of its group is left: a child it failed to stop, or everything after `timeout_s`."""
        self.signal(sig)
        return self.wait_stopped(timeout_s)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` without waiting: to stop several processes, signal each, then wait for each
        (`wait_stopped`), and they shut down side by side instead of one after the other."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(sig)
            self._signalled = True

    def wait_stopped(self, timeout_s: float = 30.0) -> int | None:
        """Wait for a signalled process to exit, then kill whatever of its group is left."""
        signalled, self._signalled = self._signalled, False
        if not self.running:
            if signalled:
                self._kill_group()  # it exited on our signal just now: what it left of its group
            _RUNNING.discard(self)
            return self.process.returncode if self.process else None
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self._kill_group()

    def kill(self) -> None:
        """SIGKILL the process and every descendant (a Celery worker's pool children too)."""
        if not self.running:
            return
        assert self.process is not None
        for pid in [*descendants(self.process.pid), self.process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._kill_group()
        self.process.wait()

    def _kill_group(self) -> None:
        """SIGKILL the process group. Called while the leader is unreaped or just reaped: its id
        (the group's) cannot have gone to another process yet."""
        _RUNNING.discard(self)
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is empty (PermissionError: a zombie leader on some kernels)
        if self.process.poll() is None:
            self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def children(self) -> list[int]:
        """Process ids of this process's direct children (e.g. a Celery worker's pool processes)."""
        if self.process is None:
            return []
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except FileNotFoundError:
            return []

    def wait_for_log(self, needle: str, timeout_s: float = 60.0, *, since: int | None = None) -> None:
        """Wait until `needle` is logged past byte offset `since` (default: this run's start)."""
        offset = self._log_offset if since is None else since
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                if needle.encode() in log.read():
                    return
            if not self.running:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} did not log {needle!r}:\n{self.log_tail()}")


def descendants(pid: int) -> list[int]:
    children_file = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        children = [int(c) for c in children_file.read_text().split()]
    except FileNotFoundError:
        return []
    return [d for child in children for d in (child, *descendants(child))]


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def celery(*args: str) -> list[str]:
    return [str(VENV_BIN / "celery"), "-A", "kafka_platform", *args]


def child_env(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment plus `overrides`; development mode unless they say otherwise."""
    env = dict(os.environ)
    env.setdefault("DJANGO_DEBUG", "1")
    env.update(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    return env


_RUNNING: set[Proc] = set()


@atexit.register
def _kill_leftovers() -> None:
    """Children run in their own process groups, so nothing else stops them when this process
    ends (a test session interrupted, a benchmark told to stop): kill what is still running."""
    for proc in list(_RUNNING):
        if proc.process is not None and proc.process.returncode is None:  # not reaped: still ours
            proc._kill_group()
