"""Structured logging for every process: one JSON object per line, with the bound context.

Web, bridge, relay, worker, beat, flower and gunicorn all log through the standard `logging`
module; this formatter turns each record into JSON and merges in what
`kafka_platform.correlation` bound for the work in hand (correlation id, event, task), so every
line written while handling an event carries its correlation id.
"""

from __future__ import annotations

from typing import Any

import structlog

LOG_FORMATS = ("json", "console")


def _foreign_pre_chain() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
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
