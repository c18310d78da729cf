"""The CloudEvents codec: the three incoming forms in, structured JSON out (docs/events.md).

JSON numbers are parsed straight to Decimal, never float; Decimals go back out as JSON numbers
with the same digits, while money fields are strings because the schemas serialize them so.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge import signing
from bridge.topics import MAX_EVENT_BYTES, WARN_BYTES, lookup
from core import json_depth, tracing
from core.codec import (  # noqa: F401  (re-exported: the codec's users read them here)
    EventJSONDecoder,
    EventJSONEncoder,
    contains_nul,
    dumps,
    loads,
    now_rfc3339,
)

logger = logging.getLogger(__name__)

SPECVERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
SOURCE_PREFIX = "/kafka-platform/"
# The actor of a record the platform did not sign: the integration that wrote to the topic.
INTEGRATION_ACTOR_PREFIX = "kafka:"
CE_HEADER_PREFIX = "ce_"
CORRELATION_HEADERS = ("correlation-id", "correlationid", "x-correlation-id")

Headers = list[tuple[str, bytes]]


class PoisonMessage(Exception):
    """A message that cannot be understood; it goes to the dead-letter topic.

    `reason` is a short machine-readable code (the dlq-reason header), `args[0]` the detail.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class EventTooLarge(ValueError):
    """Raised on the producing side for an event over MAX_EVENT_BYTES."""


class EventTooDeep(ValueError):
    """Raised on the producing side for an event whose data nests deeper than MAX_JSON_DEPTH."""


@dataclass(frozen=True)
class IncomingMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)

    @property
    def fallback_id(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Envelope:
    """One event, whatever form it arrived in; `data` holds JSON-compatible values and Decimals."""

    id: str
    type: str
    source: str
    time: str
    data: dict[str, Any]
    subject: str | None = None
    correlation_id: str | None = None
    # The CloudEvents extension `actor`: who asked for this (`user:<username>`), so that the worker
    # finishing the work records the requester in the audit log, not itself.
    actor: str | None = None
    # The CloudEvents distributed-tracing extension: the W3C trace context of the work that emitted
    # this event, so the work it causes joins the same trace (core.tracing).
    traceparent: str | None = None
    tracestate: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    # Produced by the platform itself (its signature verified for this topic, bridge.signing):
    # only then are `actor` and the platform's reserved ids believed. False for every record from
    # outside the platform, whose actor is the integration `kafka:<topic>` whatever it claims.
    signed: bool = False

    def to_task_payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": self.time,
            "subject": self.subject,
            "correlationid": self.correlation_id,
            "actor": self.actor,
            "traceparent": self.traceparent,
            "tracestate": self.tracestate,
            "data": self.data,
            "origin": [self.topic, self.partition, self.offset],
            "signed": self.signed,
        }

    @classmethod
    def from_task_payload(cls, payload: Mapping[str, Any]) -> Envelope:
        topic, partition, offset = payload.get("origin") or (None, None, None)
        return cls(
            id=payload["id"],
            type=payload["type"],
            source=payload["source"],
            time=payload["time"],
            data=dict(payload["data"]),
            subject=payload.get("subject"),
            correlation_id=payload.get("correlationid"),
            actor=payload.get("actor"),
            traceparent=payload.get("traceparent"),
            tracestate=payload.get("tracestate"),
            topic=topic,
            partition=partition,
            offset=offset,
            signed=bool(payload.get("signed", False)),
        )


# --- incoming -------------------------------------------------------------------------------------


def _header(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("utf-8", errors="replace") if value is not None else None
    return None


_DEPTH_CAP = f"{json_depth.MAX_JSON_DEPTH} levels deep (counted within the event's data)"


def _parse_object(raw: bytes, what: str, *, max_depth: int = json_depth.MAX_JSON_DEPTH) -> dict[str, Any]:
    try:
        obj = loads(raw, max_depth=max_depth)
    except json_depth.TooDeep:
        raise PoisonMessage("invalid_json", f"{what} is nested more than {_DEPTH_CAP}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise PoisonMessage("invalid_json", f"{what} is not valid JSON: {exc}") from None
    except RecursionError:  # the depth scan should make this unreachable
        raise PoisonMessage("invalid_json", f"{what} is nested too deeply") from None
    if not isinstance(obj, dict):
        raise PoisonMessage("not_an_object", f"{what} is a JSON {type(obj).__name__}, not an object")
    return obj


def _required_str(obj: Mapping[str, Any], name: str, where: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise PoisonMessage("invalid_envelope", f"{where} attribute {name!r} is missing or not a string")
    return value


def decode(msg: IncomingMessage) -> Envelope:
    """The message as an Envelope, or PoisonMessage saying why it cannot be understood.

    Nothing in a record can make this raise anything else: a failure the checks did not foresee
    (RecursionError, an arithmetic trap) is a PoisonMessage too, so one record never stops the bridge.
    """
    try:
        envelope = _decode(msg)
    except PoisonMessage:
        raise
    except RecursionError:
        raise PoisonMessage("invalid_json", f"the message is nested more than {_DEPTH_CAP}") from None
    except Exception as exc:  # noqa: BLE001 - whatever one record does, it is that record's dead letter
        raise PoisonMessage(
            "invalid_json", f"the message cannot be decoded: {type(exc).__name__}: {exc}"
        ) from None
    # Counted within `data` (the envelope around it is not the sender's nesting).
    if json_depth.value_depth(envelope.data) > json_depth.MAX_JSON_DEPTH:
        raise PoisonMessage("invalid_json", f"event data is nested more than {_DEPTH_CAP}")
    return envelope


def _decode(msg: IncomingMessage) -> Envelope:
    size = len(msg.value or b"")
    if size > MAX_EVENT_BYTES:
        raise PoisonMessage("too_large", f"message of {size} bytes exceeds {MAX_EVENT_BYTES}")
    if size > WARN_BYTES:
        logger.warning("large message: %s bytes at %s", size, msg.fallback_id)
    if not msg.value:
        raise PoisonMessage("invalid_json", "message value is empty")
    if contains_nul(msg.value) or any(
        v is not None and b"\x00" in v for k, v in msg.headers if k.lower().startswith(CE_HEADER_PREFIX)
    ):
        # PostgreSQL text cannot hold NUL: such an event would crash the worker that stores it.
        raise PoisonMessage("invalid_text", "the message contains a NUL character")

    content_type = (_header(msg.headers, "content-type") or "").lower()
    key = msg.key.decode("utf-8", errors="replace") if msg.key is not None else None

    if _header(msg.headers, CE_HEADER_PREFIX + "specversion") is not None:
        return _decode_binary(msg, key)
    # One level more than data's cap: a structured CloudEvent wraps `data` in its envelope; a bare
    # value's own depth is checked against the cap once decoded (`decode`).
    obj = _parse_object(msg.value, "message value", max_depth=json_depth.MAX_JSON_DEPTH + 1)
    if content_type.startswith(STRUCTURED_CONTENT_TYPE) or "specversion" in obj:
        return _decode_structured(msg, obj, key)
    return _decode_bare(msg, obj, key)


def integration_actor(msg: IncomingMessage) -> str:
    """Who an unsigned record acts as: the integration that produced it to its topic."""
    return f"{INTEGRATION_ACTOR_PREFIX}{msg.topic}"


def _decode_structured(msg: IncomingMessage, obj: dict[str, Any], key: str | None) -> Envelope:
    if obj.get("specversion") != SPECVERSION:
        raise PoisonMessage("invalid_envelope", f"unsupported specversion {obj.get('specversion')!r}")
    if "data_base64" in obj:
        raise PoisonMessage("invalid_envelope", "data_base64 is not accepted: data must be JSON")
    data = obj.get("data", {})
    if not isinstance(data, dict):
        raise PoisonMessage("not_an_object", f"CloudEvent data is a JSON {type(data).__name__}")
    correlation = obj.get("correlationid")
    trace = tracing.parse(obj.get("traceparent"), obj.get("tracestate"))
    event_id = _required_str(obj, "id", "CloudEvent")
    event_type = _required_str(obj, "type", "CloudEvent")
    signed = signing.verify(
        topic=msg.topic,
        event_id=event_id,
        event_type=event_type,
        value=msg.value or b"",
        header=signing.header_value(msg.headers, signing.SIGNATURE_HEADER),
    )
    claimed = obj.get("actor")
    return Envelope(
        id=event_id,
        type=event_type,
        source=_required_str(obj, "source", "CloudEvent"),
        time=sent if isinstance(sent := obj.get("time"), str) else now_rfc3339(),
        subject=obj.get("subject") if isinstance(obj.get("subject"), str) else key,
        correlation_id=correlation if isinstance(correlation, str) else None,
        actor=(claimed if isinstance(claimed, str) and claimed else None)
        if signed
        else integration_actor(msg),
        traceparent=trace.traceparent if trace else None,
        tracestate=trace.tracestate if trace else None,
        data=data,
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        signed=signed,
    )


def _decode_binary(msg: IncomingMessage, key: str | None) -> Envelope:
    attrs = {
        k[len(CE_HEADER_PREFIX) :].lower(): v.decode("utf-8", errors="replace")
        for k, v in msg.headers
        if k.lower().startswith(CE_HEADER_PREFIX) and v is not None
    }
    if attrs.get("specversion") != SPECVERSION:
        raise PoisonMessage("invalid_envelope", f"unsupported ce_specversion {attrs.get('specversion')!r}")
    data = _parse_object(msg.value or b"", "binary-mode CloudEvent data")
    trace = tracing.parse(attrs.get("traceparent"), attrs.get("tracestate"))
    return Envelope(
        id=_required_str(attrs, "id", "ce_ header"),
        type=_required_str(attrs, "type", "ce_ header"),
        source=_required_str(attrs, "source", "ce_ header"),
        time=attrs.get("time") or now_rfc3339(),
        subject=attrs.get("subject") or key,
        correlation_id=attrs.get("correlationid"),
        # Signed records are structured: a binary-mode record is never the platform's.
        actor=integration_actor(msg),
        traceparent=trace.traceparent if trace else None,
        tracestate=trace.tracestate if trace else None,
        data=data,
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
    )


def _decode_bare(msg: IncomingMessage, data: dict[str, Any], key: str | None) -> Envelope:
    topic = lookup(msg.topic)
    id_field = topic.key_field if topic else "id"
    own_id = data.get(id_field)
    if not isinstance(own_id, str | int) or isinstance(own_id, bool) or own_id == "":
        own_id = data.get("id") if isinstance(data.get("id"), str) else None
    correlation = next((v for name in CORRELATION_HEADERS if (v := _header(msg.headers, name))), None)
    # No envelope to carry the extension: the W3C headers an OpenTelemetry-instrumented producer sets.
    trace = tracing.parse(_header(msg.headers, "traceparent"), _header(msg.headers, "tracestate"))
    return Envelope(
        id=str(own_id) if own_id is not None else msg.fallback_id,
        type=msg.topic,
        source=f"kafka://{msg.topic}",
        time=now_rfc3339(),
        subject=key if key is not None else (str(own_id) if own_id is not None else None),
        correlation_id=correlation,
        actor=integration_actor(msg),
        traceparent=trace.traceparent if trace else None,
        tracestate=trace.tracestate if trace else None,
        data=data,
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
    )


# --- outgoing -------------------------------------------------------------------------------------


def build_event(
    *,
    event_type: str,
    domain: str,
    subject: str,
    data: Mapping[str, Any],
    correlation_id: str | None = None,
    event_id: str | None = None,
    actor: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> dict[str, Any]:
    """A CloudEvents 1.0 structured-mode event (as a dict, ready for dumps)."""
    event_id = event_id or str(uuid.uuid4())
    event = {
        "specversion": SPECVERSION,
        "id": event_id,
        "source": SOURCE_PREFIX + domain,
        "type": event_type,
        "time": now_rfc3339(),
        "subject": subject,
        "datacontenttype": "application/json",
        "correlationid": correlation_id or event_id,
        "data": dict(data),
    }
    if actor:
        event["actor"] = actor
    if traceparent:
        event["traceparent"] = traceparent
        if tracestate:
            event["tracestate"] = tracestate
    return event


def encode_event(event: Mapping[str, Any]) -> tuple[bytes, Headers]:
    """Value bytes and headers of a structured-mode CloudEvent; refuses one over the size limit or
    with data nested deeper than the cap every consumer applies (the encoder itself recurses)."""
    if json_depth.value_depth(event.get("data")) > json_depth.MAX_JSON_DEPTH:
        raise EventTooDeep(
            f"event {event.get('type')} {event.get('id')}: data is nested more than {_DEPTH_CAP}"
        )
    value = dumps(event)
    if len(value) > MAX_EVENT_BYTES:
        raise EventTooLarge(
            f"event {event.get('type')} {event.get('id')} is {len(value)} bytes; "
            f"the limit is {MAX_EVENT_BYTES}"
        )
    if len(value) > WARN_BYTES:
        logger.warning("large event: %s bytes, %s %s", len(value), event.get("type"), event.get("id"))
    headers: Headers = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
    return value, headers
