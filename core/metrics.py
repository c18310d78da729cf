"""Every Prometheus metric of the platform, defined once and imported by the code that moves it.

Web and bridge serve the default registry; a Celery worker serves these from every one of its
processes at once (prometheus_client multiprocess mode, see `core.worker_probe`).
`outbox_pending` is read from the database at scrape time, so every process reports the same truth.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

KAFKA_MESSAGES = Counter(
    "kafka_messages", "Kafka messages consumed by the bridge, by outcome.", ["topic", "outcome"]
)
BRIDGE_CONSUMER_LAG = Gauge(
    "bridge_consumer_lag", "Log-end offset minus committed offset.", ["topic", "partition"]
)
BRIDGE_PARTITION_STUCK = Gauge(
    "bridge_partition_stuck",
    "1 while the bridge has failed to hand on a partition's next record for BRIDGE_STUCK_AFTER_S.",
    ["topic", "partition"],
)
BRIDGE_DISPATCH = Counter("bridge_dispatch", "Celery tasks dispatched by the bridge.")
BRIDGE_FILTERED = Counter(
    "bridge_filtered",
    "Celery tasks the bridge did not create because the consumer's filter refused the record.",
    ["topic", "task"],
)
DLQ_MESSAGES = Counter("dlq_messages", "Records sent to a dead-letter topic.", ["topic", "reason"])
OUTBOX_PUBLISHED = Counter("outbox_published", "Outbox events published to Kafka.")
PAYMENTS_PROCESSED = Counter("payments_processed", "Payments captured.")
PAYMENTS_FAILED = Counter("payments_failed", "Payments failed, by reason.", ["reason"])
PAYMENT_PROCESSING_DURATION = Histogram(
    "payment_processing_duration_seconds",
    "Time from a payment task's start to its outcome.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LEDGER_ENTRIES = Counter("ledger_entries", "Ledger entries posted.")
# Set by whichever worker process posted last; across processes the most recent value counts.
LEDGER_BALANCE = Gauge(
    "ledger_balance_total", "Sum of balances per currency.", ["currency"], multiprocess_mode="mostrecent"
)
NOTIFICATIONS_SENT = Counter("notifications_sent", "Notifications delivered.", ["channel"])
NOTIFICATIONS_FAILED = Counter("notifications_failed", "Notifications failed.", ["channel"])
AUDIT_EVENTS = Counter("audit_events", "Audit events stored.")
COMPLIANCE_VIOLATIONS = Counter("compliance_violations", "Compliance alerts raised, by rule.", ["rule"])
ORDERS = Counter("orders", "Orders that reached a status, by status.", ["status"])


class OutboxPendingCollector(Collector):
    """`outbox_pending`: unpublished outbox rows, counted in the database when scraped.

    The outbox's owner hands over the count (`count_with`, from `bridge.apps`), so this module
    depends on nothing of the bridge while the bridge moves the other metrics here.
    """

    NAME = "outbox_pending"
    DOCUMENTATION = "Outbox events not yet published."

    def __init__(self) -> None:
        self._count: Callable[[], int] | None = None

    def count_with(self, count: Callable[[], int]) -> None:
        self._count = count

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.NAME, self.DOCUMENTATION)]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db import DatabaseError, connection

        family = GaugeMetricFamily(self.NAME, self.DOCUMENTATION)
        if self._count is None:
            yield family
            return
        try:
            family.add_metric([], self._count())
        except DatabaseError as exc:
            logger.warning("outbox_pending not collected: %s", exc)
        finally:
            # A metrics server answers each scrape on a new thread; its connection goes with it.
            if threading.current_thread() is not threading.main_thread():
                connection.close()
        yield family


OUTBOX_PENDING = OutboxPendingCollector()
REGISTRY.register(OUTBOX_PENDING)

# The metrics with per-process values (everything but the database-backed OUTBOX_PENDING).
PROCESS_METRICS: tuple[Counter | Gauge | Histogram, ...] = (
    KAFKA_MESSAGES,
    BRIDGE_CONSUMER_LAG,
    BRIDGE_PARTITION_STUCK,
    BRIDGE_DISPATCH,
    BRIDGE_FILTERED,
    DLQ_MESSAGES,
    OUTBOX_PUBLISHED,
    PAYMENTS_PROCESSED,
    PAYMENTS_FAILED,
    PAYMENT_PROCESSING_DURATION,
    LEDGER_ENTRIES,
    LEDGER_BALANCE,
    NOTIFICATIONS_SENT,
    NOTIFICATIONS_FAILED,
    AUDIT_EVENTS,
    COMPLIANCE_VIOLATIONS,
    ORDERS,
)
