"""The admin pages an operator reads all day: what they look for first, times to the second, JSON
pretty-printed (and escaped), bytes decoded once, related tables only when they have rows, and no
save buttons on pages nobody edits."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from html import escape

import pytest
from django.test import Client
from django.utils import timezone as django_timezone

from bridge.models import DeadLetter
from core import admin_display
from core.roles import OPERATORS
from orders.models import Order, OrderStatus
from payments.models import Payment, PaymentStatus, PaymentTransition, Refund, SagaStep
from tests.support.builders import stored_payment
from tests.support.users import make_api_user

pytestmark = pytest.mark.django_db

AT = datetime(2026, 12, 6, 15, 7, 3, tzinfo=UTC)


def _operator() -> Client:
    user = make_api_user("olga", role=OPERATORS)
    user.is_staff = True  # opens the admin; what it may do there comes from its group
    user.save()
    browser = Client()
    browser.force_login(user)
    return browser


def _outside_folds(page: str) -> str:
    """The page without its <details> folds (the raw forms an operator opens on purpose)."""
    return re.sub(r"<details.*?</details>", "", page, flags=re.DOTALL)


def _payment(**fields: object) -> Payment:
    payment = stored_payment(amount=Decimal("42.50"), currency="USD", user_id="cust_ada", **fields)
    # Four transitions within one minute: to the minute, all four read the same.
    for second, (before, after) in enumerate(
        [("", "requested"), ("requested", "processing"), ("processing", "captured")]
    ):
        transition = PaymentTransition.objects.create(
            payment=payment, from_status=before, to_status=after, actor="system:test"
        )
        PaymentTransition.objects.filter(pk=transition.pk).update(created_at=AT + timedelta(seconds=second))
    Payment.objects.filter(pk=payment.pk).update(created_at=AT)
    return payment


def _dead_letter(value: bytes, *, key: bytes | None = b"demo_f43878ed00") -> DeadLetter:
    return DeadLetter.objects.create(
        dlq_topic="payments.dlq",
        original_topic="payments.payment-requested",
        original_partition=5,
        original_offset=0,
        key=key,
        value=value,
        headers=[["ce_type", "cGF5bWVudHMucGF5bWVudC1yZXF1ZXN0ZWQ="]],
        reason="schema_violation",
        error="amount 10.001 has more decimal places than USD allows",
        failed_at=AT,
    )


# The shared display helpers


def test_times_are_shown_to_the_second_in_utc_whatever_zone_they_carry() -> None:
    plus_two = AT.astimezone(timezone(timedelta(hours=2)))
    assert admin_display.utc_seconds(plus_two) == "2026-12-06 15:07:03 UTC"
    assert admin_display.utc_seconds(None) == "-"


def test_json_is_pretty_printed_sorted_folded_and_escaped() -> None:
    shown = str(admin_display.pretty_json({"b": 1, "a": {"note": "<script>alert(1)</script>"}}))
    assert shown.startswith("<details") and "<summary" in shown
    assert escape('{\n  "a": {\n    "note": "<script>alert(1)</script>"\n  },\n  "b": 1\n}') in shown
    assert "<script>" not in shown


def test_bytes_are_decoded_once_with_the_raw_form_folded() -> None:
    shown = str(admin_display.decoded_bytes(b'{"amount":"10.001","note":"<b>"}'))
    outside = _outside_folds(shown)
    assert escape('"amount": "10.001"') in outside and "&lt;b&gt;" in outside and "<b>" not in shown
    assert "b'" not in shown and "b&#x27;" not in shown
    assert "raw bytes (32)" in shown and "7b 22 61 6d" in shown  # the hex of '{"am'


def test_bytes_that_are_not_utf8_are_shown_with_a_note_and_their_hex() -> None:
    shown = str(admin_display.decoded_bytes(b"\xff\xfeok"))
    assert "not valid UTF-8" in shown and "ff fe 6f 6b" in shown


def test_json_nested_past_the_cap_is_shown_as_text_not_parsed() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    shown = str(admin_display.decoded_bytes(deep, limit=20_000))
    assert "[[[[" in shown  # as it came: parsing it would have been a RecursionError


# The payment page


def test_the_payment_page_starts_with_status_amount_customer_and_times_to_the_second() -> None:
    payment = _payment()
    page = _operator().get(f"/admin/payments/payment/{payment.pk}/change/").content.decode()
    labels = re.findall(r"<label>([^<]+):</label>", page)
    assert labels[:6] == ["Payment id", "Status", "Amount", "Currency", "Refunded", "Customer"]
    assert labels.index("Created") < labels.index("Request") < labels.index("Correlation id")
    assert "cust_ada" in page and "42.50" in page
    assert "2026-12-06 15:07:03 UTC" in page  # created
    for second in ("03", "04", "05"):  # each transition its own time
        assert f"2026-12-06 15:07:{second} UTC" in page
    assert "p.m." not in page


def test_the_request_is_pretty_printed_folded_and_escaped() -> None:
    request = {"paymentId": "p1", "metadata": {"note": "<img src=x onerror=alert(1)>"}, "amount": "42.50"}
    payment = _payment(request=request)
    page = _operator().get(f"/admin/payments/payment/{payment.pk}/change/").content.decode()
    assert "<details><summary" in page
    assert (
        escape('{\n  "amount": "42.50",\n  "metadata": {\n    "note": "<img src=x onerror=alert(1)>"') in page
    )
    assert "<img src=x" not in page


def test_related_tables_show_only_when_the_payment_has_rows_in_them() -> None:
    payment = _payment()
    browser = _operator()
    page = browser.get(f"/admin/payments/payment/{payment.pk}/change/").content.decode()
    assert 'id="transitions-group"' in page
    assert 'id="saga_steps-group"' not in page and 'id="refunds-group"' not in page

    SagaStep.objects.create(payment=payment, step="reserve_stock", status="done")
    Refund.objects.create(refund_id="re_adm_1", payment=payment, amount=Decimal("10.00"), requested_by="ops")
    page = browser.get(f"/admin/payments/payment/{payment.pk}/change/").content.decode()
    assert 'id="saga_steps-group"' in page and "reserve_stock" in page
    assert 'id="refunds-group"' in page and "re_adm_1" in page


def test_a_failed_payment_shows_its_failure_and_a_captured_one_does_not() -> None:
    failed = _payment(status=PaymentStatus.FAILED, failure_reason="card_declined", failure_message="Declined")
    captured = _payment()
    browser = _operator()
    assert ">Failure</h2>" in browser.get(f"/admin/payments/payment/{failed.pk}/change/").content.decode()
    assert (
        ">Failure</h2>" not in browser.get(f"/admin/payments/payment/{captured.pk}/change/").content.decode()
    )


# The payments list


def test_the_payments_list_has_five_columns_key_ones_first() -> None:
    _payment(
        status=PaymentStatus.FAILED, failure_reason="card_declined", payment_id="pay_adm_list_" + "x" * 27
    )
    page = _operator().get("/admin/payments/payment/").content.decode()
    headers = re.findall(r'<th scope="col" class="(?:sortable )?column-([a-z_]+)', page)
    assert headers == ["payment", "amount_listed", "status_listed", "customer", "created"]
    assert "42.50\xa0USD" in page  # amount and currency in one column that does not wrap
    assert "Failed: card_declined" in page  # the failure reason beside the status
    assert "2026-12-06 15:07:03 UTC" in page
    # A 40-character id may wrap in its column; copied, it is the same id.
    assert "pay_adm_list<wbr>_xxxxxxxxxxx<wbr>" in page


# The dead-letter page


def test_the_dead_letter_page_shows_key_and_value_decoded_once_and_no_save_buttons() -> None:
    value = json.dumps({"paymentId": "demo_f43878ed00", "amount": "10.001"}).encode()
    dead = _dead_letter(value)
    page = _operator().get(f"/admin/bridge/deadletter/{dead.pk}/change/").content.decode()
    assert "b&#x27;demo" not in page and "b'demo" not in page
    outside = _outside_folds(page)
    assert outside.count(escape('"amount": "10.001"')) == 1
    assert outside.count(escape('"paymentId": "demo_f43878ed00"')) == 1
    assert "raw bytes (15)" in page and f"raw bytes ({len(value)})" in page
    assert "ce_type: payments.payment-requested" in page  # headers decoded
    assert "2026-12-06 15:07:03 UTC" in page
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert "Close" in page


def test_the_dead_letter_page_refuses_a_post_and_the_replay_action_stays() -> None:
    dead = _dead_letter(b"not json")
    browser = _operator()
    response = browser.post(f"/admin/bridge/deadletter/{dead.pk}/change/", {"reason": "edited"})
    assert response.status_code == 403
    assert DeadLetter.objects.get(pk=dead.pk).reason == "schema_violation"
    assert "replay_selected" in browser.get("/admin/bridge/deadletter/").content.decode()


# Orders


def test_an_order_page_is_view_only_with_no_empty_tables() -> None:
    order = Order.objects.create(
        order_id="ord_adm_1",
        user_id="cust_ada",
        merchant_id="m1",
        currency="USD",
        total=Decimal("25.00"),
        status=OrderStatus.PENDING,
        payment_id="ordpay_adm_1",
        request={"orderId": "ord_adm_1"},
    )
    Order.objects.filter(pk=order.pk).update(created_at=django_timezone.now().replace(microsecond=0))
    page = _operator().get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert 'name="_save"' not in page and "Close" in page
    labels = re.findall(r"<label>([^<]+):</label>", page)
    assert labels[:5] == ["Order id", "Status", "Total", "Currency", "Customer"]
    for related in ("lines", "transitions", "reservations", "saga_steps"):
        assert f'id="{related}-group"' not in page
    assert " UTC" in page
