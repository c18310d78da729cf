"""The payments admin as operators and auditors see it: money in the currency's decimals, no save
buttons on pages nobody edits, and the refund action only for those who may refund (the page of one
payment: tests/ops/test_admin_pages.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from core.admin_display import utc_seconds
from core.roles import AUDITORS, OPERATORS
from payments.models import Payment, Refund
from tests.support.builders import stored_payment
from tests.support.users import make_api_user


def _browser(role: str) -> Client:
    user = make_api_user(role, role=role)
    user.is_staff = True  # opens the admin; what it may do there comes from its group
    user.save()
    browser = Client()
    browser.force_login(user)
    return browser


def _payment(payment_id: str, amount: str, currency: str) -> Payment:
    return stored_payment(payment_id=payment_id, amount=Decimal(amount), currency=currency)


@pytest.mark.django_db
def test_money_is_shown_with_the_currencys_decimals_and_no_save_button() -> None:
    _payment("pay_adm_usd", "99.99", "USD")
    jpy = _payment("pay_adm_jpy", "3000", "JPY")
    operator = _browser(OPERATORS)

    listing = operator.get("/admin/payments/payment/").content.decode()
    assert "99.99" in listing and "99.9900" not in listing
    assert "3000" in listing and "3000.0000" not in listing

    page = operator.get(f"/admin/payments/payment/{jpy.pk}/change/").content.decode()
    assert "3000.0000" not in page and "3000" in page
    assert 'name="_save"' not in page and 'name="_continue"' not in page


@pytest.mark.django_db
def test_an_auditor_cannot_refund_from_the_admin() -> None:
    payment = _payment("pay_adm_audit", "10.00", "USD")
    auditor = _browser(AUDITORS)
    listing = auditor.get("/admin/payments/payment/").content.decode()
    assert "refund_in_full" not in listing
    auditor.post(
        "/admin/payments/payment/",
        {"action": "refund_in_full", "_selected_action": [payment.pk]},
    )
    assert not Refund.objects.filter(payment=payment).exists()
    assert "refund_in_full" in _browser(OPERATORS).get("/admin/payments/payment/").content.decode()


@pytest.mark.django_db
def test_a_refund_has_a_view_only_page_with_its_amount_currency_and_times() -> None:
    payment = _payment("pay_adm_refund", "3000", "JPY")
    refund = Refund.objects.create(
        refund_id="re_adm_jpy", payment=payment, amount=Decimal("1200"), requested_by="user:olga"
    )
    operator = _browser(OPERATORS)
    listing = operator.get("/admin/payments/refund/").content.decode()
    assert "re_adm_jpy" in listing and "1200\xa0JPY" in listing
    page = operator.get(f"/admin/payments/refund/{refund.pk}/change/").content.decode()
    assert "1200\xa0JPY" in page and utc_seconds(refund.created_at) in page
    assert 'name="_save"' not in page and "Close" in page
