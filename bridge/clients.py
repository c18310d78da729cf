"""Kafka client construction: one place for bootstrap, security settings and the shared producer."""

from __future__ import annotations

import os
import threading
from typing import Any

from django.conf import settings
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from bridge.topics import TOPIC_MAX_MESSAGE_BYTES


def client_config() -> dict[str, Any]:
    """Bootstrap and security options shared by every consumer, producer and admin client."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.KAFKA_BOOTSTRAP_SERVERS.split(","),
        "security_protocol": settings.KAFKA_SECURITY_PROTOCOL,
    }
    if settings.KAFKA_SASL_MECHANISM:
        config["sasl_mechanism"] = settings.KAFKA_SASL_MECHANISM
        config["sasl_plain_username"] = settings.KAFKA_SASL_USERNAME
        config["sasl_plain_password"] = settings.KAFKA_SASL_PASSWORD
    if settings.KAFKA_SSL_CAFILE:
        config["ssl_cafile"] = settings.KAFKA_SSL_CAFILE
    return config


def new_producer(**overrides: Any) -> KafkaProducer:
    """An idempotent producer: acks from all in-sync replicas, no duplicates on its own retries."""
    options: dict[str, Any] = {
        **client_config(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "compression_type": None,
        "max_request_size": TOPIC_MAX_MESSAGE_BYTES,
        "request_timeout_ms": 15000,
        "delivery_timeout_ms": 30000,
        "max_block_ms": 30000,
    }
    options.update(overrides)
    return KafkaProducer(**options)


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


def shared_producer() -> KafkaProducer:
    """This process's producer; a forked Celery child builds its own rather than share sockets."""
    global _producer, _producer_pid
    with _producer_lock:
        if _producer is None or _producer_pid != os.getpid():
            _producer = new_producer()
            _producer_pid = os.getpid()
        return _producer


def close_shared_producer() -> None:
    """Flush and close this process's producer (at shutdown, before the broker goes away)."""
    global _producer
    with _producer_lock:
        if _producer is not None and _producer_pid == os.getpid():
            _producer.close(timeout=5)
        _producer = None
