"""The outbox relay thread: publishes outbox rows as soon as their transaction commits.

It LISTENs on the channel the outbox insert trigger NOTIFYs (PostgreSQL delivers a notification
only on commit, never for rolled-back work) and also drains on a short timer, so a missed
notification costs at most `poll_interval_s`.

It publishes with a producer of its own, and replaces it after a Kafka error: an idempotent
producer whose requests timed out while the broker was unreachable (paused 30 s, say) can stay
stuck once the broker is back, every flush timing out for minutes, while a new producer publishes
at once. Rows it had not confirmed are published again by the new one (at least once, as after
any failed publish; consumers drop the copy by its event id).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from django.db import DatabaseError, close_old_connections, connection, connections
from kafka import KafkaProducer
from kafka.errors import KafkaError

from bridge.clients import close_producer, new_producer
from bridge.outbox import NOTIFY_CHANNEL, RELAY_BATCH, relay_pending
from core.backoff import Backoff
from core.probes import Heartbeat

logger = logging.getLogger(__name__)

# After a failure the loop waits this long, doubling with each failure in a row up to the cap.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0


class OutboxRelay(threading.Thread):
    def __init__(
        self,
        stopping: threading.Event,
        *,
        poll_interval_s: float = 1.0,
        max_silence_s: float = 60.0,
        producer_factory: Callable[[], KafkaProducer] = new_producer,
    ) -> None:
        super().__init__(name="outbox-relay", daemon=True)
        self.stopping = stopping
        self.poll_interval_s = poll_interval_s
        self.heartbeat = Heartbeat(max_silence_s=max_silence_s)
        self.producer_factory = producer_factory

    def health(self) -> dict[str, object]:
        """For the bridge's /healthz: the thread runs and its loop turns."""
        if not self.is_alive():
            return {"status": "down", "error": "the outbox relay thread is not running"}
        return self.heartbeat.check()

    def run(self) -> None:
        listener: psycopg.Connection | None = None
        producer: KafkaProducer | None = None
        backoff = Backoff(first=RETRY_FIRST_S, cap=RETRY_MAX_S)
        try:
            while not self.stopping.is_set():
                self.heartbeat.beat()
                try:
                    if listener is None or listener.closed:
                        listener = self._listen()
                    if producer is None:
                        producer = self.producer_factory()
                    while relay_pending(producer=producer) == RELAY_BATCH and not self.stopping.is_set():
                        self.heartbeat.beat()
                    backoff.reset()
                    for _ in listener.notifies(timeout=self.poll_interval_s, stop_after=1):
                        pass
                except (DatabaseError, psycopg.Error, KafkaError, OSError) as exc:
                    delay = backoff.next_delay()
                    logger.warning("outbox relay: %s: %s; retrying in %.1fs", type(exc).__name__, exc, delay)
                    if listener is not None:
                        listener.close()
                    listener = None
                    if isinstance(exc, KafkaError) and producer is not None:
                        close_producer(producer)  # its unconfirmed records: the rows, again
                        producer = None
                    close_old_connections()
                    time.sleep(delay)
        finally:
            if listener is not None:
                listener.close()
            if producer is not None:
                close_producer(producer, timeout=5)
            connections.close_all()

    def _listen(self) -> psycopg.Connection:
        params = connection.get_connection_params()
        conn = psycopg.connect(
            **{k: v for k, v in params.items() if k not in ("cursor_factory", "context")},
            autocommit=True,
        )
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return conn
