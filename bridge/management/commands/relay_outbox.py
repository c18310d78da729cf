"""`manage.py relay_outbox`: the outbox relay on its own (run_bridge also runs it, as a thread)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from bridge.relay import OutboxRelay
from core import tracing


class Command(BaseCommand):
    help = "Publish committed outbox events to Kafka until SIGTERM."

    def handle(self, *args: Any, **options: Any) -> None:
        tracing.setup("relay")
        stopping = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: stopping.set())
        relay = OutboxRelay(stopping)
        relay.start()
        while relay.is_alive():
            relay.join(timeout=0.5)
