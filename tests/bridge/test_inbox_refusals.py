"""The inbox's log of refused redeliveries: one line per refused copy, only once its work commits."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from django.db import transaction

from bridge import inbox
from bridge.codec import Envelope
from tests.support.inbox import refusal_line

CONSUMER = "tests.inbox"

pytestmark = pytest.mark.django_db

Capture = Callable[..., AbstractContextManager[list[Callable[[], Any]]]]


def event(event_id: str | None = None) -> Envelope:
    return Envelope(
        id=event_id or str(uuid.uuid4()),
        type="tests.inbox-event",
        source="/tests",
        time="2026-11-23T10:00:00Z",
        data={},
    )


def refusals(caplog: pytest.LogCaptureFixture, event_id: str) -> int:
    return sum(r.getMessage() == refusal_line(CONSUMER, event_id) for r in caplog.records)


def test_a_redelivery_is_logged_and_a_first_delivery_is_not(
    caplog: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Capture
) -> None:
    first = event()
    caplog.set_level(logging.INFO, logger="bridge.inbox")
    with django_capture_on_commit_callbacks(execute=True):
        assert inbox.claim(consumer=CONSUMER, event=first)
    assert refusals(caplog, first.id) == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert not inbox.claim(consumer=CONSUMER, event=first)
        assert inbox.seen(consumer=CONSUMER, event=first)
        assert inbox.seen_many(consumer=CONSUMER, events=[first]) == {first.id}
    assert refusals(caplog, first.id) == 3


def test_a_second_copy_within_a_batch_is_refused_once(
    caplog: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Capture
) -> None:
    copied, other = event(), event()
    caplog.set_level(logging.INFO, logger="bridge.inbox")
    with django_capture_on_commit_callbacks(execute=True):
        claimed = inbox.claim_many(consumer=CONSUMER, events=[copied, other, copied])
    assert claimed == {copied.id, other.id}
    assert (refusals(caplog, copied.id), refusals(caplog, other.id)) == (1, 0)


def test_a_refusal_rolled_back_is_not_logged(
    caplog: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Capture
) -> None:
    """A batch that fails runs again event by event: its refusals count only from that run."""
    first = event()
    caplog.set_level(logging.INFO, logger="bridge.inbox")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        inbox.claim(consumer=CONSUMER, event=first)
        with pytest.raises(RuntimeError), transaction.atomic():
            assert not inbox.claim(consumer=CONSUMER, event=first)
            raise RuntimeError("the batch failed")
    assert callbacks == [] and refusals(caplog, first.id) == 0
