"""Structured logging for every process: one JSON object per line, with the bound context.

Web, bridge, relay, worker, beat, flower and gunicorn all log through the standard `logging`
module; this formatter turns each record into JSON and merges in what
`core.correlation` bound for the work in hand (correlation id, event, task), so every
line written while handling an event carries its correlation id.

It also owns `safe_error`, the text of an exception as logs, dead letters and failed events may
carry it: PostgreSQL's DETAIL (`Key (payment_id)=(pay_x) already exists`, `Failing row contains
(...)`) and the statement excerpt of its errors hold row values, personal data among them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import structlog

LOG_FORMATS = ("json", "console")

_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# Celery passes a task's arguments (event data, possibly personal data) as `data`; Django passes
# the request object as `request`. Neither belongs in a log line.
_UNLOGGED_EXTRAS = frozenset({"data", "request"})


def _add_extras(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Fields given with `logger.info(..., extra={...})`, except the ones above."""
    record = event_dict.get("_record")
    if record is not None:
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in _UNLOGGED_EXTRAS and not key.startswith("_"):
                event_dict.setdefault(key, value)
    return event_dict


# The lines PostgreSQL appends to an error's primary message (`DETAIL:  `, `HINT:  `, `CONTEXT:  `,
# `LINE n: <statement>` with a caret line under it), as text and as a repr shows them (newline
# escaped, as in Celery's "Task raised unexpected: IntegrityError('...')").
_DETAIL_LINES = re.compile(r"\n\s*(?:DETAIL|HINT|CONTEXT|LINE \d+|QUERY):.*?(?=\n\S|\Z)", re.DOTALL)
_ESCAPED_DETAIL_LINES = re.compile(r"\\n\s*(?:DETAIL|HINT|CONTEXT|LINE \d+|QUERY):.*?(?=\\n\S|['\"]\)|$)")
# The value-carrying phrases of a DETAIL, wherever one was copied into other text.
_KEY_VALUES = re.compile(
    r"(Key \(.*?\)=\().*?(\) (?:already exists|is not present|is still referenced|conflicts))"
)
_FAILING_ROW = re.compile(r"Failing row contains \(.*?\)\.?(?=\s|\\n|['\"]|$)", re.MULTILINE)
_QUOTED = re.compile(r'"[^"]*"')
# SQLSTATE class 22 (data exception) quotes the offending value in its primary message
# (`invalid input syntax for type integer: "abc"`); other classes quote only names.
_DATA_EXCEPTION_CLASS = "22"


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_database_error(exc: BaseException) -> bool:
    # Imported here: settings.py imports this module before Django is set up.
    import psycopg
    from django.db import DatabaseError

    return isinstance(exc, DatabaseError | psycopg.Error)


def _database_message(exc: BaseException) -> str:
    """SQLSTATE and primary message of a database error; the driver's error for Django's wrapper."""
    driver = next((e for e in _chain(exc) if hasattr(e, "sqlstate")), exc)
    sqlstate = getattr(driver, "sqlstate", None)
    diag = getattr(driver, "diag", None)
    primary = getattr(diag, "message_primary", None) or _strip_row_values(str(driver).split("\n", 1)[0])
    if sqlstate and sqlstate.startswith(_DATA_EXCEPTION_CLASS):
        primary = _QUOTED.sub('"…"', primary)
    return f"[{sqlstate}] {primary}" if sqlstate else primary


def _strip_row_values(text: str) -> str:
    text = _ESCAPED_DETAIL_LINES.sub("", _DETAIL_LINES.sub("", text))
    text = _KEY_VALUES.sub(r"\1…\2", text)
    return _FAILING_ROW.sub("Failing row contains (…)", text)


def safe_error(exc: BaseException) -> str:
    """`Type: message` of `exc` without row values, for logs, dead letters and failed events.

    A database error keeps its SQLSTATE and primary message; any other exception keeps its text,
    less the DETAIL lines of a database error it embeds (`raise X(f"...: {db_error}")`).
    """
    if _is_database_error(exc):
        return f"{type(exc).__name__}: {_database_message(exc)}"
    text = str(exc)
    for cause in _chain(exc.__cause__ or exc.__context__):
        if _is_database_error(cause) and str(cause):
            text = text.replace(str(cause), _database_message(cause))
    return f"{type(exc).__name__}: {_strip_row_values(text)}"


def _scrubbed_text(text: str, exc: BaseException | None) -> str:
    for error in _chain(exc):
        if _is_database_error(error) and str(error):
            safe = _database_message(error)
            text = text.replace(str(error), safe).replace(repr(str(error))[1:-1], safe)
    return _strip_row_values(text)


def _exception_of(exc_info: Any) -> BaseException | None:
    if exc_info is True:
        return sys.exc_info()[1]
    if isinstance(exc_info, tuple):
        return exc_info[1]
    return exc_info if isinstance(exc_info, BaseException) else None


def format_exc_info_without_row_values(
    logger: Any, method_name: str, event_dict: dict[str, Any]
) -> dict[str, Any]:
    """structlog's `format_exc_info`, then the database errors of the traceback (and of the
    message, for `logger.warning("...: %s", exc)`) reduced to what `safe_error` keeps."""
    exc = _exception_of(event_dict.get("exc_info"))
    event_dict = dict(structlog.processors.format_exc_info(logger, method_name, event_dict))
    for key in ("exception", "event"):
        if isinstance(event_dict.get(key), str):
            event_dict[key] = _scrubbed_text(event_dict[key], exc)
    return event_dict


def _foreign_pre_chain(*, timestamp: bool = True) -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_extras,
        *([structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")] if timestamp else []),
    ]


class QuietRoutine(logging.Filter):
    """The development console without beat's routine lines ("Sending due task ...", every 2 s:
    72 of 73 lines of an idle half minute). Not installed at DEBUG, nor in JSON logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "celery.beat" and record.getMessage().startswith("Scheduler: Sending due task")
        )


def logging_config(*, level: str, fmt: str = "json") -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: the root logger writes `fmt` lines to stderr."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {LOG_FORMATS}, not {fmt!r}")
    console = fmt == "console"
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False)
        if console
        else structlog.processors.JSONRenderer(ensure_ascii=False, default=str)
    )
    handler: dict[str, Any] = {"class": "logging.StreamHandler", "formatter": "structured"}
    if console and level.upper() != "DEBUG":
        handler["filters"] = ["quiet_routine"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                # The console runs under honcho, which puts the time before every line.
                "foreign_pre_chain": _foreign_pre_chain(timestamp=not console),
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    format_exc_info_without_row_values,
                    renderer,
                ],
            }
        },
        "filters": {"quiet_routine": {"()": QuietRoutine}},
        "handlers": {"console": handler},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # kafka-python logs every reconnect attempt at ERROR/INFO; warnings are enough.
            "kafka": {"level": "WARNING"},
        },
    }
