"""Money as Decimal with an ISO 4217 currency: parsing, precision rules and formatting."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

# ISO 4217 minor units for currencies that do not use two decimals; every other code has 2.
_MINOR_UNITS_EXCEPTIONS: dict[str, int] = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    "CLF": 4,
    "UYW": 4,
}
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


class MoneyError(ValueError):
    """An amount or currency that is not well-formed money."""


def minor_units(currency: str) -> int:
    return _MINOR_UNITS_EXCEPTIONS.get(currency, 2)


def parse_currency(value: Any) -> str:
    if not isinstance(value, str) or not CURRENCY_RE.match(value):
        raise MoneyError(f"currency must be an ISO 4217 alpha-3 code, got {value!r}")
    return value


def parse_amount(value: Any) -> Decimal:
    """A JSON number (already a Decimal when parsed with parse_float=Decimal), int or string.

    Floats are refused: by the time a float exists its binary rounding has already happened.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f"amount must be a decimal number or string, got {type(value).__name__}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise MoneyError(f"amount {value!r} is not a decimal number") from None
    else:
        raise MoneyError(f"amount must be a decimal number or string, got {type(value).__name__}")
    if not amount.is_finite():
        raise MoneyError(f"amount {value!r} is not a finite number")
    return amount


# Amounts are stored as NUMERIC(20, 4): anything at or beyond 10^15 is not a real payment.
MAX_ABS_AMOUNT = Decimal(10) ** 15


def check_precision(amount: Decimal, currency: str) -> Decimal:
    """The amount quantized to the currency's minor unit; more decimals than it has is an error."""
    if abs(amount) >= MAX_ABS_AMOUNT:
        raise MoneyError(f"amount {amount} is out of range")
    exponent = minor_units(currency)
    quantum = Decimal(1).scaleb(-exponent)
    quantized = amount.quantize(quantum)
    if quantized != amount:
        raise MoneyError(f"amount {amount} has more decimal places than {currency} allows ({exponent})")
    return quantized


def format_amount(amount: Decimal) -> str:
    """The decimal string the platform emits ("99.99"), never an exponent form."""
    return f"{amount:f}"


def format_money(amount: Decimal, currency: str) -> str:
    """An amount as the platform emits it for `currency`: "59.99", not the database's "59.9900"."""
    return format_amount(Decimal(amount).quantize(Decimal(1).scaleb(-minor_units(currency))))


Amount = Annotated[
    Decimal,
    BeforeValidator(parse_amount),
    PlainSerializer(format_amount, return_type=str, when_used="always"),
]
Currency = Annotated[str, BeforeValidator(parse_currency)]
