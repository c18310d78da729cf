"""One payment, one trace: the API request, the bridge's dispatches, the workers' tasks and the
events between them, across payments, ledger, notifications and audit (docs/operations.md, Traces).

Every process of the stack appends its spans to one file (TRACING_EXPORT_FILE); this test process
serves the API in-process, so it exports as the web service.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit.models import AuditEvent
from bridge import topics
from core import tracing
from ledger.models import Transaction
from ledger.postings import payment_transaction_id
from notifications.models import Notification, NotificationStatus
from payments.models import PaymentStatus
from tests.conftest import Stack
from tests.payments.test_api import post_payment, wait_status
from tests.support.builders import payment_request, structured
from tests.support.kafka import produce
from tests.support.users import make_api_user, token_client
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # a lifecycle test: `make test` runs it, `make test-fast` does not

REQUESTED = topics.PAYMENT_REQUESTED.name
WEB, BRIDGE, WORKER = (tracing.SERVICE_PREFIX + name for name in ("web", "bridge", "worker"))


@pytest.fixture(scope="module")
def span_file(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("traces") / "spans.jsonl"
    stack.reconfigure({"TRACING_EXPORT_FILE": str(path)})
    tracing.configure(service=WEB, export_file=str(path))
    try:
        yield path
    finally:
        tracing.configure(service=WEB)
        stack.reconfigure({})


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mentions(span: dict[str, Any], payment_id: str) -> bool:
    """Is the span about the payment: its event's subject, or the event's id, names it?"""
    attributes = span["attributes"]
    return any(
        payment_id in str(attributes.get(name) or "")
        for name in ("cloudevents.event_subject", "cloudevents.event_id", "url.path")
    )


def test_a_payment_requested_through_the_api_is_one_trace_across_every_domain(
    live: Stack, span_file: Path
) -> None:
    client = token_client(make_api_user("traced"))
    # A recipient of its own: the shared ones of other tests may be over their rate limit by now.
    body = payment_request(customer={"email": f"{uuid.uuid4().hex[:10]}@example.com"})
    payment_id = body["paymentId"]
    assert post_payment(client, body, key=str(uuid.uuid4())).status_code == 202

    wait_status(payment_id, PaymentStatus.CAPTURED)
    wait_until(
        lambda: Transaction.objects.filter(transaction_id=payment_transaction_id(payment_id)).exists(),
        timeout_s=60,
        what="the ledger posting",
    )
    notifications = Notification.objects.filter(notification_id__startswith=f"payment:{payment_id}:")
    try:
        [notification] = wait_until(
            lambda: list(notifications.filter(status=NotificationStatus.SENT)),
            timeout_s=60,
            what="the notification sent",
        )
    except TimeoutError:
        states = list(notifications.values("status", "failure_reason", "last_error"))
        raise AssertionError(f"the payment's notification was not sent: {states}") from None
    wait_until(
        lambda: (
            AuditEvent.objects.filter(subject_id=payment_id, action="payment.captured").exists()
            and AuditEvent.objects.filter(
                subject_id=notification.notification_id, action="notification.sent"
            ).exists()
        ),
        timeout_s=60,
        what="the audit records",
    )

    [api_span] = [
        s
        for s in read_spans(span_file)
        if s["service"] == WEB and s["name"] == "POST /api/v1/payments/"  # the only request posted here
    ]
    assert api_span["parent_id"] is None and api_span["attributes"]["http.response.status_code"] == 202
    trace_id = api_span["trace_id"]
    required = {
        f"record {REQUESTED}",
        f"dispatch {REQUESTED}",
        "payments.process_payment_requested",
        f"dispatch {topics.PAYMENT_PROCESSED.name}",
        "ledger.post_captured_payment",
        "notifications.notify_payment_outcome",
        "notifications.deliver_notifications",  # the email, in a batch of one
        f"dispatch {topics.AUDIT_NOTIFICATION_EVENTS.name}",
        "audit.record_event",
    }

    def whole_trace() -> list[dict[str, Any]] | None:
        """The trace once every expected span is in and connected: a span is written when it ends,
        and a task's span ends after those of the events it recorded."""
        spans = [s for s in read_spans(span_file) if s["trace_id"] == trace_id]
        ids = {s["span_id"] for s in spans}
        connected = all(s["parent_id"] in ids for s in spans if s is not api_span and s["parent_id"])
        roots = [s for s in spans if s["parent_id"] is None]
        return spans if required <= {s["name"] for s in spans} and connected and len(roots) == 1 else None

    try:
        spans = wait_until(whole_trace, timeout_s=30, what="the payment's whole trace, connected")
    except TimeoutError:
        names = sorted({s["name"] for s in read_spans(span_file) if s["trace_id"] == trace_id})
        raise AssertionError(
            f"spans of the trace: {names}; missing {sorted(required - set(names))}"
        ) from None

    # Every span about the payment, in any process, is in this one trace.
    about_payment = [s for s in read_spans(span_file) if mentions(s, payment_id)]
    assert len(about_payment) >= 8 and {s["trace_id"] for s in about_payment} == {trace_id}

    assert {WEB, BRIDGE, WORKER} <= {s["service"] for s in spans}
    dispatch = next(s for s in spans if s["name"] == f"dispatch {REQUESTED}")
    assert dispatch["service"] == BRIDGE
    assert dispatch["attributes"]["cloudevents.event_subject"] == payment_id
    assert {"messaging.destination.name", "messaging.kafka.offset"} <= dispatch["attributes"].keys()


def test_a_traceparent_from_outside_is_continued_and_a_malformed_one_starts_a_new_trace(
    live: Stack, span_file: Path
) -> None:
    outside_trace = uuid.uuid4().hex
    outside = payment_request()
    malformed = payment_request()
    for data, traceparent in (
        (outside, f"00-{outside_trace}-00f067aa0ba902b7-01"),
        (malformed, "00-not-a-trace-context"),
    ):
        event = json.loads(structured(REQUESTED, data))
        event["traceparent"] = traceparent
        produce(live.bootstrap, REQUESTED, json.dumps(event).encode(), key=data["paymentId"])

    # Both are processed: a malformed trace context is no reason to dead-letter an event.
    wait_status(outside["paymentId"], PaymentStatus.CAPTURED)
    wait_status(malformed["paymentId"], PaymentStatus.CAPTURED)

    def dispatch_of(payment_id: str) -> dict[str, Any] | None:
        return next(
            (
                s
                for s in read_spans(span_file)
                if s["name"] == f"dispatch {REQUESTED}"
                and s["attributes"].get("cloudevents.event_subject") == payment_id
            ),
            None,
        )

    continued = wait_until(lambda: dispatch_of(outside["paymentId"]), what="the dispatch span")
    assert (continued["trace_id"], continued["parent_id"]) == (outside_trace, "00f067aa0ba902b7")
    fresh = wait_until(lambda: dispatch_of(malformed["paymentId"]), what="the dispatch span")
    assert fresh["parent_id"] is None and fresh["trace_id"] != outside_trace
    captured = wait_until(
        lambda: [
            s
            for s in read_spans(span_file)
            if s["name"] == "payments.process_payment_requested"
            and s["attributes"].get("cloudevents.event_subject") == malformed["paymentId"]
            and s["trace_id"] == fresh["trace_id"]
        ],
        what="the payment task in the new trace",
    )
    assert captured
