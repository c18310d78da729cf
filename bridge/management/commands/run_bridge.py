"""`manage.py run_bridge`: the Kafka -> Celery bridge with its outbox relay and metrics port."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from prometheus_client import start_http_server

from bridge.consumer import Bridge, BridgeOptions

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
            help="Prometheus port (0 disables).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["metrics_port"]:
            try:
                start_http_server(options["metrics_port"])
            except OSError as exc:
                logger.warning("bridge metrics port %s unavailable: %s", options["metrics_port"], exc)
        bridge = Bridge(
            BridgeOptions(
                group_id=options["group"],
                max_queue_depth=settings.BRIDGE_MAX_QUEUE_DEPTH,
                relay=not options["no_relay"],
            )
        )
        bridge.install_signal_handlers()
        bridge.run()
