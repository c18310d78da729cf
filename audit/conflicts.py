"""The compliance alert raised when an id arrives again with other content (a conflicting duplicate)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager

from audit.models import ComplianceAlert, ComplianceRuleName, Severity
from audit.services import compliance_alert_raise
from bridge.codec import Envelope
from core.ids import ConflictingDuplicate

RULE = ComplianceRuleName.CONFLICTING_DUPLICATE.value
# High: either a client replays an id with other money in it, or someone claimed an id first;
# either way one of the two requests was not done and an operator must say which was meant.
SEVERITY = Severity.HIGH.value


def conflicting_duplicate_alert(
    *, conflict: ConflictingDuplicate, source: str, event_id: str = "", correlation_id: str = ""
) -> ComplianceAlert | None:
    """Raise `conflicting_duplicate` for `conflict` once per (id, what arrived): the same
    conflicting request retried or redelivered raises no second alert. `source` says where it came
    from (`api:<client>` or the Kafka topic)."""
    details = {
        "kind": conflict.kind,
        "id": conflict.object_id,
        "source": source,
        "differences": {name: str(value) for name, value in sorted(conflict.differences.items())},
    }
    fingerprint = hashlib.sha256(json.dumps(details, sort_keys=True).encode()).hexdigest()[:32]
    return compliance_alert_raise(
        rule=RULE,
        severity=SEVERITY,
        subject=f"{conflict.kind}:{conflict.object_id}",
        details=details,
        dedupe_key=f"{RULE}:{event_id or fingerprint}",
        source_event_id=event_id,
        correlation_id=correlation_id,
    )


@contextmanager
def alerting_conflicts(event: Envelope) -> Iterator[None]:
    """Raise the alert of a ConflictingDuplicate the work of `event` meets, then let it go on to
    the task's edge, which dead-letters the record (`conflicting_duplicate`) without a failed event.
    The alert is raised here, outside the work's rolled-back transaction, so it stays."""
    try:
        yield
    except ConflictingDuplicate as conflict:
        conflicting_duplicate_alert(
            conflict=conflict,
            source=event.topic or event.type,
            event_id=event.id,
            correlation_id=event.correlation_id or "",
        )
        raise
