"""The hash chain's definition: a record's canonical JSON, its SHA-256 link, signed checkpoints.

A record's hash is SHA-256 over the previous record's hash, a newline and the record's canonical
JSON (sorted keys, no spaces, UTF-8, numbers with exactly their digits, times in UTC with
microseconds). The sequence number is part of the canonical content, so records cannot be
reordered or renumbered. The first record links to GENESIS_HASH. The same functions hash a row
read from the database, a line of an archive file or an API export line, so anyone holding the
records can recompute the chain. Checkpoints are numbered 1, 2, ... and each signs the previous
one's signature as well (the first signs GENESIS_SIGNATURE).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.codec import dumps

GENESIS_HASH = "0" * 64

# The record fields the hash covers, in their wire (camelCase) names.
CONTENT_FIELDS = (
    "sequence",
    "eventId",
    "type",
    "source",
    "action",
    "actor",
    "subjectType",
    "subjectId",
    "correlationId",
    "data",
    "occurredAt",
    "recordedAt",
    "topic",
    "partition",
    "offset",
)


def format_time(value: datetime) -> str:
    """The canonical form of a time: UTC, microseconds, `Z`."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def normalize_json(value: Any) -> Any:
    """`value` as PostgreSQL's jsonb will give it back, so the hash survives the round trip.

    jsonb has no negative zero; everything else (digits, trailing zeros, key order aside) it keeps.
    """
    if isinstance(value, Decimal):
        return value.copy_abs() if value.is_zero() else value
    if isinstance(value, Mapping):
        return {str(k): normalize_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize_json(v) for v in value]
    return value


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8; Decimals written with exactly their digits."""
    return dumps(_sorted(value))


def link_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    """The hash of a record whose canonical content is `content`, following `prev_hash`."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_json(content)).hexdigest()


# What the first checkpoint links to in place of a previous checkpoint's signature.
GENESIS_SIGNATURE = "0" * 64


def sign_checkpoint(
    key: str,
    *,
    number: int,
    kind: str,
    sequence: int,
    record_hash: str,
    signed_at: datetime,
    prev_signature: str,
) -> str:
    """HMAC-SHA256 (hex) of checkpoint `number`: the chain's state at record `sequence`, vouched
    for by the key, and the previous checkpoint's signature, so checkpoints form a chain of their
    own that cannot be shortened, reordered or renumbered without the key."""
    message = f"{number}:{kind}:{sequence}:{record_hash}:{format_time(signed_at)}:{prev_signature}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def checkpoint_signature_valid(key: str, signature: str, **fields: Any) -> bool:
    return hmac.compare_digest(sign_checkpoint(key, **fields), signature)
