"""Kafka client construction: one place for bootstrap, security settings and the shared producer."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import Fetcher
from kafka.errors import KafkaError, KafkaTimeoutError

from bridge.topics import TOPIC_MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# Mechanisms that authenticate with a username and password (kafka-python's sasl_plain_* options).
PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def client_config() -> dict[str, Any]:
    """Bootstrap and security options shared by every consumer, producer and admin client.

    Refuses a configuration kafka-python would silently half-apply: SASL settings with a
    non-SASL protocol are ignored by the client, and a missing SCRAM password only fails at
    the broker, so both are rejected here with the setting to fix.
    """
    protocol = (settings.KAFKA_SECURITY_PROTOCOL or "PLAINTEXT").upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ImproperlyConfigured(
            f"KAFKA_SECURITY_PROTOCOL={protocol!r}: expected one of {', '.join(SECURITY_PROTOCOLS)}"
        )
    config: dict[str, Any] = {
        "bootstrap_servers": settings.KAFKA_BOOTSTRAP_SERVERS.split(","),
        "security_protocol": protocol,
    }
    mechanism = (settings.KAFKA_SASL_MECHANISM or "").upper()
    if protocol.startswith("SASL_"):
        if mechanism not in PASSWORD_MECHANISMS:
            raise ImproperlyConfigured(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM, one of "
                f"{', '.join(PASSWORD_MECHANISMS)} (got {settings.KAFKA_SASL_MECHANISM!r})"
            )
        if not settings.KAFKA_SASL_USERNAME or not settings.KAFKA_SASL_PASSWORD:
            raise ImproperlyConfigured(
                f"KAFKA_SASL_MECHANISM={mechanism} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        config["sasl_mechanism"] = mechanism
        config["sasl_plain_username"] = settings.KAFKA_SASL_USERNAME
        config["sasl_plain_password"] = settings.KAFKA_SASL_PASSWORD
    elif mechanism:
        raise ImproperlyConfigured(
            f"KAFKA_SASL_MECHANISM={mechanism} is ignored with KAFKA_SECURITY_PROTOCOL={protocol}: "
            "use SASL_SSL (or SASL_PLAINTEXT)"
        )
    tls_files = {
        "ssl_cafile": settings.KAFKA_SSL_CAFILE,
        "ssl_certfile": settings.KAFKA_SSL_CERTFILE,
        "ssl_keyfile": settings.KAFKA_SSL_KEYFILE,
    }
    if protocol.endswith("SSL"):
        # Without a CA file the system's trust store verifies the broker (hostname checked too).
        config.update({option: path for option, path in tls_files.items() if path})
        if bool(settings.KAFKA_SSL_CERTFILE) != bool(settings.KAFKA_SSL_KEYFILE):
            raise ImproperlyConfigured("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (mutual TLS)")
    elif any(tls_files.values()):
        raise ImproperlyConfigured(
            f"KAFKA_SSL_* files are ignored with KAFKA_SECURITY_PROTOCOL={protocol}: use SSL or SASL_SSL"
        )
    return config


def new_producer(**overrides: Any) -> KafkaProducer:
    """An idempotent producer: acks from all in-sync replicas, no duplicates on its own retries."""
    options: dict[str, Any] = {
        **client_config(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "compression_type": None,
        # A record over it is refused by the client (MessageSizeTooLargeError) before it is sent:
        # dead letters that large go out as references (bridge.deadletters).
        "max_request_size": settings.KAFKA_MAX_REQUEST_BYTES,
        "request_timeout_ms": 15000,
        "delivery_timeout_ms": 30000,
        "max_block_ms": 30000,
    }
    options.update(overrides)
    return KafkaProducer(**options)


def _resumed_partitions_read_again() -> None:
    """Repair kafka-python 3.0.12's pause/resume (KAFKA-7548 port).

    Records already fetched for a partition that gets paused are parked and put back on resume
    only when the fetcher's in-line slot is None; but a consumed batch stays in the slot
    (exhausted, falsy, never reset to None), so the parked records never came back, and a
    partition with parked records is never fetched again: after one backpressure pause the
    bridge stopped reading that partition for good, silently (tests/chaos/
    test_backlog.py; tests/bridge/test_paused_partition_resumes.py). An exhausted slot holds
    nothing, so emptying it before each read changes nothing else.
    """
    original = Fetcher.fetched_records
    if getattr(original, "_empties_exhausted_slot", False):
        return

    def fetched_records(self: Fetcher, *args: Any, **kwargs: Any) -> Any:
        if self._next_partition_records is not None and not self._next_partition_records:
            self._next_partition_records = None
        return original(self, *args, **kwargs)

    fetched_records._empties_exhausted_slot = True  # type: ignore[attr-defined]
    Fetcher.fetched_records = fetched_records


_resumed_partitions_read_again()


def new_consumer(**overrides: Any) -> KafkaConsumer:
    options: dict[str, Any] = {
        **client_config(),
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.KAFKA_SESSION_TIMEOUT_MS,
        "heartbeat_interval_ms": max(settings.KAFKA_SESSION_TIMEOUT_MS // 3, 500),
        "max_partition_fetch_bytes": TOPIC_MAX_MESSAGE_BYTES,
        "fetch_max_bytes": 4 * TOPIC_MAX_MESSAGE_BYTES,
    }
    options.update(overrides)
    return KafkaConsumer(**options)


def new_admin() -> KafkaAdminClient:
    return KafkaAdminClient(**client_config())


_producer: KafkaProducer | None = None
_producer_pid: int | None = None
_producer_lock = threading.Lock()
# How long a forced close waits for the producer's sender thread to fail its records and stop.
FORCED_CLOSE_JOIN_S = 5.0


def shared_producer() -> KafkaProducer:
    """This process's producer; a forked Celery child builds its own rather than share sockets."""
    global _producer, _producer_pid
    with _producer_lock:
        if _producer is None or _producer_pid != os.getpid():
            _producer = new_producer()
            _producer_pid = os.getpid()
        return _producer


def close_producer(producer: KafkaProducer, timeout: float = 0.0) -> None:
    """Close `producer`, waiting at most `timeout` seconds for its records in flight; those still
    unconfirmed then fail. Never raises.

    kafka-python 3.0.12's close() flushes first and raises KafkaTimeoutError when that flush times
    out, before it has closed anything: close(timeout=0) with a record in flight closed nothing,
    and its caller (which meant to drop a stuck producer) died or kept it. Here the sender is then
    closed forcefully, as close() itself does once its timeout has passed.
    """
    try:
        producer.close(timeout=timeout)
        return
    except KafkaTimeoutError:
        pass
    except KafkaError as exc:
        logger.warning("closing a Kafka producer: %s: %s", type(exc).__name__, exc)
        return
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()  # fails the records in flight, which empties the flush close() waits on
        sender.join(FORCED_CLOSE_JOIN_S)
    try:
        producer.close(timeout=0)
    except KafkaError as exc:
        logger.warning("a Kafka producer left unclosed: %s: %s", type(exc).__name__, exc)


def discard_shared_producer() -> None:
    """Drop this process's producer without waiting on it (after a publish failure that may have
    left it stuck): the next shared_producer() builds a new one; unconfirmed records are lost to
    it, and their outbox rows stay unsent for the next attempt."""
    global _producer
    with _producer_lock:
        producer, _producer = _producer, None
        if producer is not None and _producer_pid == os.getpid():
            close_producer(producer)


def close_shared_producer() -> None:
    """Flush and close this process's producer (at shutdown, before the broker goes away)."""
    global _producer
    with _producer_lock:
        producer, _producer = _producer, None
        if producer is not None and _producer_pid == os.getpid():
            close_producer(producer, timeout=5)
