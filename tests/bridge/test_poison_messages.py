"""No poison pill: no body, record or task can stop the API, the bridge or a worker queue.

JSON nested past 32 levels, amounts outside ASCII digits or the decimal range: a 400 on the API, a
dead letter on Kafka, and the next payment goes through. A task whose worker dies under it every
time is dead-lettered (`poison`) after 3 starts, and its queue keeps flowing.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from bridge import topics
from bridge.models import DeadLetter
from payments.models import Payment
from tests.conftest import KILL_WORKER_MARKER, Stack
from tests.support.builders import payment_request
from tests.support.kafka import Collector, produce, subject_is
from tests.support.waiting import wait_until

REQUESTED = topics.PAYMENT_REQUESTED.name
PROCESSED = topics.PAYMENT_PROCESSED.name
DLQ = topics.PAYMENTS_DLQ.name
PROBLEM = "application/problem+json"


def nested(levels: int) -> str:
    """`levels` objects one inside the other, as text (json.dumps would itself recurse)."""
    return '{"a":' * levels + "1" + "}" * levels


def payment_text(data: dict[str, Any], **raw_fields: str) -> str:
    """A payment request as JSON text, with fields given as raw JSON text (deep or odd numbers)."""
    body = {k: v for k, v in data.items() if k not in raw_fields}
    extra = "".join(f', "{name}": {text}' for name, text in raw_fields.items())
    return json.dumps(body)[:-1] + extra + "}"


def as_cloudevent(data_text: str) -> str:
    return (
        '{"specversion": "1.0", "id": "' + str(uuid.uuid4()) + '", "source": "/tests/client", '
        '"type": "' + REQUESTED + '", "datacontenttype": "application/json", "data": ' + data_text + "}"
    )


# --- the API ------------------------------------------------------------------------------------


def api_client() -> APIClient:
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_user(f"poison-{uuid.uuid4().hex[:6]}"))
    return api


def post(api: APIClient, text: str) -> Any:
    return api.post(
        "/api/v1/payments/", text, content_type="application/json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex
    )


def problem(answer: Any) -> dict[str, Any]:
    assert answer.status_code == 400, answer.content
    assert answer["Content-Type"] == PROBLEM
    return answer.json()


@pytest.mark.django_db
def test_a_body_nested_past_32_levels_is_a_400_and_32_levels_are_accepted() -> None:
    api = api_client()
    # The body is level 1, its metadata level 2: metadata nested 900 deep is a body 901 deep.
    deep = problem(post(api, payment_text(payment_request(), metadata=nested(900))))
    assert "nested more than 32 levels" in deep["detail"]
    over = problem(post(api, payment_text(payment_request(), metadata=nested(32))))
    assert "nested more than 32 levels" in over["detail"]
    at_cap = payment_request()
    answer = post(api, payment_text(at_cap, metadata=nested(31)))
    assert answer.status_code == 202, answer.content
    assert Payment.objects.filter(payment_id=at_cap["paymentId"]).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["1e999999999", '"1e999999999"', "-1e999999999", '"０.５"', '"１０.00"'])
def test_an_amount_outside_ascii_digits_or_the_decimal_range_is_a_400(amount: str) -> None:
    data = payment_request()
    body = problem(post(api_client(), payment_text(data, amount=amount)))
    assert "amount" in json.dumps(body.get("errors", {})) or "amount" in body["detail"]
    assert not Payment.objects.filter(payment_id=data["paymentId"]).exists()


# --- Kafka --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("levels", "form"), [(900, "cloudevent"), (900, "bare"), (50_000, "bare")])
def test_a_deep_record_is_dead_lettered_and_the_bridge_keeps_consuming(
    live: Stack, collector: Collector, levels: int, form: str
) -> None:
    data = payment_request()
    text = payment_text(data, metadata=nested(levels))
    value = (as_cloudevent(text) if form == "cloudevent" else text).encode()
    produce(live.bootstrap, REQUESTED, value, key=data["paymentId"])
    good = payment_request()
    produce(live.bootstrap, REQUESTED, json.dumps(good).encode(), key=good["paymentId"])

    [dead] = collector.wait_for(DLQ, subject_is(data["paymentId"]))
    assert dead.value == value
    assert dead.headers["dlq-reason"] == b"invalid_json"
    assert b"nested more than 32 levels" in dead.headers["dlq-error"]
    collector.wait_for(PROCESSED, subject_is(good["paymentId"]))
    assert live.bridge.running and live.worker.running
    assert not Payment.objects.filter(payment_id=data["paymentId"]).exists()


@pytest.mark.parametrize("amount", ["1e999999999", '"1e999999999"', '"０.５"'])
def test_an_amount_outside_ascii_digits_or_the_range_is_dead_lettered(
    live: Stack, collector: Collector, amount: str
) -> None:
    data = payment_request()
    produce(live.bootstrap, REQUESTED, payment_text(data, amount=amount).encode(), key=data["paymentId"])
    good = payment_request()
    produce(live.bootstrap, REQUESTED, json.dumps(good).encode(), key=good["paymentId"])

    [dead] = collector.wait_for(DLQ, subject_is(data["paymentId"]))
    assert dead.headers["dlq-reason"] == b"schema_violation"
    collector.wait_for(PROCESSED, subject_is(good["paymentId"]))
    assert live.bridge.running
    assert not Payment.objects.filter(payment_id=data["paymentId"]).exists()


@pytest.mark.slow  # starts and stops processes of its own: `make test` runs it
def test_a_task_whose_worker_dies_under_it_every_time_is_dead_lettered_after_3_starts(
    live: Stack, collector: Collector
) -> None:
    worker_pid = live.worker.process.pid if live.worker.process else None
    data = payment_request(metadata={"killWorker": KILL_WORKER_MARKER})
    produce(live.bootstrap, REQUESTED, json.dumps(data).encode(), key=data["paymentId"])

    [dead] = collector.wait_for(DLQ, subject_is(data["paymentId"]), timeout_s=180)
    assert dead.headers["dlq-reason"] == b"poison"
    assert b"started 3 times without finishing" in dead.headers["dlq-error"]
    assert dead.headers["dlq-original-topic"] == REQUESTED.encode()
    assert json.loads(dead.value or b"")["data"]["paymentId"] == data["paymentId"]
    # The worker publishes the dead letter first and lists it in the admin's table after.
    wait_until(
        lambda: DeadLetter.objects.filter(reason="poison", key=data["paymentId"].encode()).exists(),
        timeout_s=30,
        what="the dead letter listed for operators",
    )
    # Three pool processes died: the log shows each loss.
    assert live.worker.log_tail().count("WorkerLostError") >= 3 or "signal 9" in live.worker.log_tail()

    # The queue flows on, served by the same worker (its main process never died).
    good = payment_request()
    produce(live.bootstrap, REQUESTED, json.dumps(good).encode(), key=good["paymentId"])
    collector.wait_for(PROCESSED, subject_is(good["paymentId"]))
    assert live.worker.running and live.worker.process and live.worker.process.pid == worker_pid


def test_a_task_message_nested_past_recursion_is_refused_and_the_worker_lives_on(
    live: Stack, collector: Collector
) -> None:
    """Written straight to Redis (nothing in the platform sends one): the worker's main process
    would die decoding or pickling it, and again on every restart."""
    import sys

    from kafka_platform.celery import app

    worker_pid = live.worker.process.pid if live.worker.process else None
    data = payment_request()
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(900):
        cursor["a"] = cursor = {}
    data["metadata"] = deep
    payload = {
        "id": f"deep-{data['paymentId']}",
        "type": REQUESTED,
        "source": "/tests/redis",
        "time": "2026-12-04T00:00:00Z",
        "data": data,
        "origin": [None, None, None],
    }
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(5000)  # this test's own encoding of the message recurses too
    try:
        app.send_task("payments.process_payment_requested", args=[payload], queue="payments")
    finally:
        sys.setrecursionlimit(limit)

    wait_until(
        lambda: "nested more than 64 levels deep: refused unread" in live.worker.log_tail(200),
        what="the worker refusing the message",
    )
    good = payment_request()
    produce(live.bootstrap, REQUESTED, json.dumps(good).encode(), key=good["paymentId"])
    collector.wait_for(PROCESSED, subject_is(good["paymentId"]))
    assert live.worker.running and live.worker.process and live.worker.process.pid == worker_pid
    assert not Payment.objects.filter(payment_id=data["paymentId"]).exists()
