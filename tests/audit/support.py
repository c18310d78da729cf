"""Builders and helpers of the audit tests."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bridge import topics
from bridge.codec import Envelope
from tests.support.processes import manage


def audit_envelope(
    action: str = "payment.requested",
    *,
    subject_id: str | None = None,
    subject_type: str = "payment",
    details: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
    topic: topics.Topic = topics.AUDIT_PAYMENT_EVENTS,
    actor: str = "system:payments-worker",
) -> Envelope:
    """An audit record as the bridge hands it to audit.record_event."""
    subject_id = subject_id or f"pay_{uuid.uuid4().hex[:10]}"
    when = (occurred_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return Envelope(
        id=event_id or str(uuid.uuid4()),
        type=topic.name,
        source=f"/kafka-platform/{topic.domain}",
        time=when,
        subject=subject_id,
        correlation_id=f"corr-{subject_id}",
        data={
            "action": action,
            "subjectType": subject_type,
            "subjectId": subject_id,
            "actor": actor,
            "details": details or {},
        },
        topic=topic.name,
        partition=0,
        offset=0,
    )


def payment_details(
    *, amount: str = "25.00", currency: str = "USD", user_id: str = "user_1"
) -> dict[str, Any]:
    return {
        "fromStatus": None,
        "toStatus": "requested",
        "amount": amount,
        "currency": currency,
        "userId": user_id,
        "merchantId": "platform",
    }


def audit_verify(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `manage.py audit_verify` as its own process against the test database."""
    return subprocess.run(manage("audit_verify", *args), env=env, capture_output=True, text=True, timeout=120)


def token_client(user: User) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return api
