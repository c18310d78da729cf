"""Health endpoints: /live (the process answers), /ready (this web process's dependencies answer)
and /health (the platform as a whole: dependencies, bridges and workers, partitions, outbox).

Every check says `ok`, `degraded` (worth a look; still 200) or `down` (503); the answer's status
is the worst of them. What `/health` reads beyond the dependencies, and the thresholds:

- `bridges`, `workers`: the heartbeats each bridge and worker publishes to Redis every few seconds
  (core.probes.HeartbeatPublisher). None at all, or none newer than
  HEALTH_MAX_SILENCE_S: `down` (nothing consumes Kafka, or nothing runs tasks). Some stale while
  others beat: `degraded` (a process died or hangs; its work moves to the others, or waits).
- `consumer_lag`: the lag the bridges report with their heartbeats; a partition over
  HEALTH_LAG_DEGRADED: `degraded`.
- `outbox`: the oldest unsent row older than HEALTH_OUTBOX_DEGRADED_S: `degraded`; older than
  HEALTH_OUTBOX_DOWN_S: `down` (results are not reaching Kafka).
- `stuck_partitions`: a partition the bridge has not got past for BRIDGE_STUCK_AFTER_S
  (StuckPartition rows, written by the bridge that owns it): `down`, naming it.

The Kafka dependency, `outbox` and `stuck_partitions` are the bridge's: it registers them
(bridge/health.py), as any app may register its own checks.

A check that cannot be evaluated (its dependency is down, which says so itself) is `unknown`,
counted as degraded.

With METRICS_TOKEN set (always in production) `/metrics` answers 401 without `Authorization:
Bearer <METRICS_TOKEN>`, and `/health` without it answers only its overall status (same status
code, so an uptime check still works): the checks name hosts, processes and errors. `/ready`
and `/live` stay open for the orchestrator's probes (`/ready`'s details, too, need the token).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.probes import DEGRADED, DOWN, OK, bearer_authorized, read_heartbeats

UNKNOWN = "unknown"
SEVERITY = {OK: 0, DEGRADED: 1, UNKNOWN: 1, DOWN: 2}

Result = dict[str, Any]


def _redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)


def _check_database() -> Result:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"status": OK}


def _check_redis() -> Result:
    _redis_client().ping()
    return {"status": OK}


def _heartbeat_status(beats: list[Result], kind: str, now: float) -> Result:
    mine = [b for b in beats if b["kind"] == kind]
    limit = settings.HEALTH_MAX_SILENCE_S
    described = [
        {"name": b["name"], "last_beat_s_ago": round(now - float(b.get("beat_at", 0)), 1)} for b in mine
    ]
    stale = [d for d in described if d["last_beat_s_ago"] > limit]
    result: Result = {"status": OK, "processes": described, "max_silence_s": limit}
    if not mine:
        result.update(status=DOWN, error=f"no {kind} heartbeat: no {kind} is running")
    elif len(stale) == len(mine):
        result.update(status=DOWN, error=f"every {kind} has been silent for over {limit:.0f}s")
    elif stale:
        names = ", ".join(d["name"] for d in stale)
        result.update(status=DEGRADED, error=f"{kind} silent for over {limit:.0f}s: {names}")
    return result


def _lag_of(beats: list[Result], now: float) -> dict[str, int]:
    """Records behind per `topic@partition`, as the live bridges last reported them."""
    lag: dict[str, int] = {}
    for beat in beats:
        if beat["kind"] == "bridge" and now - float(beat.get("beat_at", 0)) <= settings.HEALTH_MAX_SILENCE_S:
            lag.update(beat.get("lag") or {})
    return lag


def consumer_lag() -> dict[str, int]:
    """The consumer lag of every partition a live bridge owns (for the admin's start page)."""
    return _lag_of(read_heartbeats(_redis_client()), time.time())


def _heartbeat_checks() -> dict[str, Result]:
    """bridges, workers and consumer_lag, from the heartbeats in Redis."""
    beats = read_heartbeats(_redis_client())
    now = time.time()
    checks = {
        "bridges": _heartbeat_status(beats, "bridge", now),
        "workers": _heartbeat_status(beats, "worker", now),
    }
    threshold = settings.HEALTH_LAG_DEGRADED
    lag = _lag_of(beats, now)
    over = {partition: n for partition, n in sorted(lag.items()) if n > threshold}
    checks["consumer_lag"] = {
        "status": DEGRADED if over else OK,
        "max": max(lag.values(), default=0),
        "degraded_over": threshold,
        "over_threshold": over,
    }
    if over:
        checks["consumer_lag"]["error"] = f"{len(over)} partitions lag more than {threshold} records"
    return checks


Check = Callable[[], Result]

# What this process needs to serve (/ready, /health), and what /health alone reads of the platform.
# Core knows its own two; the apps add theirs from their AppConfig.ready() (core imports no app).
DEPENDENCIES: dict[str, Check] = {
    "database": _check_database,
    "redis": _check_redis,
}
PLATFORM: dict[str, Check] = {}


def register_dependency(name: str, check: Check) -> None:
    """A dependency whose failure makes the process not ready (`down`)."""
    DEPENDENCIES[name] = check


def register_platform_check(name: str, check: Check) -> None:
    """A check of the platform as a whole, in /health only; failing to run it is `unknown`."""
    PLATFORM[name] = check


def _timed(check: Callable[[], Result], failed_status: str) -> Result:
    started = time.perf_counter()
    try:
        result = dict(check())
    except Exception as exc:  # noqa: BLE001 - a health check reports any failure
        result = {"status": failed_status, "error": f"{type(exc).__name__}: {exc}"}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _run(*, platform: bool) -> tuple[str, dict[str, Result]]:
    results = {name: _timed(check, DOWN) for name, check in DEPENDENCIES.items()}
    if platform:
        results.update({name: _timed(check, UNKNOWN) for name, check in PLATFORM.items()})
        try:
            results.update(_heartbeat_checks())
        except redis.exceptions.RedisError as exc:
            for name in ("bridges", "workers", "consumer_lag"):
                results[name] = {"status": UNKNOWN, "error": f"heartbeats unreadable: {exc}"}
    worst = max((r["status"] for r in results.values()), key=lambda s: SEVERITY.get(s, 2))
    return (DEGRADED if worst == UNKNOWN else worst), results


def _answer(status: str, results: dict[str, Result]) -> JsonResponse:
    return JsonResponse({"status": status, "checks": results}, status=503 if status == DOWN else 200)


def _holds_metrics_token(request: HttpRequest) -> bool:
    return bearer_authorized(request.headers.get("Authorization"), settings.METRICS_TOKEN)


def health(request: HttpRequest) -> JsonResponse:
    status, results = _run(platform=True)
    if not _holds_metrics_token(request):
        return JsonResponse({"status": status}, status=503 if status == DOWN else 200)
    return _answer(status, results)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' scrape (django_prometheus' view), for the holder of the metrics token."""
    from django_prometheus.exports import ExportToDjangoView

    if not _holds_metrics_token(request):
        response = JsonResponse(
            {"detail": "metrics require Authorization: Bearer <METRICS_TOKEN>"}, status=401
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return ExportToDjangoView(request)


def ready(request: HttpRequest) -> JsonResponse:
    """Can this web process serve? Its own dependencies only: a dead bridge or a stuck partition
    must not take the API (which only records requests) out of the load balancer. Open to the
    probes, its details (addresses in error messages) to the metrics token's holder."""
    status, results = _run(platform=False)
    if not _holds_metrics_token(request):
        return JsonResponse({"status": status}, status=503 if status == DOWN else 200)
    return _answer(status, results)


def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
