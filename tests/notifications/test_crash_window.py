"""The crash window between a provider's acceptance and the commit of the outcome: a worker killed
while a message is in flight leaves its attempt `sending`; the dispatcher resolves it, resending
a webhook (receivers deduplicate by webhook-id) and never resending an email. PostgreSQL going
away mid-batch is not a lost worker: what the provider accepted is recorded once it is back.

"Sent once" is counted only after every copy of the work was consumed: the lost worker's tasks,
which Redis gives out again after the visibility timeout (10 minutes), are given out again at once
here (`redeliver`), and then nothing may be left queued or held (`Stack.wait_until_drained`)."""

from __future__ import annotations

import os
import signal
import uuid
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import transaction
from django.utils import timezone

from bridge import topics
from notifications.models import DeliveryAttempt
from notifications.services import queueing
from tests.conftest import Stack
from tests.notifications.conftest import PLATFORM_SECRET, restart_worker
from tests.support.builders import notification_request, structured
from tests.support.drained import held_tasks, redeliver
from tests.support.faults import TcpProxy
from tests.support.kafka import Collector, produce, subject_is
from tests.support.receivers import HttpReceiver, SmtpReceiver, verify_standard_webhook
from tests.support.signing import sign
from tests.support.waiting import wait_until

REQUESTED = topics.NOTIFICATION_REQUESTED.name

pytestmark = pytest.mark.chaos


def kill_worker(stack: Stack) -> list[bytes]:
    """SIGKILL the worker's pool processes and the worker itself: nothing gets to record anything.
    Answers the tasks it held (`held_tasks`), to be given out again by `redeliver`."""
    for pid in stack.worker.children():
        os.kill(pid, signal.SIGKILL)
    stack.worker.kill()
    return held_tasks(stack.env["CELERY_BROKER_URL"])


def redeliver_and_drain(stack: Stack, held: list[bytes], since: datetime) -> None:
    """The lost worker's tasks given out again, as its visibility timeout would, and consumed: the
    proof, before counting, that no copy of the work is left to deliver a message once more."""
    assert held, "the lost worker held no task: nothing was in flight"
    redeliver(stack.env["CELERY_BROKER_URL"], held)
    stack.wait_until_drained(since)


def request(stack: Stack, data: dict[str, object]) -> None:
    # As the platform's domains ask notifications: signed (the topic is gated).
    value = structured(REQUESTED, data)
    produce(
        stack.bootstrap, REQUESTED, value, key=str(data["notificationId"]), headers=sign(REQUESTED, value)
    )


def test_worker_lost_mid_webhook_is_resolved_and_resent_with_the_same_id(
    nlive: Stack, http_receiver: HttpReceiver, collector: Collector
) -> None:
    since = timezone.now()
    name = "crash" + uuid.uuid4().hex[:8]
    http_receiver.hang_next(name, 10.0)
    data = notification_request(channel="webhook", recipient=http_receiver.hook_url(name))
    request(nlive, data)
    http_receiver.wait_for(name)  # the receiver has the message; its answer is held back
    held = kill_worker(nlive)
    [attempt] = DeliveryAttempt.objects.filter(notification__notification_id=data["notificationId"])
    assert attempt.status == "sending"
    restart_worker(nlive)

    [record] = collector.wait_for(
        topics.NOTIFICATION_SENT.name, subject_is(data["notificationId"]), timeout_s=60
    )
    assert record.json()["data"]["attempts"] == 2
    # Resent once, by the dispatcher: the lost worker's own task, given out again, sends nothing.
    redeliver_and_drain(nlive, held, since)
    first, second = http_receiver.received(name)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == data["notificationId"]
    assert first.body == second.body
    verify_standard_webhook(secret=PLATFORM_SECRET, headers=second.headers, body=second.body)
    attempts = list(DeliveryAttempt.objects.filter(notification__notification_id=data["notificationId"]))
    assert [a.status for a in attempts] == ["unknown", "sent"]
    assert "worker was lost" in attempts[0].error


def test_worker_lost_mid_email_is_failed_as_unknown_and_not_resent(
    nlive: Stack, smtp: SmtpReceiver, collector: Collector
) -> None:
    since = timezone.now()
    data = notification_request()
    smtp.hang_s = 10.0
    try:
        request(nlive, data)
        wait_until(lambda: smtp.to(str(data["recipient"])), what="the email at the SMTP server")
        held = kill_worker(nlive)
    finally:
        smtp.hang_s = 0.0
    restart_worker(nlive)

    [record] = collector.wait_for(
        topics.NOTIFICATION_FAILED.name, subject_is(data["notificationId"]), timeout_s=60
    )
    failed = record.json()["data"]
    assert failed["reason"] == "outcome_unknown" and failed["attempts"] == 1
    [attempt] = DeliveryAttempt.objects.filter(notification__notification_id=data["notificationId"])
    assert attempt.status == "unknown" and "worker was lost" in attempt.error
    # The lost worker's delivery task comes back (after the visibility timeout): it finds the
    # notification failed, no longer claimed by it, and sends nothing.
    redeliver_and_drain(nlive, held, since)
    assert len(smtp.to(str(data["recipient"]))) == 1
    assert DeliveryAttempt.objects.filter(notification__notification_id=data["notificationId"]).count() == 1


def queue_in_one_transaction(ids: list[str], recipients: list[str]) -> None:
    """Emails queued together: their delivery is one task (one batch)."""
    with transaction.atomic():
        for notification_id, recipient in zip(ids, recipients, strict=True):
            queueing._queue(
                queueing.NotificationSpec(
                    notification_id=notification_id,
                    channel="email",
                    recipient=recipient,
                    subject="Batch",
                    body="One of three",
                )
            )


def test_worker_lost_mid_batch_resends_only_the_emails_it_never_handed_over(
    nlive: Stack, smtp: SmtpReceiver, collector: Collector
) -> None:
    """Three emails queued in one transaction go to one task; the worker is lost while the first
    is at the SMTP server. That one fails as unknown and is never resent; the other two never
    left, so they are sent once each after the restart."""
    since = timezone.now()
    run = uuid.uuid4().hex[:8]
    ids = [f"lost-batch-{run}-{i}" for i in range(3)]
    recipients = [f"lost-batch-{run}-{i}@example.com" for i in range(3)]
    smtp.hang_s = 10.0
    try:
        queue_in_one_transaction(ids, recipients)
        wait_until(lambda: smtp.to(recipients[0]), what="the first email at the SMTP server")
        held = kill_worker(nlive)
    finally:
        smtp.hang_s = 0.0
    restart_worker(nlive)

    [failed] = collector.wait_for(topics.NOTIFICATION_FAILED.name, subject_is(ids[0]), timeout_s=60)
    assert failed.json()["data"]["reason"] == "outcome_unknown"
    for notification_id in ids[1:]:
        [sent] = collector.wait_for(topics.NOTIFICATION_SENT.name, subject_is(notification_id), timeout_s=60)
        assert sent.json()["data"]["attempts"] == 2
        first, second = DeliveryAttempt.objects.filter(notification__notification_id=notification_id)
        assert first.status == "failed" and first.handed_over_at is None and "not sent" in first.error
        assert second.status == "sent"
    # The lost worker's batch task comes back: none of its three is claimed by it any more.
    redeliver_and_drain(nlive, held, since)
    assert [len(smtp.to(r)) for r in recipients] == [1, 1, 1]


def test_postgres_lost_mid_batch_records_what_the_smtp_server_accepted(
    nlive: Stack, smtp: SmtpReceiver, collector: Collector
) -> None:
    """Three emails in one task; PostgreSQL drops every connection while the first is at the SMTP
    server and refuses new ones for 10 s. The first is recorded sent once PostgreSQL is back (not
    left for the dispatcher to call unknown, never resent); the second's hand-over cannot be
    written, so it and the third are not sent then, and are sent once each on their retry."""
    database = urlsplit(nlive.env["DATABASE_URL"])
    proxy = TcpProxy(database.hostname or "127.0.0.1", database.port or 5432).start()
    proxied = urlunsplit(database._replace(netloc=f"{database.username}@127.0.0.1:{proxy.port}"))
    since = timezone.now()
    run = uuid.uuid4().hex[:8]
    ids = [f"db-lost-{run}-{i}" for i in range(3)]
    recipients = [f"db-lost-{run}-{i}@example.com" for i in range(3)]
    try:
        # The default stuck deadline, not these tests' 6 s: the worker's wait for PostgreSQL ends
        # well before the dispatcher may take the attempts over, as in production.
        nlive.reconfigure({"DATABASE_URL": proxied, "NOTIFICATIONS_SENDING_STUCK_AFTER_S": "330"})
        smtp.hang_s = 2.0  # within EMAIL_TIMEOUT: the first send succeeds, after the cut
        queue_in_one_transaction(ids, recipients)
        wait_until(lambda: smtp.to(recipients[0]), what="the first email at the SMTP server")
        with proxy.outage(10):
            smtp.hang_s = 0.0

        [first] = collector.wait_for(topics.NOTIFICATION_SENT.name, subject_is(ids[0]), timeout_s=60)
        assert first.json()["data"]["attempts"] == 1
        for notification_id in ids[1:]:
            [sent] = collector.wait_for(
                topics.NOTIFICATION_SENT.name, subject_is(notification_id), timeout_s=90
            )
            assert sent.json()["data"]["attempts"] == 2
            not_sent, again = DeliveryAttempt.objects.filter(
                notification__notification_id=notification_id
            ).order_by("number")
            assert not_sent.status == "failed" and not_sent.handed_over_at is None
            assert "not sent: the database was unreachable" in not_sent.error
            assert again.status == "sent"
        # No worker was lost, but every task handed out for the three (the first batch, the
        # dispatcher's retries) must have run before counting: nothing queued or held is left.
        nlive.wait_until_drained(since)
        assert [len(smtp.to(r)) for r in recipients] == [1, 1, 1]
    finally:
        smtp.hang_s = 0.0
        nlive.reconfigure({})
        proxy.stop()
