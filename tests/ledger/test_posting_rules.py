"""What each kind posts, and which requests are refused (with which reason) or not understood."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from ledger.events import TransactionRequested
from ledger.postings import Leg, checked, from_request
from tests.ledger.support import posting, transaction_request, transfer_request


def legs(data: dict) -> list[tuple[str, str, str, Decimal]]:
    return [(leg.account_id, leg.currency, leg.direction, leg.amount) for leg in checked(posting(data)).legs]


def refusal(data: dict) -> str:
    from ledger.postings import LedgerRefused

    with pytest.raises(LedgerRefused) as info:
        checked(posting(data))
    return info.value.reason


def test_each_kind_debits_from_and_credits_to_in_lock_order() -> None:
    assert legs(transaction_request("topup", toAccount="user:a", amount="10", currency="USD")) == [
        ("external:bank", "USD", "debit", Decimal("10")),
        ("user:a", "USD", "credit", Decimal("10")),
    ]
    assert legs(transaction_request("withdrawal", fromAccount="user:a", amount="5.5", currency="EUR")) == [
        ("external:bank", "EUR", "credit", Decimal("5.50")),
        ("user:a", "EUR", "debit", Decimal("5.50")),
    ]
    assert legs(transfer_request("user:z", "user:b", "1")) == [
        ("user:b", "USD", "credit", Decimal("1")),
        ("user:z", "USD", "debit", Decimal("1")),
    ]
    assert legs(
        transaction_request(
            "refund", fromAccount="merchant:m", toAccount="external:psp", amount="3", currency="USD"
        )
    ) == [("external:psp", "USD", "credit", Decimal("3")), ("merchant:m", "USD", "debit", Decimal("3"))]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (transfer_request("user:a", "user:b", "0"), "validation_error"),
        (transfer_request("user:a", "user:b", "-5"), "validation_error"),
        (transfer_request("user:a", "user:b", "5", currency="XAU"), "validation_error"),
        (transfer_request("user:a", "user:a", "5"), "validation_error"),
        (transfer_request("bogus:a", "user:b", "5"), "invalid_account"),
        (transfer_request("user:a", "external:bank", "5"), "invalid_account"),
        (
            transaction_request(
                "topup", fromAccount="user:x", toAccount="user:a", amount="5", currency="USD"
            ),
            "invalid_account",
        ),
        (
            transaction_request(
                "journal",
                currency="USD",
                entries=[
                    {"account": "user:a", "direction": "debit", "amount": "10"},
                    {"account": "user:b", "direction": "credit", "amount": "9"},
                ],
            ),
            "unbalanced",
        ),
        (
            transaction_request(
                "journal",
                currency="USD",
                entries=[{"account": "user:a", "direction": "debit", "amount": "10"}],
            ),
            "unbalanced",
        ),
        (
            # Balanced in total, not per currency.
            transaction_request(
                "journal",
                metadata={"fxRate": "1"},
                entries=[
                    {"account": "external:fx", "direction": "debit", "amount": "10", "currency": "USD"},
                    {"account": "external:fx", "direction": "credit", "amount": "10", "currency": "EUR"},
                ],
            ),
            "unbalanced",
        ),
    ],
)
def test_refused_requests_and_their_reasons(data: dict, reason: str, settings) -> None:
    assert refusal(data) == reason


def fx_journal(**metadata: object) -> dict:
    return transaction_request(
        "journal",
        metadata=metadata,
        entries=[
            {"account": "user:a", "direction": "debit", "amount": "100.00", "currency": "USD"},
            {"account": "external:fx", "direction": "credit", "amount": "100.00", "currency": "USD"},
            {"account": "external:fx", "direction": "debit", "amount": "92.00", "currency": "EUR"},
            {"account": "user:a", "direction": "credit", "amount": "92.00", "currency": "EUR"},
        ],
    )


def test_fx_journal_needs_a_recorded_rate_and_the_fx_account() -> None:
    assert len(legs(fx_journal(fxRate="0.92"))) == 4
    assert refusal(fx_journal()) == "validation_error"
    assert refusal(fx_journal(fxRate="-1")) == "validation_error"
    assert refusal(fx_journal(fxRate="abc")) == "validation_error"
    no_fx = fx_journal(fxRate="0.92")
    for leg in no_fx["entries"]:
        leg["account"] = leg["account"].replace("external:fx", "external:bank")
    assert refusal(no_fx) == "validation_error"


@pytest.mark.parametrize(
    "data",
    [
        transaction_request("transfer", fromAccount="user:a", amount="5", currency="USD"),  # no toAccount
        transaction_request("topup", toAccount="user:a", currency="USD"),  # no amount
        transfer_request("user:a", "user:b", "10.001"),  # more decimals than USD has
        transfer_request("user:a", "user:b", "abc"),
        transaction_request("journal", currency="USD"),  # no entries
        transaction_request("journal", entries=[{"account": "user:a", "direction": "debit", "amount": "1"}]),
        transaction_request("payment", toAccount="user:a", amount="1", currency="USD"),  # not requestable
        transaction_request("loan", toAccount="user:a", amount="1", currency="USD"),
    ],
)
def test_malformed_requests_are_not_understood(data: dict) -> None:
    with pytest.raises(ValidationError):
        TransactionRequested.model_validate(data)


def test_reversed_leg_flips_direction() -> None:
    leg = Leg("user:a", "USD", "debit", Decimal("1"))
    assert leg.reversed().direction == "credit" and leg.reversed().reversed() == leg
    assert (
        from_request(TransactionRequested.model_validate(transfer_request("user:a", "user:b", "1"))).kind
        == "transfer"
    )
