"""A redis-server of a test's own, on a free port, for tests that stop Redis (never the shared one)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from bridge.embedded import free_port


class PrivateRedis:
    """`persistent` keeps an fsync-always append-only file beside the log, so a stop and start
    on the same port (a Redis restart) keeps the queued tasks, as a production broker must."""

    def __init__(self, log_path: Path, *, persistent: bool = False) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self, timeout_s: float = 10.0) -> PrivateRedis:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(  # noqa: S603
            [
                str(shutil.which("redis-server")),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *(
                    ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.log_path.parent)]
                    if self.persistent
                    else ["--appendonly", "no"]
                ),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                return self
            except redis.exceptions.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {self.log_path.read_text()}") from None
                time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        """The server's process id, for a test that pauses it (tests.support.faults.paused)."""
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server would never see SIGTERM
            self.process.terminate()
            self.process.wait(timeout=10)
