"""The platform's shared library, used by every domain app and by the bridge.

The API edge (problem+json errors, the Decimal JSON parser, throttling, Idempotency-Key, the
OpenAPI schema class), money display, the Redis circuit breaker, actors and roles, bulk writes,
the admin site and its read-only base, and observability: correlation ids, logs, metrics, traces,
health and the processes' probes. `kafka_platform/` holds only configuration: settings, URLs and
the Celery app.
"""
