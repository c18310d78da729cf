"""The log line format every process uses: one JSON object, with the bound context."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from core import correlation
from core.logs import logging_config


def formatted(record: logging.LogRecord, fmt: str = "json") -> str:
    options = dict(logging_config(level="INFO", fmt=fmt)["formatters"]["structured"])
    formatter = options.pop("()")(**options)
    return formatter.format(record)


def record(msg: str, *args: object, exc_info: object = None, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("payments.services", logging.WARNING, __file__, 1, msg, args, exc_info)  # type: ignore[arg-type]
    rec.__dict__.update(extra)
    return rec


def test_a_line_is_one_json_object_with_the_bound_correlation_id() -> None:
    with correlation.bound("corr-log", event_id="evt-1"):
        line = formatted(record("payment %s failed", "pay_1", attempt=2, data={"email": "ada@example.com"}))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["event"] == "payment pay_1 failed"
    assert parsed["level"] == "warning" and parsed["logger"] == "payments.services"
    assert parsed["correlation_id"] == "corr-log" and parsed["event_id"] == "evt-1"
    assert parsed["attempt"] == 2
    assert "data" not in parsed, "Celery's task arguments are not logged"
    assert parsed["timestamp"].endswith("Z")

    assert "correlation_id" not in json.loads(formatted(record("outside")))


def test_an_exception_stays_inside_its_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        line = formatted(record("failed", exc_info=sys.exc_info()))
    parsed = json.loads(line)
    assert "ValueError: boom" in parsed["exception"]


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config(level="INFO", fmt="xml")
