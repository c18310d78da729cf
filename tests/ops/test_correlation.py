"""The correlation id of an incoming event, in the bridge's and worker's JSON logs and the events out."""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace

import pytest
from django.test import Client

from bridge import topics
from bridge.outbox import record_event
from core import correlation
from tests.conftest import Stack
from tests.ops.conftest import json_lines
from tests.support.builders import payment_request, structured
from tests.support.kafka import Collector, produce, subject_is

REQUESTED = topics.PAYMENT_REQUESTED.name


@pytest.mark.django_db(transaction=True)
def test_correlation_id_follows_a_payment_through_bridge_worker_logs_and_outgoing_events(
    live: Stack, collector: Collector
) -> None:
    correlation_id = f"corr-ops-{uuid.uuid4().hex}"
    data = payment_request()
    produce(
        live.bootstrap,
        REQUESTED,
        structured(REQUESTED, data, correlation_id=correlation_id),
        key=data["paymentId"],
    )

    [processed] = collector.wait_for(topics.PAYMENT_PROCESSED.name, subject_is(data["paymentId"]))
    assert processed.json()["correlationid"] == correlation_id
    audit = collector.wait_for(topics.AUDIT_PAYMENT_EVENTS.name, subject_is(data["paymentId"]), count=3)
    assert {r.json()["correlationid"] for r in audit} == {correlation_id}

    bridge_lines = _lines_with(live.bridge.log_path, correlation_id, "dispatched")
    assert any(REQUESTED in line["event"] for line in bridge_lines), bridge_lines
    assert all(line["event_type"] for line in bridge_lines)

    worker_lines = _lines_with(live.worker.log_path, correlation_id, "payments.process_payment_requested")
    assert worker_lines, "the worker's task lines carry the correlation id"
    assert all(line["task_name"] == "payments.process_payment_requested" for line in worker_lines)


def _lines_with(log_path: object, correlation_id: str, needle: str, timeout_s: float = 15.0) -> list[dict]:
    """JSON log lines bound to `correlation_id` whose text mentions `needle` (logs lag a little)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [
            line
            for line in json_lines(log_path)  # type: ignore[arg-type]
            if line.get("correlation_id") == correlation_id and needle in json.dumps(line)
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


@pytest.mark.django_db
def test_record_event_uses_the_bound_correlation_id_unless_given_one() -> None:
    with correlation.bound("corr-bound"):
        implicit = record_event(topic=topics.PAYMENT_PROCESSED, subject="p1", data={})
        explicit = record_event(
            topic=topics.PAYMENT_PROCESSED, subject="p2", data={}, correlation_id="corr-explicit"
        )
    unbound = record_event(topic=topics.PAYMENT_PROCESSED, subject="p3", data={})

    assert json.loads(bytes(implicit.value))["correlationid"] == "corr-bound"
    assert json.loads(bytes(explicit.value))["correlationid"] == "corr-explicit"
    assert json.loads(bytes(unbound.value))["correlationid"] == str(unbound.event_id)


def test_a_task_sent_while_bound_carries_the_id_and_the_worker_binds_it() -> None:
    headers: dict[str, object] = {}
    with correlation.bound("corr-header"):
        correlation.add_to_task_headers(headers=headers)
    assert headers == {correlation.TASK_HEADER: "corr-header"}

    task = SimpleNamespace(name="ledger.post", request=SimpleNamespace(get=headers.get))
    correlation.bind_for_task(task_id="t-1", task=task, args=({"id": "evt-1"},))
    try:
        assert correlation.current() == "corr-header"  # the header wins over the payload
    finally:
        correlation.unbind_after_task()
    assert correlation.current() is None

    no_header = SimpleNamespace(name="ledger.post", request=SimpleNamespace(get=lambda key: None))
    correlation.bind_for_task(task_id="t-2", task=no_header, args=({"id": "evt-2", "correlationid": None},))
    try:
        assert correlation.current() == "evt-2"  # an event payload without one: its own id
    finally:
        correlation.unbind_after_task()


def test_http_requests_bind_and_echo_the_correlation_header(client: Client) -> None:
    response = client.get("/live", HTTP_X_CORRELATION_ID="corr-http")
    assert response[correlation.HTTP_HEADER] == "corr-http"
    generated = client.get("/live")[correlation.HTTP_HEADER]
    assert uuid.UUID(generated)
