"""The platform's record signature: sign what the platform publishes, verify it on the way in.

`platform-signature: v1,<key id>,<base64 HMAC-SHA256>` with PLATFORM_EVENT_KEY over
`<topic>\\n<CloudEvents id>\\n<type>\\n<hex SHA-256 of the value>`. The topic is signed so that a
record copied from one topic to another does not verify there; the value's digest so that no byte
of it can change. The key id (derived from the key, never chosen) lets a record signed before a
rotation verify against PLATFORM_EVENT_KEY_PREVIOUS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from django.conf import settings

SIGNATURE_HEADER = "platform-signature"
# Dead letters carry the platform's signature of the dead letter itself under this name: the
# `dlq-` prefix makes a replay drop it with the other dlq-* headers, so the replayed record is
# exactly the original.
DLQ_SIGNATURE_HEADER = "dlq-signature"
VERSION = "v1"

Headers = list[tuple[str, bytes]]


def key_id(key: str) -> str:
    """Names a key without revealing it: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def _keys() -> dict[str, str]:
    """Key id -> key, the current key and (during a rotation) the previous one."""
    keys = [settings.PLATFORM_EVENT_KEY, settings.PLATFORM_EVENT_KEY_PREVIOUS]
    return {key_id(key): key for key in keys if key}


def _digest(key: str, topic: str, event_id: str, event_type: str, value: bytes) -> bytes:
    message = f"{topic}\n{event_id}\n{event_type}\n{hashlib.sha256(value).hexdigest()}"
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()


def signature(*, topic: str, event_id: str, event_type: str, value: bytes) -> str:
    """The header value signing one record with the current PLATFORM_EVENT_KEY."""
    key = settings.PLATFORM_EVENT_KEY
    if not key:
        raise RuntimeError("PLATFORM_EVENT_KEY is unset: the platform cannot sign what it publishes")
    mac = base64.b64encode(_digest(key, topic, event_id, event_type, value)).decode()
    return f"{VERSION},{key_id(key)},{mac}"


def verify(*, topic: str, event_id: str, event_type: str, value: bytes, header: str | None) -> bool:
    """Does `header` sign exactly this record on this topic with the current or previous key?"""
    if not header:
        return False
    version, _, rest = header.partition(",")
    kid, _, mac = rest.partition(",")
    key = _keys().get(kid)
    if version != VERSION or key is None:
        return False
    try:
        claimed = base64.b64decode(mac, validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(claimed, _digest(key, topic, event_id, event_type, value))


def header_value(headers: Headers, name: str) -> str | None:
    """The value of header `name`; None when absent, or when repeated (which one would count?)."""
    found = [v for k, v in headers if k.lower() == name]
    if len(found) != 1 or found[0] is None:
        return None
    return found[0].decode("ascii", errors="replace")


def signed_headers(headers: Headers, *, topic: str, event_id: str, event_type: str, value: bytes) -> Headers:
    """`headers` with the platform's signature of this record (any earlier one dropped)."""
    kept = [(k, v) for k, v in headers if k.lower() != SIGNATURE_HEADER]
    sig = signature(topic=topic, event_id=event_id, event_type=event_type, value=value)
    return [*kept, (SIGNATURE_HEADER, sig.encode())]


def dead_letter_signature(*, dlq_topic: str, origin: str, reason: str, value: bytes) -> str:
    """The platform's signature of a dead letter: its DLQ topic, where it came from
    (`<topic>:<partition>:<offset>`) and why, and its value."""
    return signature(topic=dlq_topic, event_id=origin, event_type=reason, value=value)


def dead_letter_verifies(
    *, dlq_topic: str, origin: str, reason: str, value: bytes, header: str | None
) -> bool:
    return verify(topic=dlq_topic, event_id=origin, event_type=reason, value=value, header=header)
