"""Health endpoints: /live (the process answers), /ready and /health (its dependencies answer)."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from kafka import KafkaAdminClient

from bridge.clients import client_config


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2).ping()


def _check_kafka() -> None:
    admin = KafkaAdminClient(**client_config(), request_timeout_ms=3000, bootstrap_timeout_ms=3000)
    admin.close()


CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "redis": _check_redis,
    "kafka": _check_kafka,
}


def _run_checks() -> tuple[bool, dict[str, dict[str, object]]]:
    results: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
            results[name] = {"status": "ok"}
        except Exception as exc:  # noqa: BLE001 - a health check reports any failure
            results[name] = {"status": "down", "error": f"{type(exc).__name__}: {exc}"}
        results[name]["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return all(r["status"] == "ok" for r in results.values()), results


def health(request: HttpRequest) -> JsonResponse:
    ok, results = _run_checks()
    return JsonResponse({"status": "ok" if ok else "down", "checks": results}, status=200 if ok else 503)


def ready(request: HttpRequest) -> JsonResponse:
    return health(request)


def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
