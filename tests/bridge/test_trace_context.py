"""The W3C trace context in the CloudEvents distributed-tracing extension, without a broker.

The codec reads `traceparent`/`tracestate` in every incoming form and writes them back out; a
malformed one is dropped (the work starts a new trace), never a reason to dead-letter the event.
Then the hops of core.tracing in both modes: passing the context through unchanged when
nothing exports, and a chain of parent and child spans when something does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from bridge import codec, routing, topics
from bridge.codec import Envelope, IncomingMessage
from core import tracing
from tests.support.builders import binary_headers, payment_request, structured

TOPIC = topics.PAYMENT_REQUESTED.name
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def message(value: bytes, headers: list[tuple[str, bytes]] | None = None) -> IncomingMessage:
    return IncomingMessage(TOPIC, 0, 7, b"k", value, headers or [])


def structured_with(**attributes: Any) -> bytes:
    event = json.loads(structured(TOPIC, payment_request()))
    event.update(attributes)
    return json.dumps(event).encode()


def test_structured_mode_reads_the_extension_and_writes_it_back_out() -> None:
    envelope = codec.decode(message(structured_with(traceparent=PARENT, tracestate=STATE)))
    assert (envelope.traceparent, envelope.tracestate) == (PARENT, STATE)

    # Through the Celery payload and back, and out again as an event the outbox would record.
    again = Envelope.from_task_payload(json.loads(codec.dumps(envelope.to_task_payload())))
    assert (again.traceparent, again.tracestate) == (PARENT, STATE)
    out = codec.build_event(
        event_type=TOPIC,
        domain="payments",
        subject="s",
        data=again.data,
        traceparent=again.traceparent,
        tracestate=again.tracestate,
    )
    value, _ = codec.encode_event(out)
    assert (json.loads(value)["traceparent"], json.loads(value)["tracestate"]) == (PARENT, STATE)
    decoded = codec.decode(message(value, [("content-type", b"application/cloudevents+json")]))
    assert (decoded.traceparent, decoded.tracestate) == (PARENT, STATE)


def test_an_event_without_trace_context_has_no_extension_attributes() -> None:
    envelope = codec.decode(message(structured(TOPIC, payment_request())))
    assert envelope.traceparent is None and envelope.tracestate is None
    out = codec.build_event(event_type=TOPIC, domain="payments", subject="s", data={})
    assert "traceparent" not in out and "tracestate" not in out


def test_binary_mode_reads_ce_traceparent_headers() -> None:
    headers = [
        *binary_headers(TOPIC),
        ("ce_traceparent", PARENT.encode()),
        ("ce_tracestate", STATE.encode()),
    ]
    envelope = codec.decode(message(codec.dumps(payment_request()), headers))
    assert (envelope.traceparent, envelope.tracestate) == (PARENT, STATE)


def test_bare_json_reads_the_w3c_kafka_headers() -> None:
    envelope = codec.decode(message(codec.dumps(payment_request()), [("traceparent", PARENT.encode())]))
    assert (envelope.traceparent, envelope.tracestate) == (PARENT, None)


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        "",
        f"00-{TRACE_ID.upper()}-b7ad6b7169203331-01",  # W3C hex is lowercase
        f"00-{'0' * 32}-b7ad6b7169203331-01",  # the all-zero trace id is invalid
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"ff-{TRACE_ID}-b7ad6b7169203331-01",  # version ff is forbidden
        f"00-{TRACE_ID}-b7ad6b7169203331-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE_ID}-b7ad6b716920333-01",
        12345,
        ["00", TRACE_ID],
    ],
)
def test_a_malformed_traceparent_is_ignored_never_a_dead_letter(traceparent: object) -> None:
    for msg in (
        message(structured_with(traceparent=traceparent, tracestate=STATE)),
        message(
            codec.dumps(payment_request()),
            [*binary_headers(TOPIC), ("ce_traceparent", str(traceparent).encode())],
        ),
    ):
        envelope, _ = routing.validate(codec.decode(msg))  # no PoisonMessage
        assert envelope.traceparent is None and envelope.tracestate is None  # tracestate goes with it


def test_a_later_version_with_more_fields_is_accepted_and_a_bad_tracestate_dropped() -> None:
    later = f"01-{TRACE_ID}-b7ad6b7169203331-01-what-comes-next"
    assert tracing.parse(later) == (later, None)
    assert tracing.parse(PARENT, "x" * 600) == (PARENT, None)
    assert tracing.parse(PARENT, "a=b\nc") == (PARENT, None)


# --- the hops -------------------------------------------------------------------------------------


def incoming(
    traceparent: str | None = PARENT, *, event_id: str = "evt-1", correlation: str = "c1"
) -> Envelope:
    return Envelope(
        id=event_id,
        type=TOPIC,
        source="/tests",
        time=codec.now_rfc3339(),
        data={},
        subject="pay_1",
        correlation_id=correlation,
        traceparent=traceparent,
        topic=TOPIC,
        partition=2,
        offset=40,
    )


@pytest.fixture
def passing_through() -> Iterator[None]:
    tracing.configure(service="test")
    yield


@pytest.fixture
def exported(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "spans.jsonl"
    tracing.configure(service="kafka-platform-test", export_file=str(path))
    yield path
    tracing.configure(service="test")


def spans_in(path: Path) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in map(json.loads, path.read_text().splitlines())}


def test_passing_through_the_context_travels_unchanged_and_no_span_is_made(passing_through: None) -> None:
    assert not tracing.enabled()
    payload = tracing.dispatch_payload(incoming(), ["payments.process_payment_requested"])
    assert payload["traceparent"] == PARENT
    with tracing.span("task", parent=tracing.task_parent(payload, {})):
        with tracing.recording(TOPIC, correlation_id="c1") as emitted:
            assert emitted == (PARENT, None)
        assert tracing.current() == (PARENT, None)
        headers: dict[str, Any] = {}
        tracing.add_to_task_headers(headers=headers)
        assert headers == {"traceparent": PARENT}
    assert tracing.current() is None
    with tracing.recording(TOPIC, correlation_id="c1") as emitted:
        assert emitted is None  # no work in hand: the event starts no trace


def test_exporting_every_hop_is_a_child_of_the_one_before(exported: Path) -> None:
    payload = tracing.dispatch_payload(incoming(), ["payments.process_payment_requested"])
    with tracing.span("payments.process_payment_requested", parent=tracing.task_parent(payload, {})):
        with tracing.recording(topics.PAYMENT_PROCESSED.name, correlation_id="c1") as emitted:
            pass
    assert emitted is not None

    spans = spans_in(exported)
    dispatch = spans[f"dispatch {TOPIC}"]
    task = spans["payments.process_payment_requested"]
    record = spans[f"record {topics.PAYMENT_PROCESSED.name}"]
    assert {s["trace_id"] for s in (dispatch, task, record)} == {TRACE_ID}
    assert dispatch["parent_id"] == "b7ad6b7169203331"
    assert (task["parent_id"], record["parent_id"]) == (dispatch["span_id"], task["span_id"])
    assert emitted.traceparent == f"00-{TRACE_ID}-{record['span_id']}-01"
    assert payload["traceparent"] == f"00-{TRACE_ID}-{dispatch['span_id']}-01"
    assert dispatch["attributes"]["messaging.kafka.offset"] == 40
    assert dispatch["service"] == "kafka-platform-test"


def test_exporting_a_batch_gives_each_event_its_span_and_its_emitted_events_their_trace(
    exported: Path,
) -> None:
    other_trace = "1" * 32
    first = incoming(event_id="e1", correlation="c1")
    second = incoming(f"00-{other_trace}-{'2' * 16}-01", event_id="e2", correlation="c2")
    with tracing.event_spans("ledger.post_captured_payment", [first, second]):
        # A whole-batch handler records events with no span current: found by correlation id.
        with tracing.recording(topics.LEDGER_BALANCE_UPDATED.name, correlation_id="c2") as by_correlation:
            pass
        with tracing.within(first), tracing.recording(TOPIC, correlation_id=None) as within_first:
            pass
    assert by_correlation is not None and by_correlation.traceparent.split("-")[1] == other_trace
    assert within_first is not None and within_first.traceparent.split("-")[1] == TRACE_ID

    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    batch_spans = [s for s in lines if s["name"] == "ledger.post_captured_payment"]
    assert sorted(s["trace_id"] for s in batch_spans) == sorted([TRACE_ID, other_trace])
    assert all(s["attributes"]["batch.size"] == 2 for s in batch_spans)


def test_a_malformed_traceparent_in_a_task_payload_starts_a_new_trace(exported: Path) -> None:
    with tracing.span("t", parent=tracing.task_parent({"traceparent": "nonsense"}, {})):
        pass
    [made] = spans_in(exported).values()
    assert made["parent_id"] is None and made["trace_id"] != TRACE_ID


@pytest.mark.django_db
def test_work_queued_by_one_event_of_a_batch_is_sent_at_commit_in_that_events_trace(
    exported: Path, django_capture_on_commit_callbacks: Any
) -> None:
    seen: list[tracing.TraceParent | None] = []
    other = incoming(f"00-{'3' * 32}-{'4' * 16}-01", event_id="e2", correlation="c2")
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        with tracing.event_spans("notifications.notify_payment_outcome", [other, incoming(event_id="e1")]):
            with tracing.within(incoming(event_id="e1")):
                tracing.on_commit(lambda: seen.append(tracing.current()))
    # The batch (and every span) is over when the transaction commits; the callback still knows.
    assert seen and seen[0] is not None and seen[0].traceparent.split("-")[1] == TRACE_ID
