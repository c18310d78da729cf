"""A consumer's first delivery that races another one of the same id ends in one clean effect.

Each consumer has one path, its batch handler, which inserts its rows in one statement; a
concurrent first delivery of the same id (another event asking for the same payment or
notification) makes that insert wait on the unique key, then fail. The handler's transaction must
then run again (core.races) and find the other's committed row, as a duplicate: not fail the
event. Here the concurrent delivery is an outside session holding an uncommitted row of that id.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from django.db.models import Model

from bridge import topics
from bridge.codec import Envelope
from notifications import tasks as notification_tasks
from notifications.models import Notification
from payments import tasks as payment_tasks
from payments.models import Payment, PaymentStatus
from tests.support.builders import payment_request
from tests.support.locks import Background, waiting_on_locks

pytestmark = pytest.mark.django_db(transaction=True)


def envelope(topic: topics.Topic, data: dict[str, Any]) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()), type=topic.name, source="/t", time="2026-12-05T00:00:00Z", data=data
    )


def insert_copy(
    conn: psycopg.Connection, model: type[Model], key: str, template: str, new: str, **set_: Any
) -> None:
    """In `conn`'s open transaction: a copy of `model`'s row `key = template`, as `key = new`."""
    columns = [f.column for f in model._meta.concrete_fields if not f.primary_key]
    chosen = {key: new, **set_}
    values = ", ".join("%s" if c in chosen else c for c in columns)
    conn.execute(
        f"INSERT INTO {model._meta.db_table} ({', '.join(columns)})"  # noqa: S608 - our own names
        f" SELECT {values} FROM {model._meta.db_table} WHERE {key} = %s",
        [*(chosen[c] for c in columns if c in chosen), template],
    )


def test_a_payment_request_racing_another_delivery_of_its_payment_is_charged_once(
    outsider: psycopg.Connection,
) -> None:
    template = payment_request(amount="12.00")
    payment_tasks.process_payment_requested(envelope(topics.PAYMENT_REQUESTED, template).to_task_payload())
    racing = {**template, "paymentId": f"pay_{uuid.uuid4().hex[:12]}"}
    insert_copy(
        outsider,
        Payment,
        "payment_id",
        template["paymentId"],
        racing["paymentId"],
        status=PaymentStatus.REQUESTED,
    )
    worker = Background(
        lambda: payment_tasks.process_payment_requested(
            envelope(topics.PAYMENT_REQUESTED, racing).to_task_payload()
        )
    )
    worker.start()
    waiting_on_locks(outsider, 1)  # the handler's insert waits on the uncommitted row's key
    outsider.commit()
    worker.join(timeout=30)
    assert worker.error is None, worker.error
    assert worker.result == PaymentStatus.CAPTURED
    assert Payment.objects.filter(payment_id=racing["paymentId"]).count() == 1


def test_a_notification_request_racing_another_delivery_of_its_id_is_queued_once(
    outsider: psycopg.Connection,
) -> None:
    data = {
        "notificationId": f"n-{uuid.uuid4().hex[:8]}",
        "channel": "email",
        "recipient": "a@example.com",
        "body": "x",
    }
    [status] = notification_tasks.request_notifications([envelope(topics.NOTIFICATION_REQUESTED, data)])
    assert status is not None
    racing = {**data, "notificationId": f"n-{uuid.uuid4().hex[:8]}"}
    insert_copy(outsider, Notification, "notification_id", data["notificationId"], racing["notificationId"])
    worker = Background(
        lambda: notification_tasks.request_notification(
            envelope(topics.NOTIFICATION_REQUESTED, racing).to_task_payload()
        )
    )
    worker.start()
    waiting_on_locks(outsider, 1)
    outsider.commit()
    worker.join(timeout=30)
    assert worker.error is None, worker.error
    assert worker.result is None  # the other delivery's notification, the same request: queued once
    assert Notification.objects.filter(notification_id=racing["notificationId"]).count() == 1
