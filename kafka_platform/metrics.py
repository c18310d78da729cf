"""Every Prometheus metric of CONTRACT §7, defined once and imported by the code that moves it."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

KAFKA_MESSAGES = Counter(
    "kafka_messages", "Kafka messages consumed by the bridge, by outcome.", ["topic", "outcome"]
)
BRIDGE_CONSUMER_LAG = Gauge(
    "bridge_consumer_lag", "Log-end offset minus committed offset.", ["topic", "partition"]
)
BRIDGE_DISPATCH = Counter("bridge_dispatch", "Celery tasks dispatched by the bridge.")
DLQ_MESSAGES = Counter("dlq_messages", "Records sent to a dead-letter topic.", ["topic", "reason"])
OUTBOX_PENDING = Gauge("outbox_pending", "Outbox events not yet published.")
OUTBOX_PUBLISHED = Counter("outbox_published", "Outbox events published to Kafka.")
PAYMENTS_PROCESSED = Counter("payments_processed", "Payments captured.")
PAYMENTS_FAILED = Counter("payments_failed", "Payments failed, by reason.", ["reason"])
PAYMENT_PROCESSING_DURATION = Histogram(
    "payment_processing_duration_seconds",
    "Time from a payment task's start to its outcome.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LEDGER_ENTRIES = Counter("ledger_entries", "Ledger entries posted.")
LEDGER_BALANCE = Gauge("ledger_balance_total", "Sum of balances per currency.", ["currency"])
NOTIFICATIONS_SENT = Counter("notifications_sent", "Notifications delivered.", ["channel"])
NOTIFICATIONS_FAILED = Counter("notifications_failed", "Notifications failed.", ["channel"])
AUDIT_EVENTS = Counter("audit_events", "Audit events stored.")
COMPLIANCE_VIOLATIONS = Counter("compliance_violations", "Compliance alerts raised, by rule.", ["rule"])
