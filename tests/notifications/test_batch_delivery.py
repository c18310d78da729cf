"""Batches, in process: payment outcomes queued as a set, the handoffs of one transaction leave in
few tasks, a batch's messages go one at a time between two transactions, and what a lost or
interrupted batch leaves behind is resolved message by message (docs/notifications.md)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.auth import get_user_model
from django.db import OperationalError, connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bridge import topics
from bridge.codec import Envelope
from bridge.models import OutboxEvent
from notifications import services, task_names
from notifications import tasks as notification_tasks
from notifications.models import (
    AttemptStatus,
    DeliveryAttempt,
    EndpointKind,
    Notification,
    NotificationStatus,
    WebhookEndpoint,
)
from notifications.providers import DeliveryError, OutgoingMessage, Receipt
from notifications.services import delivery, queueing, transitions
from payments.models import Payment
from tests.support.builders import stored_payment

pytestmark = pytest.mark.django_db


class Tasks:
    """The tasks the notifications would have been handed to, instead of Redis."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    def __call__(self, task_name: str, *args: Any) -> None:
        self.sent.append((task_name, args))

    def batches(self) -> list[list[list[Any]]]:
        return [args[0] for name, args in self.sent if name == task_names.DELIVER_NOTIFICATIONS]


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> Tasks:
    recorded = Tasks()
    monkeypatch.setattr(transitions, "enqueue", recorded)
    return recorded


@pytest.fixture
def queue(
    tasks: Tasks,
    redis_protection: redis.Redis,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> Iterator[Callable[..., list[Notification]]]:
    """Queue notifications in one transaction (each spec a channel and recipient); their handoffs
    are in `tasks` once it commits."""

    def queue_all(*destinations: tuple[str, str]) -> list[Notification]:
        run = uuid.uuid4().hex[:8]
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            queued = [
                queueing._queue(
                    queueing.NotificationSpec(
                        notification_id=f"batch-{run}-{i}",
                        channel=channel,
                        recipient=recipient,
                        subject="Hello",
                        body="A batch",
                    )
                )
                for i, (channel, recipient) in enumerate(destinations)
            ]
        assert all(n is not None for n in queued)
        return [n for n in queued if n is not None]

    yield queue_all


def emails(n: int) -> list[tuple[str, str]]:
    run = uuid.uuid4().hex[:8]
    return [("email", f"{run}-{i}@example.com") for i in range(n)]


@override_settings(NOTIFICATIONS_DELIVERY_BATCH=2)
def test_the_handoffs_of_one_transaction_leave_in_batches_and_each_webhook_alone(
    queue: Callable[..., list[Notification]], tasks: Tasks
) -> None:
    first, second, hook, third = queue(
        *emails(2), ("webhook", "https://hooks.example.com/in"), ("sms", "+15550001234")
    )

    assert tasks.sent == [
        (task_names.DELIVER_NOTIFICATIONS, ([[first.pk, str(first.claim)], [second.pk, str(second.claim)]],)),
        (task_names.DELIVER_NOTIFICATION, (hook.pk, str(hook.claim))),
        (task_names.DELIVER_NOTIFICATIONS, ([[third.pk, str(third.claim)]],)),
    ]


class ScriptedProvider:
    """Accepts every message, except that the task's soft time limit strikes during the send
    numbered `interrupt_at`."""

    def __init__(self, *, idempotent: bool, interrupt_at: int | None = None, down: bool = False) -> None:
        self.name = "scripted"
        self.idempotent = idempotent
        self.interrupt_at = interrupt_at
        self.down = down  # every send fails as the provider's fault
        self.calls: list[str] = []
        self.key = f"scripted-{uuid.uuid4().hex[:8]}"

    def breaker_key(self, message: OutgoingMessage) -> str:
        return self.key

    def send(self, message: OutgoingMessage) -> Receipt:
        self.calls.append(message.notification_id)
        if len(self.calls) - 1 == self.interrupt_at:
            raise SoftTimeLimitExceeded()
        if self.down:
            raise DeliveryError.unavailable("503 from the provider", status_code=503)
        return Receipt(provider_message_id=f"p-{message.notification_id}")


def use_provider(monkeypatch: pytest.MonkeyPatch, provider: ScriptedProvider) -> None:
    monkeypatch.setattr(delivery, "provider_for", lambda channel: provider)


def attempts_of(notification: Notification) -> list[DeliveryAttempt]:
    return list(DeliveryAttempt.objects.filter(notification=notification).order_by("number"))


def test_a_batch_sends_each_message_once_and_records_each_outcome(
    queue: Callable[..., list[Notification]], tasks: Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = ScriptedProvider(idempotent=False)
    use_provider(monkeypatch, provider)
    notifications = queue(*emails(3))
    [batch] = tasks.batches()
    stale = [notifications[1].pk, str(uuid.uuid4())]  # a duplicate task's claim: not the row's

    results = services.notifications_deliver([tuple(item) for item in [*batch, stale]])

    assert results == ["sent", "sent", "sent", "not_claimed"]
    assert provider.calls == [n.notification_id for n in notifications]
    for notification in notifications:
        notification.refresh_from_db()
        assert notification.status == NotificationStatus.SENT and notification.attempts == 1
        [attempt] = attempts_of(notification)
        assert attempt.status == AttemptStatus.SENT
        assert attempt.provider_message_id == f"p-{notification.notification_id}"
        assert attempt.handed_over_at is not None  # written before the provider was called
        assert attempt.handed_over_at <= attempt.finished_at
    sent_events = OutboxEvent.objects.filter(
        topic=topics.NOTIFICATION_SENT.name, key__in=[n.notification_id for n in notifications]
    )
    assert sent_events.count() == 3


@pytest.mark.parametrize(
    ("idempotent", "interrupted_becomes"),
    [(True, NotificationStatus.QUEUED), (False, NotificationStatus.FAILED)],
)
def test_a_batch_cut_by_the_time_limit_retries_what_it_never_sent(
    queue: Callable[..., list[Notification]],
    tasks: Tasks,
    monkeypatch: pytest.MonkeyPatch,
    idempotent: bool,
    interrupted_becomes: str,
) -> None:
    provider = ScriptedProvider(idempotent=idempotent, interrupt_at=1)
    use_provider(monkeypatch, provider)
    done, interrupted, never_sent = queue(*emails(3))
    [batch] = tasks.batches()

    services.notifications_deliver([tuple(item) for item in batch])

    assert provider.calls == [done.notification_id, interrupted.notification_id]
    for n in (done, interrupted, never_sent):
        n.refresh_from_db()
    assert done.status == NotificationStatus.SENT
    # The message on its way when the limit struck may have arrived: resent only where the
    # provider deduplicates, else failed as unknown.
    assert interrupted.status == interrupted_becomes
    assert [a.status for a in attempts_of(interrupted)] == [AttemptStatus.UNKNOWN]
    # The one after it never left: queued for its retry, whatever the provider.
    assert never_sent.status == NotificationStatus.QUEUED and never_sent.retry_step == 1
    [attempt] = attempts_of(never_sent)
    assert attempt.status == AttemptStatus.FAILED and "not sent" in attempt.error
    assert attempt.handed_over_at is None


@override_settings(NOTIFICATIONS_BREAKER_FAILURE_THRESHOLD=2)
def test_a_breaker_opened_by_a_batch_stops_the_rest_of_it(
    queue: Callable[..., list[Notification]], tasks: Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = ScriptedProvider(idempotent=True, down=True)
    use_provider(monkeypatch, provider)
    notifications = queue(*emails(4))
    [batch] = tasks.batches()

    results = services.notifications_deliver([tuple(item) for item in batch])

    assert provider.calls == [n.notification_id for n in notifications[:2]]  # then it opened
    assert results == [NotificationStatus.QUEUED] * 4  # each waits for its retry
    held = [attempts_of(n)[0] for n in notifications[2:]]
    assert all(a.status == AttemptStatus.FAILED and "circuit breaker" in a.error for a in held)


def test_a_lost_batch_is_resolved_message_by_message(
    queue: Callable[..., list[Notification]], tasks: Tasks
) -> None:
    """A worker lost during a batch of emails (whose provider does not deduplicate): the message it
    had handed over fails as unknown and is not resent; the ones it never reached are retried."""
    handed_over, not_reached = queue(*emails(2))
    [batch] = tasks.batches()
    begun = delivery._begin_attempts([tuple(item) for item in batch])  # step 1 committed
    assert all(isinstance(b, delivery._Started) for b in begun)
    delivery._hand_over(begun[0])  # the first message went out; then the worker was lost
    past = timezone.now() - timedelta(seconds=1)
    Notification.objects.filter(pk__in=[handed_over.pk, not_reached.pk]).update(next_attempt_at=past)
    tasks.sent.clear()

    with transaction.atomic():
        services.notifications_dispatch_due()

    handed_over.refresh_from_db()
    not_reached.refresh_from_db()
    assert handed_over.status == NotificationStatus.FAILED and handed_over.failure_reason == "outcome_unknown"
    assert [a.status for a in attempts_of(handed_over)] == [AttemptStatus.UNKNOWN]
    assert not_reached.status == NotificationStatus.QUEUED and not_reached.retry_step == 1
    [attempt] = attempts_of(not_reached)
    assert attempt.status == AttemptStatus.FAILED and "not sent" in attempt.error
    assert not tasks.sent  # its retry waits for its time; the dispatcher hands it over then


def test_outcomes_the_database_missed_are_recorded_once_it_is_back(
    queue: Callable[..., list[Notification]], tasks: Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL went away while a batch was at the SMTP server (the 10,000-payment soak's 60 s
    refusal caught nine emails so): what the provider answered is recorded when it is back, not
    left for the dispatcher to call unknown."""
    provider = ScriptedProvider(idempotent=False)
    use_provider(monkeypatch, provider)
    notifications = queue(*emails(3))
    [batch] = tasks.batches()
    record = delivery._finish_attempts
    tries: list[int] = []

    def record_while_postgres_refuses(outcomes: list[delivery._Outcome]) -> dict[uuid.UUID, str]:
        tries.append(len(outcomes))
        if len(tries) <= 2:
            raise OperationalError("connection refused")
        return record(outcomes)

    waits: list[float] = []
    monkeypatch.setattr(delivery, "_finish_attempts", record_while_postgres_refuses)
    monkeypatch.setattr(delivery.time, "sleep", waits.append)

    results = services.notifications_deliver([tuple(item) for item in batch])

    assert results == [NotificationStatus.SENT] * 3
    assert tries == [3, 3, 3] and waits == [0.5, 1.0]
    assert provider.calls == [n.notification_id for n in notifications]  # each sent once
    for notification in notifications:
        notification.refresh_from_db()
        assert notification.status == NotificationStatus.SENT
        assert [a.status for a in attempts_of(notification)] == [AttemptStatus.SENT]


def test_outcomes_wait_for_the_database_only_so_long(
    queue: Callable[..., list[Notification]], tasks: Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past RECORD_RETRY_FOR_S the task gives up; its attempts stay `sending` for the dispatcher."""
    use_provider(monkeypatch, ScriptedProvider(idempotent=False))
    [notification] = queue(*emails(1))
    [batch] = tasks.batches()

    def refused(outcomes: list[delivery._Outcome]) -> dict[uuid.UUID, str]:
        raise OperationalError("connection refused")

    monkeypatch.setattr(delivery, "_finish_attempts", refused)
    monkeypatch.setattr(delivery, "RECORD_RETRY_FOR_S", 1.0)  # one wait of 0.5 s, not the next of 1 s

    with pytest.raises(OperationalError):
        services.notifications_deliver([tuple(item) for item in batch])

    [attempt] = attempts_of(notification)
    assert attempt.status == AttemptStatus.SENDING and attempt.handed_over_at is not None


def test_a_database_lost_before_a_hand_over_stops_the_batch_there(
    queue: Callable[..., list[Notification]], tasks: Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message whose hand-over could not be written is not sent, nor are the ones after it: all
    are retried, none becomes unknown; the one sent before is recorded sent."""
    provider = ScriptedProvider(idempotent=False)
    use_provider(monkeypatch, provider)
    sent, refused, after = queue(*emails(3))
    [batch] = tasks.batches()
    hand_over = delivery._hand_over

    def hand_over_until_postgres_goes(started: delivery._Started) -> None:
        if started.message.notification_id == refused.notification_id:
            raise OperationalError("server closed the connection unexpectedly")
        hand_over(started)

    monkeypatch.setattr(delivery, "_hand_over", hand_over_until_postgres_goes)

    results = services.notifications_deliver([tuple(item) for item in batch])

    assert results == [NotificationStatus.SENT, NotificationStatus.QUEUED, NotificationStatus.QUEUED]
    assert provider.calls == [sent.notification_id]
    for n in (refused, after):
        n.refresh_from_db()
        assert n.status == NotificationStatus.QUEUED and n.retry_step == 1
        [attempt] = attempts_of(n)
        assert attempt.status == AttemptStatus.FAILED and attempt.handed_over_at is None
        assert "not sent: the database was unreachable" in attempt.error


def outcome_event(payment: Payment, customer: dict[str, str]) -> Envelope:
    """The payments domain's event, as the platform signs it: `clientId` names the requester."""
    data = {
        "paymentId": payment.payment_id,
        "status": "captured",
        "amount": "12.50",
        "currency": "USD",
        "merchantId": "m1",
        "customer": customer,
    }
    if payment.client_id is not None:
        data["clientId"] = payment.client_id
    return Envelope(
        id=str(uuid.uuid4()),
        type=topics.PAYMENT_PROCESSED.name,
        source="/payments",
        time="2026-11-30T00:00:00Z",
        data=data,
        signed=True,
    )


def paid(run: str, i: int, client: Any) -> Payment:
    return stored_payment(
        payment_id=f"pay_{run}_{i}", amount=Decimal("12.50"), client=client, correlation_id=f"c-{run}-{i}"
    )


def test_a_batch_of_payment_outcomes_queues_what_one_at_a_time_would(
    tasks: Tasks, redis_protection: redis.Redis, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    run = uuid.uuid4().hex[:8]
    shop, other = (get_user_model().objects.create_user(f"{name}-{run}") for name in ("shop", "other"))
    own = WebhookEndpoint.objects.create(
        url=f"https://shop.example.com/{run}", owner=shop, kind=EndpointKind.REGISTERED, event_types=["*"]
    )
    WebhookEndpoint.objects.create(  # another client's: never told of the shop's payments
        url=f"https://other.example.com/{run}", owner=other, kind=EndpointKind.REGISTERED, event_types=["*"]
    )
    events = [
        outcome_event(paid(run, 0, shop), {"email": f"a-{run}@example.com", "phone": "+15550001234"}),
        outcome_event(paid(run, 1, None), {"email": f"b-{run}@example.com"}),  # came through Kafka
    ]
    events.append(events[0])  # delivered twice within the batch

    with django_capture_on_commit_callbacks(execute=True):
        queued = notification_tasks.notify_payment_outcomes(events)

    first, second = (f"payment:pay_{run}_{i}:captured:" for i in range(2))
    assert sorted(queued) == sorted(
        [first + "email", first + "sms", first + f"webhook:{own.id}", second + "email"]
    )
    rows = {n.notification_id: n for n in Notification.objects.filter(notification_id__in=queued)}
    assert {rows[first + k].owner_id for k in ("email", "sms", f"webhook:{own.id}")} == {shop.pk}
    assert rows[second + "email"].owner_id is None
    assert {(n.status, n.failure_reason) for n in rows.values()} == {(NotificationStatus.QUEUED, "")}
    assert rows[first + "email"].body and rows[first + "sms"].body  # rendered from their templates
    handed = [pk for batch in tasks.batches() for pk, _ in batch] + [
        args[0] for name, args in tasks.sent if name == task_names.DELIVER_NOTIFICATION
    ]
    assert sorted(handed) == sorted(n.pk for n in rows.values())
    # Delivered again, the batch queues nothing more.
    assert notification_tasks.notify_payment_outcomes(events[:2]) == []


def test_a_batch_of_payment_outcomes_reads_and_writes_as_a_set(
    tasks: Tasks, redis_protection: redis.Redis
) -> None:
    run = uuid.uuid4().hex[:8]

    def statements(n: int, offset: int) -> int:
        events = [
            outcome_event(paid(run, offset + i, None), {"email": f"{run}-{offset + i}@example.com"})
            for i in range(n)
        ]
        with CaptureQueriesContext(connection) as queries:
            queued = notification_tasks.notify_payment_outcomes(events)
        assert len(queued) == n
        return len(queries.captured_queries)

    assert statements(2, 0) == statements(12, 100)
