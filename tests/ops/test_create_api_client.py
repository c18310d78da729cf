"""The quick start's first step: `create_api_client` makes a user whose token works at once."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from ledger.models import ClientAccount
from tests.support.builders import payment_request


def _create(*args: str) -> str:
    out = io.StringIO()
    call_command("create_api_client", *args, "--quiet", stdout=out)
    return out.getvalue().strip()


def _api(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api


@pytest.mark.django_db
def test_a_client_gets_a_token_and_its_own_ledger_account() -> None:
    name = f"shop-{uuid.uuid4().hex[:6]}"
    token = _create(name)
    api = _api(token)
    answer = api.post(
        "/api/v1/payments/",
        json.dumps(payment_request()),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="first",
    )
    assert answer.status_code == 202
    assert ClientAccount.objects.get(account_id=f"user:{name}").client.username == name
    assert _create(name) == token  # running it again keeps the token
    # A plain client may neither request notifications nor read the audit log.
    assert api.get("/api/v1/audit/events/").status_code == 403


@pytest.mark.django_db
def test_operators_auditors_and_service_accounts_get_their_rights() -> None:
    operator = _api(_create(f"ops-{uuid.uuid4().hex[:6]}", "--role", "operators"))
    auditor = _api(_create(f"aud-{uuid.uuid4().hex[:6]}", "--role", "auditors"))
    service = _create(f"svc-{uuid.uuid4().hex[:6]}", "--service")
    topup = {"kind": "topup", "toAccount": "user:qs", "amount": "5.00", "currency": "USD"}
    assert (
        operator.post(
            "/api/v1/ledger/transactions/", topup, format="json", HTTP_IDEMPOTENCY_KEY="t1"
        ).status_code
        == 202
    )
    assert auditor.get("/api/v1/audit/events/").status_code == 200
    from django.contrib.auth.models import User

    svc_user = User.objects.get(auth_token__key=service)
    assert svc_user.has_perm("notifications.add_notification")
    assert not ClientAccount.objects.filter(client=svc_user).exists()
