"""Records as the platform signs them, for tests that stand in for one of its producers."""

from __future__ import annotations

import json

from bridge import signing

Headers = list[tuple[str, bytes]]


def sign(topic: str, value: bytes, headers: Headers | None = None) -> Headers:
    """`headers` plus the platform signature of `value` (a structured CloudEvent) on `topic`, with
    the PLATFORM_EVENT_KEY the test processes share (the development key)."""
    event = json.loads(value)
    return signing.signed_headers(
        list(headers or []), topic=topic, event_id=event["id"], event_type=event["type"], value=value
    )
