"""Database errors reach logs, dead letters and failed events without the row values PostgreSQL
puts in their DETAIL and statement excerpt."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from bridge.codec import Envelope
from bridge.deadletters import build_record
from bridge.tasks import EventTask
from core.logs import logging_config, safe_error

pytestmark = pytest.mark.django_db

SECRET_ROW = "pay_secret_4242"
SECRET_EMAIL = "ada.secret@example.com"


@pytest.fixture
def table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE hygiene"
            " (payment_id text PRIMARY KEY, email text, amount int CHECK (amount >= 0))"
        )
        cursor.execute("INSERT INTO hygiene VALUES (%s, %s, 1)", [SECRET_ROW, SECRET_EMAIL])


def raised(sql: str, params: list[Any]) -> Exception:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    except Exception as exc:  # noqa: BLE001 - the error under test
        return exc
    raise AssertionError(f"{sql} did not fail")


def duplicate_key() -> Exception:
    return raised("INSERT INTO hygiene VALUES (%s, %s, 1)", [SECRET_ROW, SECRET_EMAIL])


def test_a_duplicate_key_keeps_sqlstate_and_message_but_not_the_key(table: None) -> None:
    exc = duplicate_key()
    assert isinstance(exc, IntegrityError)
    assert SECRET_ROW in str(exc), "PostgreSQL's own text carries the row value"

    text = safe_error(exc)

    assert text.startswith("IntegrityError: [23505] duplicate key value violates unique constraint")
    assert "hygiene_pkey" in text
    assert SECRET_ROW not in text and "DETAIL" not in text


def test_a_check_violation_drops_the_failing_row(table: None) -> None:
    exc = raised("INSERT INTO hygiene VALUES (%s, %s, -5)", ["pay_other", SECRET_EMAIL])
    assert isinstance(exc, IntegrityError) and SECRET_EMAIL in str(exc)

    text = safe_error(exc)

    assert "[23514]" in text and "hygiene_amount_check" in text
    assert SECRET_EMAIL not in text and "Failing row" not in text


def test_a_data_error_drops_the_quoted_value_and_the_statement(table: None) -> None:
    exc = raised("SELECT %s::int", [SECRET_ROW])
    assert isinstance(exc, DataError) and SECRET_ROW in str(exc)

    text = safe_error(exc)

    assert text.startswith("DataError: [22P02] invalid input syntax for type integer")
    assert SECRET_ROW not in text and "LINE" not in text


def test_an_exception_wrapping_a_database_error_keeps_its_own_words(table: None) -> None:
    db_error = duplicate_key()
    try:
        raise RuntimeError(f"the database refused the posting: {db_error}") from db_error
    except RuntimeError as wrapped:
        text = safe_error(wrapped)
    assert text.startswith("RuntimeError: the database refused the posting: [23505] duplicate key")
    assert SECRET_ROW not in text


def test_other_exceptions_keep_their_text() -> None:
    assert safe_error(ValueError("amount must be positive")) == "ValueError: amount must be positive"


def test_a_dead_lettered_task_failure_has_no_row_values_in_its_header(
    table: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded: dict[str, Any] = {}

    def capture(message: Any, *, reason: str, error: str) -> None:
        recorded.update(message=message, reason=reason, error=error)

    monkeypatch.setattr("bridge.tasks.dead_letter", capture)
    task = EventTask()
    task.name = "payments.process_payment_requested"
    event = Envelope.from_task_payload(
        {
            "id": "evt-hygiene",
            "type": "payments.payment-requested",
            "source": "/tests",
            "time": "2026-11-23T00:00:00Z",
            "subject": SECRET_ROW,
            "data": {"paymentId": SECRET_ROW},
        }
    )

    task._dead_letter(event, duplicate_key())

    record = build_record(
        recorded["message"], reason=recorded["reason"], error=recorded["error"], failed_at=timezone.now()
    )
    header = dict(record.headers)["dlq-error"].decode()
    assert header.startswith("payments.process_payment_requested: IntegrityError: [23505]")
    assert SECRET_ROW not in header and SECRET_EMAIL not in header


def test_a_logged_database_error_has_no_row_values_in_message_or_traceback(table: None) -> None:
    exc = duplicate_key()
    options = dict(logging_config(level="INFO")["formatters"]["structured"])
    formatter = options.pop("()")(**options)
    # As Celery logs a failed task: the exception's repr in the message, the traceback attached.
    record = logging.LogRecord(
        "celery.app.trace",
        logging.ERROR,
        __file__,
        1,
        "Task %s raised unexpected: %r",
        ("ledger.post_transaction_requested", exc),
        (type(exc), exc, exc.__traceback__),
    )

    line = json.loads(formatter.format(record))

    assert "IntegrityError" in line["exception"] and "[23505]" in line["exception"]
    assert "duplicate key value violates unique constraint" in line["event"]
    for field in ("event", "exception"):
        assert SECRET_ROW not in line[field], line[field]
        assert "DETAIL" not in line[field]
