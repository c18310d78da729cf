"""Archive files of purged audit records: gzip JSONL segments, each with a signed hash manifest.

A segment `audit-<first>-<last>.jsonl.gz` holds one record document per line (canonical content
plus `prevHash` and `hash`, see audit.chain) in sequence order. Its manifest
`audit-<first>-<last>.manifest.json` names the file, its SHA-256, the sequence range, the hash the
segment follows and its last hash, signed with AUDIT_CHECKPOINT_KEY. Files are written to a
temporary name, flushed to disk and renamed, so a crash leaves either nothing or a whole file;
writing the same segment again produces the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit import chain
from core.codec import loads

MANIFEST_SUFFIX = ".manifest.json"


@dataclass(frozen=True)
class Segment:
    file: Path
    manifest: Path
    sha256: str
    records: int
    first_sequence: int
    last_sequence: int
    prev_hash: str
    last_hash: str


def segment_name(first_sequence: int, last_sequence: int) -> str:
    return f"audit-{first_sequence:012d}-{last_sequence:012d}"


def _manifest_signature(key: str, manifest: dict[str, Any]) -> str:
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    return hmac.new(key.encode(), chain.canonical_json(unsigned), hashlib.sha256).hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def write_segment(directory: Path, documents: list[dict[str, Any]], *, key: str) -> Segment:
    """Write `documents` (contiguous, in sequence order) and their manifest into `directory`."""
    if not documents:
        raise ValueError("an archive segment needs at least one record")
    directory.mkdir(parents=True, exist_ok=True)
    first, last = documents[0], documents[-1]
    name = segment_name(first["sequence"], last["sequence"])
    lines = b"".join(chain.canonical_json(doc) + b"\n" for doc in documents)
    # mtime=0 and no file name in the header: the same records always give the same bytes.
    compressed = gzip.compress(lines, compresslevel=6, mtime=0)
    file = directory / f"{name}.jsonl.gz"
    _write_atomically(file, compressed)
    manifest: dict[str, Any] = {
        "file": file.name,
        "sha256": hashlib.sha256(compressed).hexdigest(),
        "records": len(documents),
        "firstSequence": first["sequence"],
        "lastSequence": last["sequence"],
        "prevHash": first["prevHash"],
        "lastHash": last["hash"],
    }
    manifest["signature"] = _manifest_signature(key, manifest)
    manifest_path = directory / f"{name}{MANIFEST_SUFFIX}"
    _write_atomically(manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")
    return read_manifest(manifest_path)


def read_manifest(path: Path) -> Segment:
    manifest = json.loads(path.read_text())
    return Segment(
        file=path.with_name(manifest["file"]),
        manifest=path,
        sha256=manifest["sha256"],
        records=manifest["records"],
        first_sequence=manifest["firstSequence"],
        last_sequence=manifest["lastSequence"],
        prev_hash=manifest["prevHash"],
        last_hash=manifest["lastHash"],
    )


def manifest_signature_valid(path: Path, *, key: str) -> bool:
    manifest = json.loads(path.read_text())
    return hmac.compare_digest(_manifest_signature(key, manifest), str(manifest.get("signature", "")))


def segments(directory: Path) -> list[Segment]:
    """The archive's segments in sequence order."""
    if not directory.is_dir():
        return []
    found = [read_manifest(p) for p in directory.glob(f"audit-*{MANIFEST_SUFFIX}")]
    return sorted(found, key=lambda s: s.first_sequence)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_documents(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield loads(line)


def split_document(document: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """A document's canonical content, prevHash and hash."""
    content = {k: document.get(k) for k in chain.CONTENT_FIELDS}
    return content, str(document.get("prevHash")), str(document.get("hash"))
