"""The HTTP probe of the bridge and the Celery worker: Prometheus `/metrics` and `/healthz` on one port.

`/healthz` is a liveness check for an orchestrator: each registered check returns a dict with a
`status`; the answer is 200 when every status is "ok" or "degraded" and 503 otherwise, with the
details as JSON. A `Heartbeat` is the usual check: the process's main loop beats it, and a loop
that stops beating (blocked, or stuck reconnecting) turns the probe to 503 after `max_silence_s`.

The web process cannot see those loops, so each bridge and worker also publishes its heartbeat to
Redis (`HeartbeatPublisher`: a key per process, `kafka-platform:heartbeat:<kind>:<name>`, holding
the loop's last beat and what else the process reports, expiring after `ttl_s`); the web `/health`
reads them (`read_heartbeats`).

With a metrics token (METRICS_TOKEN; production refuses to start without one) `/metrics` answers
401 unless the request carries `Authorization: Bearer <token>`, and `/healthz` keeps answering
everyone (it is the orchestrator's liveness probe) but says only its overall status; the checks'
details are for the token's holder.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import redis
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
OK = "ok"
# Worth a look, still serving: the probe answers 200.
DEGRADED = "degraded"
DOWN = "down"
HEARTBEAT_KEY_PREFIX = "kafka-platform:heartbeat:"

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

    def last_beat_at(self) -> float:
        """The last beat as a Unix time (for other processes, which do not share our clock)."""
        return time.time() - (self._clock() - self._last)

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
    statuses = {r.get("status") for r in results.values()}
    healthy = statuses <= {OK, DEGRADED}
    overall = (OK if statuses <= {OK} else DEGRADED) if healthy else DOWN
    return healthy, {"status": overall, "checks": results}


def bearer_authorized(header: str | None, token: str) -> bool:
    """Whether an `Authorization` header value carries `token` as a Bearer token (compared in
    constant time). No token configured (development) means no token asked for."""
    if not token:
        return True
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def _configured_token() -> str:
    from django.conf import settings

    return str(getattr(settings, "METRICS_TOKEN", "") or "")


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ProbeServer:
    """`/metrics` from `registry` and `/healthz` from `checks`, on a daemon thread. `token` is the
    bearer token `/metrics` and `/healthz`'s details require; None: the METRICS_TOKEN setting."""

    def __init__(
        self,
        *,
        port: int,
        checks: Mapping[str, Check],
        registry: CollectorRegistry = REGISTRY,
        addr: str = "0.0.0.0",  # noqa: S104 - scraped from other hosts/containers
        token: str | None = None,
    ) -> None:
        self.checks = checks
        self.token = _configured_token() if token is None else token
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
        authorized = bearer_authorized(environ.get("HTTP_AUTHORIZATION"), self.token)
        if environ.get("PATH_INFO") == HEALTH_PATH:
            healthy, body = run_checks(self.checks)
            start_response(
                "200 OK" if healthy else "503 Service Unavailable",
                [("Content-Type", "application/json")],
            )
            return [json.dumps(body if authorized else {"status": body["status"]}).encode()]
        if not authorized:
            start_response(
                "401 Unauthorized",
                [("Content-Type", "application/json"), ("WWW-Authenticate", 'Bearer realm="metrics"')],
            )
            return [b'{"detail": "metrics require Authorization: Bearer <METRICS_TOKEN>"}']
        return self._metrics_app(environ, start_response)


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class HeartbeatPublisher(threading.Thread):
    """Every `interval_s`, writes `heartbeat`'s last beat (and `details()`) to a Redis key that
    expires after `ttl_s`, then runs `also` (the bridge reports its stuck partitions there).

    A thread of its own, so that a blocked main loop still shows: its beat stops moving.
    """

    def __init__(
        self,
        *,
        kind: str,
        name: str,
        heartbeat: Heartbeat,
        redis_url: str,
        interval_s: float = 5.0,
        ttl_s: float = 300.0,
        details: Callable[[], Mapping[str, Any]] | None = None,
        also: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name=f"{kind}-heartbeat", daemon=True)
        self.key = f"{HEARTBEAT_KEY_PREFIX}{kind}:{name}"
        self.kind = kind
        self.heartbeat = heartbeat
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.details = details
        self.also = also
        self.stopping = threading.Event()
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._warned = False

    def publish(self) -> None:
        payload = {
            "kind": self.kind,
            "beat_at": self.heartbeat.last_beat_at(),
            "published_at": time.time(),
            **(self.details() if self.details else {}),
        }
        self._redis.set(self.key, json.dumps(payload), ex=max(int(self.ttl_s), 1))

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.publish()
                self._warned = False
            except redis.exceptions.RedisError as exc:
                if not self._warned:  # once per outage, not every few seconds
                    logger.warning("heartbeat %s not published: %s", self.key, exc)
                    self._warned = True
            if self.also is not None:
                try:
                    self.also()
                except Exception:  # a report failing must not end the reporting
                    logger.exception("%s status report failed", self.kind)
            self.stopping.wait(self.interval_s)

    def stop(self) -> None:
        """On a clean shutdown: the key goes with the process (a killed one's key expires)."""
        self.stopping.set()
        try:
            self._redis.delete(self.key)
        except redis.exceptions.RedisError as exc:
            logger.warning("heartbeat %s not removed: %s", self.key, exc)


def read_heartbeats(client: redis.Redis) -> list[dict[str, Any]]:
    """Every published heartbeat: the payload plus `kind` and `name` from the key."""
    keys = sorted(client.scan_iter(match=f"{HEARTBEAT_KEY_PREFIX}*", count=500))
    if not keys:
        return []
    beats = []
    for key, raw in zip(keys, client.mget(keys), strict=True):
        if raw is None:  # expired between SCAN and MGET
            continue
        kind, _, name = key.decode()[len(HEARTBEAT_KEY_PREFIX) :].partition(":")
        try:
            payload = json.loads(raw)
        except ValueError:
            continue
        beats.append({**payload, "kind": kind, "name": name})
    return beats
