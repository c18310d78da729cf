"""The HTTP probe of the bridge and the Celery worker: Prometheus `/metrics` and `/healthz` on one port.

`/healthz` is a liveness check for an orchestrator: each registered check returns a dict with a
`status`; the answer is 200 when every status is "ok" and 503 otherwise, with the details as JSON.
A `Heartbeat` is the usual check: the process's main loop beats it, and a loop that stops beating
(blocked, or stuck reconnecting) turns the probe to 503 after `max_silence_s`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

HEALTH_PATH = "/healthz"
OK = "ok"

Check = Callable[[], Mapping[str, Any]]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class Heartbeat:
    """Liveness of a loop: the loop calls `beat()`; `check()` says whether it did so lately."""

    def __init__(self, *, max_silence_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_silence_s = max_silence_s
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def check(self) -> dict[str, Any]:
        silence = self._clock() - self._last
        return {
            "status": OK if silence <= self.max_silence_s else "stalled",
            "last_beat_s_ago": round(silence, 1),
            "max_silence_s": self.max_silence_s,
        }


def run_checks(checks: Mapping[str, Check]) -> tuple[bool, dict[str, Any]]:
    results: dict[str, Any] = {}
    for name, check in checks.items():
        try:
            results[name] = dict(check())
        except Exception as exc:  # noqa: BLE001 - a failing check is a failed probe, not a crash
            results[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    healthy = all(r.get("status") == OK for r in results.values())
    return healthy, {"status": OK if healthy else "down", "checks": results}


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ProbeServer:
    """`/metrics` from `registry` and `/healthz` from `checks`, on a daemon thread."""

    def __init__(
        self,
        *,
        port: int,
        checks: Mapping[str, Check],
        registry: CollectorRegistry = REGISTRY,
        addr: str = "0.0.0.0",  # noqa: S104 - scraped from other hosts/containers
    ) -> None:
        self.checks = checks
        self._metrics_app = make_wsgi_app(registry)
        self._server = make_server(addr, port, self._app, ThreadingWSGIServer, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="probe-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> ProbeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def close_inherited_socket(self) -> None:
        """In a forked child: drop the copy of the listening socket (only the parent serves)."""
        self._server.socket.close()

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            healthy, body = run_checks(self.checks)
            start_response(
                "200 OK" if healthy else "503 Service Unavailable",
                [("Content-Type", "application/json")],
            )
            return [json.dumps(body).encode()]
        return self._metrics_app(environ, start_response)
