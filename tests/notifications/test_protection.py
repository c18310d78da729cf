"""The circuit breaker per provider and the per-recipient rate limit, through the real stack, with a
real SMTP server that fails and recovers and Redis holding the shared state."""

from __future__ import annotations

import uuid

import pytest
import redis

from bridge import topics
from notifications.models import DeliveryAttempt, Notification
from tests.conftest import TEST_REDIS_URL, Stack
from tests.notifications.conftest import BREAKER_THRESHOLD, RATE_BURST, RATE_PER_MINUTE
from tests.support.builders import notification_request, structured
from tests.support.kafka import Collector, produce, subject_is
from tests.support.receivers import SmtpReceiver
from tests.support.signing import sign
from tests.support.waiting import wait_until

REQUESTED = topics.NOTIFICATION_REQUESTED.name
SENT = topics.NOTIFICATION_SENT.name


def request(stack: Stack, data: dict[str, object]) -> None:
    # As the platform's domains ask notifications: signed (the topic is gated).
    value = structured(REQUESTED, data)
    produce(
        stack.bootstrap, REQUESTED, value, key=str(data["notificationId"]), headers=sign(REQUESTED, value)
    )


def breaker_open(name: str) -> bool:
    return (
        redis.Redis.from_url(TEST_REDIS_URL).hget(f"notifications:breaker:{name}", "opened_until") is not None
    )


@pytest.mark.slow
def test_breaker_stops_calling_a_failing_provider_and_closes_when_it_recovers(
    nlive: Stack, smtp: SmtpReceiver, collector: Collector
) -> None:
    run = uuid.uuid4().hex[:8]
    before = [notification_request(recipient=f"{run}-a{i}@example.com") for i in range(BREAKER_THRESHOLD)]
    after = [notification_request(recipient=f"{run}-b{i}@example.com") for i in range(3)]
    ids = [str(d["notificationId"]) for d in before + after]
    smtp.failing = True
    try:
        for data in before:
            request(nlive, data)
        wait_until(lambda: breaker_open("email:smtp"), what="the email breaker to open")
        for data in after:
            request(nlive, data)
        wait_until(
            lambda: (
                Notification.objects.filter(
                    notification_id__in=[d["notificationId"] for d in after], deferred_reason="circuit_open"
                ).count()
                == len(after)
            ),
            what="the later notifications deferred by the open breaker",
        )
    finally:
        smtp.failing = False

    for data in before + after:
        smtp.wait_for(str(data["recipient"]), timeout_s=60)
        collector.wait_for(SENT, subject_is(str(data["notificationId"])))
    failed = DeliveryAttempt.objects.filter(notification__notification_id__in=ids, status="failed").count()
    # The threshold's failures opened it; at most one half-open probe may have failed after them.
    # Without the breaker every notification would have failed at least once while SMTP refused.
    assert BREAKER_THRESHOLD <= failed <= BREAKER_THRESHOLD + 1
    untouched = [
        n
        for n in Notification.objects.filter(notification_id__in=[d["notificationId"] for d in after])
        if [a.status for a in n.delivery_attempts.all()] == ["sent"]
    ]
    assert len(untouched) >= len(after) - 1
    assert not breaker_open("email:smtp")


@pytest.mark.slow
def test_rate_limit_spaces_deliveries_to_one_recipient(
    nlive: Stack, smtp: SmtpReceiver, collector: Collector
) -> None:
    recipient = f"{uuid.uuid4().hex[:8]}@example.com"
    other = f"{uuid.uuid4().hex[:8]}@example.com"
    batch = [notification_request(recipient=recipient) for _ in range(RATE_BURST + 2)]
    for data in batch:
        request(nlive, data)
    request(nlive, notification_request(recipient=other))

    mails = smtp.wait_for(recipient, count=len(batch), timeout_s=60)
    times = sorted(m.received_at for m in mails)
    refill_s = 60.0 / RATE_PER_MINUTE
    # The burst leaves at once; each one beyond it waits for the next token.
    assert times[RATE_BURST - 1] - times[0] < refill_s
    assert times[RATE_BURST] - times[0] >= refill_s * 0.8, times
    assert times[RATE_BURST + 1] - times[RATE_BURST] >= refill_s * 0.8, times
    for data in batch:
        collector.wait_for(SENT, subject_is(str(data["notificationId"])))
    limited = Notification.objects.filter(recipient=recipient, deferred_reason="rate_limited")
    assert limited.count() == 2 and all(n.status == "sent" and n.attempts == 1 for n in limited)
    # Another recipient has its own bucket.
    smtp.wait_for(other)
    assert not Notification.objects.get(recipient=other).deferred_reason
