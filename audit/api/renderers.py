"""Renderers of the audit API: JSON that keeps Decimals exact, CSV and JSON Lines exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from rest_framework.renderers import BaseRenderer, JSONRenderer

from core.codec import dumps

CSV_COLUMNS = (
    "sequence",
    "eventId",
    "type",
    "source",
    "action",
    "actor",
    "subjectType",
    "subjectId",
    "correlationId",
    "occurredAt",
    "recordedAt",
    "topic",
    "partition",
    "offset",
    "prevHash",
    "hash",
    "data",
)
# A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class EventJSONRenderer(JSONRenderer):
    """JSON through the event codec: event data's Decimals keep their digits (DRF's encoder
    would turn them into floats)."""

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return b"" if data is None else dumps(data)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = dumps(value).decode() if isinstance(value, Mapping | list) else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def csv_lines(
    documents: Iterable[Mapping[str, Any]], columns: tuple[str, ...] = CSV_COLUMNS
) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for document in documents:
        writer.writerow([_cell(document.get(column)) for column in columns])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def jsonl_lines(documents: Iterable[Any]) -> Iterator[bytes]:
    for document in documents:
        yield dumps(document) + b"\n"


class CSVRenderer(BaseRenderer):
    """`?format=csv` or `Accept: text/csv`; the list view streams its rows itself, this renders
    what else answers in CSV (errors)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> str:
        if data is None:
            return ""
        rows = data if isinstance(data, list) else [data]
        columns = tuple(rows[0]) if rows and isinstance(rows[0], Mapping) else ("detail",)
        return "".join(csv_lines([r if isinstance(r, Mapping) else {"detail": r} for r in rows], columns))


class JSONLinesRenderer(BaseRenderer):
    """`?format=jsonl` or `Accept: application/jsonl`: one JSON document per line."""

    media_type = "application/jsonl"
    format = "jsonl"
    charset = None

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        if data is None:
            return b""
        return b"".join(jsonl_lines(data if isinstance(data, list) else [data]))
