"""`manage.py run_bridge`: the Kafka -> Celery bridge with its outbox relay and probe port.

The probe port (BRIDGE_METRICS_PORT) serves Prometheus `/metrics` and `/healthz`, which answers
503 when the consume loop or the relay thread has stopped turning (HEALTH_MAX_SILENCE_S), when a
partition has not got past a record for BRIDGE_STUCK_AFTER_S, or when Redis has been unreachable
for HEALTH_MAX_SILENCE_S (naming the partitions waiting on it); see core.probes.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from bridge.consumer import Bridge, BridgeOptions
from core import tracing
from core.probes import ProbeServer

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Consume request topics and audit.*, dispatch Celery tasks, relay the outbox."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--group", default=settings.KAFKA_CONSUMER_GROUP)
        parser.add_argument("--no-relay", action="store_true", help="Do not run the outbox relay thread.")
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.BRIDGE_METRICS_PORT,
            help="Port of /metrics and /healthz (0 disables).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tracing.setup("bridge")
        bridge = Bridge(
            BridgeOptions(
                group_id=options["group"],
                max_queue_depth=settings.BRIDGE_MAX_QUEUE_DEPTH,
                # Queue depths are read before every poll (one pipelined LLEN per queue): read
                # every 0.5 s, a fast bridge handed on 264 tasks against a bound of 20 before it
                # paused (tests/chaos/test_backlog.py). Now a queue exceeds the bound by one poll.
                backpressure_check_s=0.0,
                batch_max=max(settings.BRIDGE_BATCH_MAX, 1),
                batch_linger_ms=settings.BRIDGE_BATCH_LINGER_MS,
                batch_linger_max_ms=settings.BRIDGE_BATCH_LINGER_MAX_MS,
                max_in_flight=settings.BRIDGE_MAX_IN_FLIGHT,
                topic_refresh_s=settings.BRIDGE_TOPIC_REFRESH_S,
                relay=not options["no_relay"],
                max_silence_s=settings.HEALTH_MAX_SILENCE_S,
                stuck_after_s=settings.BRIDGE_STUCK_AFTER_S,
                max_handoff_bytes=settings.BRIDGE_MAX_HANDOFF_BYTES,
            )
        )
        probe = None
        if options["metrics_port"]:
            try:
                probe = ProbeServer(
                    port=options["metrics_port"],
                    checks={
                        "consumer_loop": bridge.health,
                        "partitions": bridge.partitions_health,
                        "redis": bridge.redis_health,
                        "outbox_relay": bridge.relay_health,
                    },
                ).start()
                logger.info("bridge metrics and health on :%s (/metrics, /healthz)", probe.port)
            except OSError as exc:
                logger.warning("bridge metrics port %s unavailable: %s", options["metrics_port"], exc)
        bridge.install_signal_handlers()
        try:
            bridge.run()
        finally:
            if probe is not None:
                probe.stop()
