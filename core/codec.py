"""The platform's JSON: numbers as Decimal both ways, never float, and a depth cap checked before
parsing. Models' JSONFields, the event codec, the outbox and the audit archive all write and read
through here, so a Decimal keeps exactly its digits wherever it is stored or sent."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

from core import json_depth


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# What `loads` accepts by default: JSON the platform reads back of its own (an audit archive line
# wraps capped event data in a record) may nest a few levels more than the cap on incoming data,
# which `decode` applies exactly. Either way far below where the parser's recursion would fail.
LOADS_MAX_DEPTH = 2 * json_depth.MAX_JSON_DEPTH


def loads(raw: bytes | str, *, max_depth: int = LOADS_MAX_DEPTH) -> Any:
    """JSON with numbers as Decimal; TooDeep (a ValueError) for text nested over `max_depth`,
    checked before parsing because the parser itself recurses once per level."""
    json_depth.check_raw(raw, limit=max_depth)
    return json.loads(raw, parse_float=Decimal)


def _encode(obj: Any, out: list[str]) -> None:
    if isinstance(obj, str):
        out.append(encode_basestring(obj))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(int.__repr__(obj))
    elif isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"cannot encode {obj} as JSON")
        out.append(f"{obj:f}")
    elif isinstance(obj, Mapping):
        out.append("{")
        first = True
        for key, value in obj.items():
            if not first:
                out.append(",")
            first = False
            out.append(encode_basestring(str(key)))
            out.append(":")
            _encode(value, out)
        out.append("}")
    elif isinstance(obj, list | tuple):
        out.append("[")
        for i, value in enumerate(obj):
            if i:
                out.append(",")
            _encode(value, out)
        out.append("]")
    elif isinstance(obj, datetime):
        out.append(encode_basestring(obj.isoformat().replace("+00:00", "Z")))
    elif isinstance(obj, uuid.UUID):
        out.append(encode_basestring(str(obj)))
    elif isinstance(obj, float):
        out.append(json.dumps(obj))
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj: Any) -> bytes:
    """JSON bytes; a Decimal is written as a number with exactly its digits."""
    out: list[str] = []
    _encode(obj, out)
    return "".join(out).encode()


# A JSON `\u0000` escape that is not itself escaped (`\\u0000` is a backslash, then text).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


def contains_nul(raw: bytes) -> bool:
    """Does raw JSON carry a NUL character, as a byte or as a `\\u0000` escape?"""
    return b"\x00" in raw or _JSON_NUL.search(raw) is not None


class EventJSONEncoder(json.JSONEncoder):
    """For Django JSONFields holding event data: Decimals stay numbers with their digits."""

    def encode(self, o: Any) -> str:
        return dumps(o).decode()


class EventJSONDecoder(json.JSONDecoder):
    """For Django JSONFields holding event data: numbers come back as Decimal, never float."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["parse_float"] = Decimal
        super().__init__(*args, **kwargs)
