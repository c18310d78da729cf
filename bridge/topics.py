"""The topic catalog: every topic's name, key, partitions, retention, cleanup, compression (docs/events.md).

Nothing else in the code base spells a topic name; import the constants from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DAY_MS = 24 * 60 * 60 * 1000
MIB = 1024 * 1024
# Messages over WARN_BYTES are logged; over MAX_EVENT_BYTES they are refused (dead-lettered).
WARN_BYTES = 1 * MIB
MAX_EVENT_BYTES = 10 * MIB
# Kafka's own limit must leave room for the record overhead and, on a DLQ, the dlq-* headers.
TOPIC_MAX_MESSAGE_BYTES = MAX_EVENT_BYTES + MIB


@dataclass(frozen=True)
class Topic:
    name: str
    key_field: str
    partitions: int = 6
    retention_ms: int = 7 * DAY_MS
    compression: str = "zstd"
    # Said even where it is Kafka's default, so that `kafka_topics --check` sees it on every broker.
    cleanup_policy: str = "delete"
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.name.split(".", 1)[0]

    def config(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "compression.type": self.compression,
            "max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES),
            "cleanup.policy": self.cleanup_policy,
            **self.extra_config,
        }

    def __str__(self) -> str:
        return self.name


PAYMENT_REQUESTED = Topic("payments.payment-requested", "paymentId", partitions=12)
PAYMENT_PROCESSED = Topic("payments.payment-processed", "paymentId", partitions=12)
PAYMENT_FAILED = Topic("payments.payment-failed", "paymentId", partitions=12)
LEDGER_TRANSACTION_REQUESTED = Topic("ledger.transaction-requested", "transactionId", partitions=12)
# Not compacted: it is keyed by accountId, and an account has a balance per currency,
# so compaction would keep only the currency updated last.
LEDGER_BALANCE_UPDATED = Topic("ledger.balance-updated", "accountId", partitions=12)
LEDGER_TRANSACTION_FAILED = Topic("ledger.transaction-failed", "transactionId")
NOTIFICATION_REQUESTED = Topic("notifications.notification-requested", "notificationId")
NOTIFICATION_SENT = Topic("notifications.notification-sent", "notificationId")
NOTIFICATION_FAILED = Topic("notifications.notification-failed", "notificationId")
# Audit topics keep 30 days in Kafka; the 7-year record is the database's audit log.
AUDIT_PAYMENT_EVENTS = Topic("audit.payment-events", "subject", retention_ms=30 * DAY_MS)
AUDIT_LEDGER_EVENTS = Topic("audit.ledger-events", "subject", retention_ms=30 * DAY_MS)
AUDIT_NOTIFICATION_EVENTS = Topic("audit.notification-events", "subject", retention_ms=30 * DAY_MS)
# Failed logins and API authentications, and the audit domain's own actions (alert work, archiving).
AUDIT_AUTH_EVENTS = Topic("audit.auth-events", "subject", retention_ms=30 * DAY_MS)
AUDIT_COMPLIANCE_EVENTS = Topic("audit.compliance-events", "subject", retention_ms=30 * DAY_MS)
AUDIT_COMPLIANCE_ALERTS = Topic("audit.compliance-alerts", "alertId", retention_ms=30 * DAY_MS)
# The signed heads of the audit chain, the copy outside the database `audit_verify --kafka` compares
# against: kept forever (a checkpoint a minute is small), one partition so it reads in order.
AUDIT_CHECKPOINTS = Topic("audit.checkpoints", "sequence", partitions=1, retention_ms=-1)
PAYMENTS_DLQ = Topic("payments.dlq", "original key", partitions=3, retention_ms=30 * DAY_MS)
LEDGER_DLQ = Topic("ledger.dlq", "original key", partitions=3, retention_ms=30 * DAY_MS)
NOTIFICATIONS_DLQ = Topic("notifications.dlq", "original key", partitions=3, retention_ms=30 * DAY_MS)
AUDIT_DLQ = Topic("audit.dlq", "original key", partitions=3, retention_ms=30 * DAY_MS)
# Orders and inventory: the shop's order saga, its stock, and the users it serves.
ORDER_REQUESTED = Topic("orders.order-requested", "orderId")
ORDER_CREATED = Topic("orders.order-created", "orderId")
ORDER_STATUS_UPDATED = Topic("orders.order-status-updated", "orderId")
INVENTORY_STOCK_UPDATED = Topic("inventory.stock-updated", "productId")
USER_REGISTERED = Topic("users.user-registered", "userId")
# Bare JSON logins have no id of their own: the key field names none.
USER_LOGIN = Topic("users.user-login", "-")
AUDIT_ORDER_EVENTS = Topic("audit.order-events", "subject", retention_ms=30 * DAY_MS)
AUDIT_USER_EVENTS = Topic("audit.user-events", "subject", retention_ms=30 * DAY_MS)
ORDERS_DLQ = Topic("orders.dlq", "original key", partitions=3, retention_ms=30 * DAY_MS)
USERS_DLQ = Topic("users.dlq", "original key", partitions=3, retention_ms=30 * DAY_MS)

CATALOG: tuple[Topic, ...] = (
    PAYMENT_REQUESTED,
    PAYMENT_PROCESSED,
    PAYMENT_FAILED,
    LEDGER_TRANSACTION_REQUESTED,
    LEDGER_BALANCE_UPDATED,
    LEDGER_TRANSACTION_FAILED,
    NOTIFICATION_REQUESTED,
    NOTIFICATION_SENT,
    NOTIFICATION_FAILED,
    AUDIT_PAYMENT_EVENTS,
    AUDIT_LEDGER_EVENTS,
    AUDIT_NOTIFICATION_EVENTS,
    AUDIT_AUTH_EVENTS,
    AUDIT_COMPLIANCE_EVENTS,
    AUDIT_COMPLIANCE_ALERTS,
    AUDIT_CHECKPOINTS,
    PAYMENTS_DLQ,
    LEDGER_DLQ,
    NOTIFICATIONS_DLQ,
    AUDIT_DLQ,
    ORDER_REQUESTED,
    ORDER_CREATED,
    ORDER_STATUS_UPDATED,
    INVENTORY_STOCK_UPDATED,
    USER_REGISTERED,
    USER_LOGIN,
    AUDIT_ORDER_EVENTS,
    AUDIT_USER_EVENTS,
    ORDERS_DLQ,
    USERS_DLQ,
)
BY_NAME: dict[str, Topic] = {t.name: t for t in CATALOG}
DLQ_BY_DOMAIN: dict[str, Topic] = {
    t.domain: t for t in (PAYMENTS_DLQ, LEDGER_DLQ, NOTIFICATIONS_DLQ, AUDIT_DLQ, ORDERS_DLQ, USERS_DLQ)
}

# Who may produce what. Open inputs take unsigned records from anyone the broker lets write them,
# as requests of the integration `kafka:<topic>`. Gated inputs take unsigned records only when the
# deployment lists them in KAFKA_TRUSTED_INPUTS (its broker ACLs admit only trusted producers).
# Every other topic, named here or matched later (a new `audit.<x>-events`), is the platform's own
# output: only records it signed are believed there. The manual-capture request topics join
# GATED_INPUTS when they join the catalog.
OPEN_INPUTS: frozenset[str] = frozenset(
    t.name for t in (PAYMENT_REQUESTED, ORDER_REQUESTED, USER_REGISTERED, USER_LOGIN)
)
GATED_INPUTS: frozenset[str] = frozenset(
    t.name for t in (LEDGER_TRANSACTION_REQUESTED, NOTIFICATION_REQUESTED)
)
PLATFORM_OUTPUTS: frozenset[str] = frozenset(t.name for t in CATALOG) - OPEN_INPUTS - GATED_INPUTS


def is_platform_output(name: str) -> bool:
    """Only the platform produces here (anything neither an open nor a gated input)."""
    return name not in OPEN_INPUTS and name not in GATED_INPUTS


# Audit topics are matched by pattern so that a new `audit.<x>-events` topic is consumed without a
# restart; the audit domain's own outputs (alerts, checkpoints, dead letters) are not audit input.
AUDIT_PREFIX = "audit."
AUDIT_PATTERN = r"audit\.(?!dlq$|compliance-alerts$|checkpoints$)[a-z0-9][a-z0-9._-]*"


def is_audit_topic(name: str) -> bool:
    return re.fullmatch(AUDIT_PATTERN, name) is not None


# Families of topics a consumer may declare as one event type (bridge.consumers): name -> regex.
AUDIT_FAMILY = "audit.*"
FAMILIES: dict[str, str] = {AUDIT_FAMILY: AUDIT_PATTERN}


def dlq_for(topic_name: str) -> Topic:
    """The dead-letter topic of the domain a topic belongs to (its name's first segment)."""
    return DLQ_BY_DOMAIN.get(topic_name.split(".", 1)[0], PAYMENTS_DLQ)


def lookup(name: str) -> Topic | None:
    return BY_NAME.get(name)
