"""Pure logic and Redis scripts of the notifications domain, without the stack."""

from __future__ import annotations

import ipaddress
import smtplib
import time

import pytest
import redis
from django.test import override_settings

from notifications import protection, rendering, webhooks
from notifications.providers import OutgoingMessage
from notifications.providers.email import DjangoEmailProvider, _classify_send_error
from tests.support.clock import FakeClock


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # The test vector of the Standard Webhooks reference libraries.
    assert (
        webhooks.sign(
            secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp=1614265330,
            body=b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", True),  # allowlisted below
        ("127.0.0.2", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),  # noqa: S104
        ("224.0.0.1", False),
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:127.0.0.1", True),
        ("192.0.2.10", True),  # a TEST-NET address, allowlisted by CIDR below
        # IPv6 forms carrying a private IPv4 address; only the IPv4-mapped form is the allowlisted one.
        ("::127.0.0.1", False),  # IPv4-compatible
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:a9fe:a9fe::", False),  # 6to4 of 169.254.169.254
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8: public
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8: public
        ("2606:4700:4700::1111", True),
    ],
)
def test_only_public_or_allowlisted_addresses(address: str, allowed: bool) -> None:
    rules = webhooks.Allowlist.parse(["127.0.0.1", "192.0.2.0/24", "hooks.internal"])
    assert rules.allows_address(ipaddress.ip_address(address)) is allowed


@override_settings(WEBHOOK_ALLOWED_HOSTS=["hooks.internal"])
def test_check_url() -> None:
    assert webhooks.check_url("http://hooks.internal:8080/x") == ("hooks.internal", 8080)
    for url in (
        "ftp://example.com/",
        "http:///nohost",
        "http://10.0.0.1/",
        "http://localhost/",
        "http://[::1]/",
    ):
        with pytest.raises(webhooks.ForbiddenTarget):
            webhooks.check_url(url)


def test_locale_chain_falls_back_to_language_then_default() -> None:
    assert rendering.locale_chain("fr-CA") == ["fr-ca", "fr", "en"]
    assert rendering.locale_chain("pt_BR") == ["pt-br", "pt", "en"]
    assert rendering.locale_chain(None) == ["en"]
    with override_settings(NOTIFICATIONS_DEFAULT_LOCALE="de"):
        assert rendering.locale_chain("es") == ["es", "de", "en"]


def test_text_is_not_escaped_and_html_is() -> None:
    context = {"name": "<b>Ada</b> & co"}
    assert rendering.render_string("Hi {{ name }}", context, autoescape=False) == "Hi <b>Ada</b> & co"
    assert rendering.render_string("<p>{{ name }}</p>", context, autoescape=True) == (
        "<p>&lt;b&gt;Ada&lt;/b&gt; &amp; co</p>"
    )
    with pytest.raises(rendering.TemplateError):
        rendering.render_string("{% if %}", {}, autoescape=False)


def test_smtp_errors_are_classified() -> None:
    assert _classify_send_error(smtplib.SMTPDataError(451, b"later")).retryable
    refused = _classify_send_error(smtplib.SMTPRecipientsRefused({"a@b.c": (550, b"no such user")}))
    assert not refused.retryable and not refused.provider_fault
    unknown = _classify_send_error(smtplib.SMTPServerDisconnected("gone"))
    assert unknown.outcome_unknown


@override_settings(EMAIL_BACKEND="anymail.backends.test.EmailBackend", ANYMAIL={})
def test_an_anymail_backend_is_a_configuration_change() -> None:
    from django.core import mail

    provider = DjangoEmailProvider()
    receipt = provider.send(
        OutgoingMessage(
            notification_id="n-1",
            channel="email",
            recipient="a@example.com",
            subject="S",
            body="B",
            html_body="<p>B</p>",
            idempotency_key="n-1",
        )
    )
    assert provider.name == "email:test"
    [sent] = mail.outbox
    assert receipt.provider_message_id == str(sent.anymail_status.message_id)
    assert sent.alternatives[0][1] == "text/html"


@override_settings(NOTIFICATIONS_RATE_LIMIT_BURST=3, NOTIFICATIONS_RATE_LIMIT_PER_MINUTE=60)
def test_token_bucket_reserves_the_next_free_tokens(redis_protection: redis.Redis) -> None:
    clock = FakeClock()
    recipient = f"bucket-{time.time_ns()}@example.com"

    def reserve(channel: str = "email") -> float:
        return protection.rate_limit_reserve(channel=channel, recipient=recipient, clock=clock)

    waits = [reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 1.0, 2.0])
    assert reserve("sms") == 0.0  # a bucket per channel
    clock.advance(1.0)
    # One token came back, but the two reservations hold the next ones.
    assert reserve() == pytest.approx(2.0)
    # Idle long enough, the bucket is full again (never above its burst).
    clock.advance(60.0)
    assert [reserve() for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 1.0])


@override_settings(NOTIFICATIONS_BREAKER_FAILURE_THRESHOLD=2, NOTIFICATIONS_BREAKER_COOLDOWN_S=30)
def test_breaker_opens_probes_and_closes(redis_protection: redis.Redis) -> None:
    clock = FakeClock()
    name = f"unit-{time.time_ns()}"

    def check() -> protection.BreakerDecision:
        return protection.breaker_check(name, clock=clock)

    assert check().allowed
    assert not protection.breaker_record_failure(name, clock=clock)
    assert protection.breaker_record_failure(name, clock=clock)  # the threshold: open
    assert protection.breaker_is_open(name)
    assert redis_protection.hget(f"notifications:breaker:{name}", "opened_until") is not None  # its layout
    clock.advance(10)
    denied = check()
    assert not denied.allowed and denied.retry_after_s == pytest.approx(20)
    clock.advance(19.999)
    assert not check().allowed
    clock.advance(0.001)
    probe = check()
    assert probe.allowed and probe.probe
    busy = check()
    assert not busy.allowed and busy.probe_in_flight  # one probe at a time
    assert protection.breaker_record_failure(name, clock=clock)  # the probe failed: open again
    clock.advance(29.999)
    assert not check().allowed
    clock.advance(0.001)
    assert check().probe
    protection.breaker_record_success(name)
    closed = check()
    assert closed.allowed and not closed.probe and not protection.breaker_is_open(name)
