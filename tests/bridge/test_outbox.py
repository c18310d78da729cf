"""The transactional outbox: nothing for rolled-back work, nothing lost when the relay dies."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction
from django.utils import timezone

from bridge import outbox, topics
from bridge.models import OutboxEvent
from tests.conftest import Stack
from tests.support.drained import wait_until_published
from tests.support.kafka import Collector, subject_is

TOPIC = topics.AUDIT_PAYMENT_EVENTS


class Rollback(Exception):
    pass


def record(subject: str) -> OutboxEvent:
    return outbox.record_event(
        topic=TOPIC, subject=subject, data={"action": "test.outbox", "subjectId": subject}
    )


def test_rolled_back_transaction_publishes_nothing(live: Stack, collector: Collector) -> None:
    since = timezone.now()
    rolled_back, committed = f"rb-{uuid.uuid4().hex}", f"ok-{uuid.uuid4().hex}"
    with pytest.raises(Rollback), transaction.atomic():
        record(rolled_back)
        raise Rollback
    with transaction.atomic():
        record(committed)
    # The committed event, written after the rolled-back one, proves the relay ran past it; once
    # every row written since the test began is published, a row left by the rolled-back
    # transaction would be on Kafka (on any partition) too.
    collector.wait_for(TOPIC.name, subject_is(committed))
    wait_until_published(collector, since=since)
    assert not collector.matching(TOPIC.name, subject_is(rolled_back))
    assert not OutboxEvent.objects.filter(key=rolled_back).exists()


def test_relay_killed_before_marking_sent_publishes_on_restart(
    live: Stack, collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    live.relay.stop()
    subject = f"crash-{uuid.uuid4().hex}"
    row = record(subject)

    def die_before_marking(ids: list[int]) -> None:
        raise SystemExit("relay killed between publish and mark")

    # The relay publishes, then dies before recording that it did: the row stays unsent.
    monkeypatch.setattr(outbox, "mark_sent", die_before_marking)
    with pytest.raises(SystemExit):
        outbox.relay_pending()
    [first] = collector.wait_for(TOPIC.name, subject_is(subject))
    row.refresh_from_db()
    assert row.sent_at is None

    monkeypatch.undo()
    live.relay.start()
    published = collector.wait_for(TOPIC.name, subject_is(subject), count=2)
    # At-least-once: the same event id again, which consumers deduplicate.
    assert {r.json()["id"] for r in published} == {first.json()["id"]} == {str(row.event_id)}
    for _ in range(50):
        row.refresh_from_db()
        if row.sent_at is not None:
            break
        collector.settle(0.2)
    assert row.sent_at is not None
