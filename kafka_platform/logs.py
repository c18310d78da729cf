"""Structured logging for every process: one JSON object per line, with the bound context.

Web, bridge, relay, worker, beat, flower and gunicorn all log through the standard `logging`
module; this formatter turns each record into JSON and merges in what
`kafka_platform.correlation` bound for the work in hand (correlation id, event, task), so every
line written while handling an event carries its correlation id.
"""

from __future__ import annotations

import logging
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


def _foreign_pre_chain() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_extras,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def logging_config(*, level: str, fmt: str = "json") -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: the root logger writes `fmt` lines to stderr."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {LOG_FORMATS}, not {fmt!r}")
    renderer = (
        structlog.processors.JSONRenderer(ensure_ascii=False, default=str)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": _foreign_pre_chain(),
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # kafka-python logs every reconnect attempt at ERROR/INFO; warnings are enough.
            "kafka": {"level": "WARNING"},
        },
    }
