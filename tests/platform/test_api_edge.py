"""The API's one error edge: problem+json for every error, 413 for big bodies, 400 for NUL bytes,
429 with Retry-After for a client writing too fast, and NUL-carrying events dead-lettered."""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.cache import cache
from django.test import RequestFactory, override_settings
from rest_framework.test import APIClient

from bridge import topics
from bridge.models import OutboxEvent
from core.parsers import DecimalJSONParser
from core.problems import ProblemMiddleware
from core.roles import OPERATORS
from core.throttles import WriteRateThrottle
from ledger.models import Transaction
from payments.models import Payment
from tests.conftest import Stack
from tests.support.builders import payment_request, structured
from tests.support.kafka import Collector, produce
from tests.support.signing import sign
from tests.support.users import make_api_user, token_client

PROBLEM = "application/problem+json"


def _is_problem(answer: object, status: int) -> dict:
    assert answer.status_code == status, answer.content  # type: ignore[attr-defined]
    assert answer["Content-Type"] == PROBLEM  # type: ignore[index]
    body = answer.json()  # type: ignore[attr-defined]
    assert body["status"] == status and body["title"] and body["type"] and "detail" in body
    return body


@pytest.mark.django_db
def test_every_error_has_the_problem_shape() -> None:
    _is_problem(APIClient().get("/api/v1/payments/"), 401)
    client = token_client(make_api_user("c"))
    _is_problem(client.get("/api/v1/payments/pay_nobody/"), 404)
    _is_problem(client.get("/api/v1/audit/events/"), 403)
    _is_problem(client.get("/api/v1/payments/", {"createdAfter": "yesterday"}), 400)
    no_key = client.post("/api/v1/payments/", json.dumps(payment_request()), content_type="application/json")
    assert "Idempotency-Key" in _is_problem(no_key, 400)["detail"]
    not_json = client.post(
        "/api/v1/payments/", "{nope", content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    _is_problem(not_json, 400)


@pytest.mark.django_db
def test_an_api_path_no_route_matches_is_a_problem_and_other_paths_keep_the_html_page() -> None:
    client = token_client(make_api_user("c"))
    # The router's id pattern refuses dots: no view is reached (schemathesis found this one).
    body = _is_problem(client.get("/api/v1/payments/As%20requested./"), 404)
    assert body["type"].endswith("/not_found")
    _is_problem(client.get("/api/v1/no-such-resource/"), 404)

    page = client.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_nul_bytes_in_path_query_or_body_are_400_and_nothing_is_stored() -> None:
    operator = token_client(make_api_user("ops", role=OPERATORS))
    _is_problem(operator.get("/api/v1/payments/pay%00x/"), 400)
    _is_problem(operator.get("/api/v1/payments/", {"status": "cap\x00tured"}), 400)
    _is_problem(operator.get("/api/v1/ledger/transactions/?kind=%00"), 400)

    outbox_before = OutboxEvent.objects.count()
    for raw in (
        b'{"kind": "topup", "toAccount": "user:x", "amount": "1.00", "currency": "USD",'
        b' "description": "a\\u0000b"}',
        b'{"kind": "topup", "toAccount": "user:x", "amount": "1.00", "currency": "USD",'
        b' "description": "a\x00b"}',
    ):
        answer = operator.post(
            "/api/v1/ledger/transactions/", raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="nul"
        )
        _is_problem(answer, 400)
    payment = payment_request(metadata={"description": "x\x00y"})
    answer = operator.post(
        "/api/v1/payments/", json.dumps(payment), content_type="application/json", HTTP_IDEMPOTENCY_KEY="n2"
    )
    _is_problem(answer, 400)
    assert OutboxEvent.objects.count() == outbox_before
    assert not Payment.objects.filter(payment_id=payment["paymentId"]).exists()

    # An escaped backslash followed by "u0000" is text, not a NUL: accepted.
    fine = operator.post(
        "/api/v1/ledger/transactions/",
        b'{"kind": "topup", "toAccount": "user:x", "amount": "1.00", "currency": "USD",'
        b' "description": "C:\\\\u0000"}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="not-nul",
    )
    assert fine.status_code == 202


@pytest.mark.django_db
def test_an_oversized_body_is_413() -> None:
    client = token_client(make_api_user("c"))
    big = json.dumps({**payment_request(), "metadata": {"blob": "x" * (3 * 1024 * 1024)}})
    answer = client.post(
        "/api/v1/payments/", big, content_type="application/json", HTTP_IDEMPOTENCY_KEY="big"
    )
    assert _is_problem(answer, 413)["type"].endswith("too_large")


@pytest.mark.django_db
def test_a_client_writing_too_fast_gets_429_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WriteRateThrottle, "THROTTLE_RATES", {"writes": "3/min"})
    cache.clear()
    fast, other = token_client(make_api_user("fast")), token_client(make_api_user("other"))

    def request_payment(api: APIClient) -> object:
        return api.post(
            "/api/v1/payments/",
            json.dumps(payment_request()),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        )

    assert [request_payment(fast).status_code for _ in range(3)] == [202, 202, 202]
    throttled = request_payment(fast)
    _is_problem(throttled, 429)
    assert int(throttled["Retry-After"]) > 0
    assert fast.get("/api/v1/payments/").status_code == 200  # reads are not throttled
    assert request_payment(other).status_code == 202  # the limit is per client


def test_json_numbers_parse_as_decimals() -> None:
    from decimal import Decimal
    from io import BytesIO

    parsed = DecimalJSONParser().parse(BytesIO(b'{"amount": 12345678901234567.89}'))
    assert parsed["amount"] == Decimal("12345678901234567.89")


@override_settings(DEBUG=False)
def test_an_api_crash_is_a_problem_without_a_traceback() -> None:
    request = RequestFactory().get("/api/v1/payments/")
    answer = ProblemMiddleware(lambda r: None).process_exception(request, RuntimeError("secret row value"))
    assert answer is not None and answer.status_code == 500 and answer["Content-Type"] == PROBLEM
    assert b"secret row value" not in answer.content and b"Traceback" not in answer.content
    admin_request = RequestFactory().get("/admin/")
    assert ProblemMiddleware(lambda r: None).process_exception(admin_request, RuntimeError()) is None


def test_an_event_carrying_a_nul_is_dead_lettered_and_the_partition_moves_on(
    live: Stack, collector: Collector
) -> None:
    requested = topics.LEDGER_TRANSACTION_REQUESTED.name
    key = f"txn_{uuid.uuid4().hex[:10]}"
    poisoned = {
        "transactionId": key,
        "kind": "topup",
        "toAccount": "user:nul",
        "amount": "1.00",
        "currency": "USD",
        "description": "a\u0000b",
    }
    produce(live.bootstrap, requested, structured(requested, poisoned), key=key)
    after = {**poisoned, "transactionId": f"{key}-ok", "description": "fine"}
    value = structured(requested, after)
    produce(live.bootstrap, requested, value, key=key, headers=sign(requested, value))

    [dead] = collector.wait_for(topics.LEDGER_DLQ.name, lambda r: r.key == key.encode())
    assert dead.headers["dlq-reason"] == b"invalid_text"
    collector.wait_for(
        topics.LEDGER_BALANCE_UPDATED.name, lambda r: r.json()["data"]["transactionId"] == f"{key}-ok"
    )
    assert not Transaction.objects.filter(pk=key).exists()
