"""Kafka security settings: the client configuration for SASL_SSL/SCRAM, SASL_PLAINTEXT/PLAIN and SSL.

SSL is exercised for real: a broker reached only through TLS, trusted through KAFKA_SSL_CAFILE.
SASL is checked on the built configuration and kafka-python's own mechanisms: the embedded broker
(tansu 0.6, in-memory storage) does authenticate SCRAM, but creating a user is itself an
authenticated request once authentication is on, so no test user can exist.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError
from kafka.net.sasl import get_sasl_mechanism
from pytest_django.fixtures import Settings

from bridge.clients import client_config, new_admin, new_consumer, new_producer
from bridge.embedded import EmbeddedBroker, free_port
from tests.support.tls import Certificates, TlsProxy, make_certificates, openssl_available

BOOTSTRAP = "b1.kafka.example:9093,b2.kafka.example:9093"


@pytest.fixture
def kafka_settings(settings: Settings) -> Settings:
    settings.KAFKA_BOOTSTRAP_SERVERS = BOOTSTRAP
    settings.KAFKA_SECURITY_PROTOCOL = "PLAINTEXT"
    for name in ("MECHANISM", "USERNAME", "PASSWORD"):
        setattr(settings, f"KAFKA_SASL_{name}", None)
    for name in ("CAFILE", "CERTFILE", "KEYFILE"):
        setattr(settings, f"KAFKA_SSL_{name}", None)
    return settings


def test_sasl_ssl_with_scram_sha_512(kafka_settings: Settings) -> None:
    kafka_settings.KAFKA_SECURITY_PROTOCOL = "SASL_SSL"
    kafka_settings.KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
    kafka_settings.KAFKA_SASL_USERNAME = "platform"
    kafka_settings.KAFKA_SASL_PASSWORD = "s3cret"
    kafka_settings.KAFKA_SSL_CAFILE = "/etc/kafka/ca.pem"

    config = client_config()

    assert config == {
        "bootstrap_servers": ["b1.kafka.example:9093", "b2.kafka.example:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "platform",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": "/etc/kafka/ca.pem",
    }
    # kafka-python's SCRAM client takes the credentials from sasl_plain_* and opens the exchange.
    scram = get_sasl_mechanism(config["sasl_mechanism"])(host="b1.kafka.example", **config)
    assert scram.auth_bytes().startswith(b"n,,n=platform,r=")


def test_sasl_plaintext_with_plain(kafka_settings: Settings) -> None:
    kafka_settings.KAFKA_SECURITY_PROTOCOL = "sasl_plaintext"
    kafka_settings.KAFKA_SASL_MECHANISM = "plain"
    kafka_settings.KAFKA_SASL_USERNAME = "platform"
    kafka_settings.KAFKA_SASL_PASSWORD = "s3cret"

    config = client_config()

    assert config == {
        "bootstrap_servers": ["b1.kafka.example:9093", "b2.kafka.example:9093"],
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "platform",
        "sasl_plain_password": "s3cret",
    }
    plain = get_sasl_mechanism(config["sasl_mechanism"])(host="b1.kafka.example", **config)
    assert plain.auth_bytes() == b"platform\x00platform\x00s3cret"


def test_ssl_with_a_ca_and_a_client_certificate(kafka_settings: Settings) -> None:
    kafka_settings.KAFKA_SECURITY_PROTOCOL = "SSL"
    kafka_settings.KAFKA_SSL_CAFILE = "/etc/kafka/ca.pem"
    kafka_settings.KAFKA_SSL_CERTFILE = "/etc/kafka/client.pem"
    kafka_settings.KAFKA_SSL_KEYFILE = "/etc/kafka/client.key"

    assert client_config() == {
        "bootstrap_servers": ["b1.kafka.example:9093", "b2.kafka.example:9093"],
        "security_protocol": "SSL",
        "ssl_cafile": "/etc/kafka/ca.pem",
        "ssl_certfile": "/etc/kafka/client.pem",
        "ssl_keyfile": "/etc/kafka/client.key",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS'"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_SASL_MECHANISM"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"},
            "needs KAFKA_SASL_MECHANISM",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
            "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": "platform",
            },
            "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        ({"KAFKA_SASL_MECHANISM": "PLAIN"}, "is ignored with KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
        ({"KAFKA_SSL_CAFILE": "/etc/kafka/ca.pem"}, "ignored with KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": "/etc/kafka/client.pem"},
            "go together",
        ),
    ],
)
def test_half_applied_security_settings_are_refused(
    kafka_settings: Settings, overrides: dict[str, str], message: str
) -> None:
    for name, value in overrides.items():
        setattr(kafka_settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        client_config()


# --- SSL against a real broker --------------------------------------------------------------------


class _BrokerAdvertising(EmbeddedBroker):
    """tansu listening on its own port but advertising another one (the TLS proxy's)."""

    def __init__(self, *, advertised_port: int, log_path: Path) -> None:
        super().__init__(log_path=log_path)
        self.advertised_port = advertised_port

    def command(self) -> list[str]:
        argv = super().command()
        argv[argv.index("--advertised-listener-url") + 1] = f"tcp://127.0.0.1:{self.advertised_port}"
        return argv

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@dataclass(frozen=True)
class TlsBroker:
    bootstrap: str
    certs: Certificates


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    if not openssl_available():
        pytest.skip("the openssl command is needed to make test certificates")
    directory = tmp_path_factory.mktemp("tls")
    certs = make_certificates(directory)
    proxy_port = free_port()
    broker = _BrokerAdvertising(advertised_port=proxy_port, log_path=directory / "tansu.log").start()
    proxy = TlsProxy(port=proxy_port, upstream_port=broker.port, certs=certs).start()
    yield TlsBroker(f"127.0.0.1:{proxy_port}", certs)
    proxy.stop()
    broker.stop()


def test_ssl_clients_reach_a_tls_only_broker_trusting_the_configured_ca(
    kafka_settings: Settings, tls_broker: TlsBroker
) -> None:
    kafka_settings.KAFKA_BOOTSTRAP_SERVERS = tls_broker.bootstrap
    kafka_settings.KAFKA_SECURITY_PROTOCOL = "SSL"
    kafka_settings.KAFKA_SSL_CAFILE = str(tls_broker.certs.ca)
    topic = f"tls-check-{uuid.uuid4().hex[:8]}"

    admin = new_admin()
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
    producer = new_producer()
    try:
        producer.send(topic, key=b"k", value=b"over tls").get(timeout=30)
    finally:
        producer.close(timeout=5)
    consumer = new_consumer(group_id=None)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        records = consumer.poll(timeout_ms=10000)
    finally:
        consumer.close()
    assert [r.value for batch in records.values() for r in batch] == [b"over tls"]

    # The same broker without our CA (the system's trust store) or without TLS: no connection.
    kafka_settings.KAFKA_SSL_CAFILE = None
    with pytest.raises(KafkaError):
        KafkaAdminClient(**client_config(), bootstrap_timeout_ms=3000, request_timeout_ms=3000)
