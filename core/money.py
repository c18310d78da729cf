"""Money as Decimal with an ISO 4217 currency: parsing, precision rules and formatting."""

from __future__ import annotations

import re
from decimal import Decimal
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


class MoneyFieldError(MoneyError):
    """A MoneyError about one field of a request (`loc`: its path, as the client named it), raised
    by a validator of the whole model so that the error is filed under that field, not the body."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def check_field_precision(loc: tuple[str | int, ...], amount: Decimal, currency: str) -> Decimal:
    """check_precision for the field at `loc` of a request: its error names the field."""
    try:
        return check_precision(amount, currency)
    except MoneyError as exc:
        raise MoneyFieldError(loc, str(exc)) from None


def minor_units(currency: str) -> int:
    return _MINOR_UNITS_EXCEPTIONS.get(currency, 2)


def parse_currency(value: Any) -> str:
    if not isinstance(value, str) or not CURRENCY_RE.match(value):
        raise MoneyError(f"currency must be an ISO 4217 alpha-3 code, got {value!r}")
    return value


# Amounts are stored as NUMERIC(20, 4): anything at or beyond 10^15 is not a real payment.
MAX_ABS_AMOUNT = Decimal(10) ** 15
# More decimal places than this is no currency's amount (the most any has is 4): refused before any
# arithmetic, so that `1e-999999999` never reaches a quantize.
MAX_DECIMAL_PLACES = 18

# A decimal number in ASCII only: Python's Decimal also reads fullwidth and other Unicode digits
# ("０.５" is 0.5), which nothing displaying the amount would show as the number it is.
_AMOUNT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_amount(value: Any) -> Decimal:
    """A JSON number (already a Decimal when parsed with parse_float=Decimal), int or string.

    Floats are refused: by the time a float exists its binary rounding has already happened.
    A string must be an ASCII decimal number; any amount must lie within the range a payment can
    have (below 10^15, at most MAX_DECIMAL_PLACES places), checked without decimal arithmetic so
    that an exponent such as `1e999999999` is a MoneyError, never an arithmetic trap.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f"amount must be a decimal number or string, got {type(value).__name__}")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        text = value.strip()
        if not _AMOUNT_RE.fullmatch(text):
            raise MoneyError(f"amount {_shown(value)} is not a decimal number (ASCII digits only)")
        amount = Decimal(text)
    else:
        raise MoneyError(f"amount must be a decimal number or string, got {type(value).__name__}")
    if not amount.is_finite():
        raise MoneyError(f"amount {_shown(value)} is not a finite number")
    _check_range(amount, value)
    return amount


def _check_range(amount: Decimal, shown: Any) -> None:
    # `adjusted()` and `as_tuple()` read the number's digits and exponent: no context, no trap.
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if (amount and amount.adjusted() >= MAX_ABS_AMOUNT.adjusted()) or exponent < -MAX_DECIMAL_PLACES:
        raise MoneyError(f"amount {_shown(shown)} is out of range")


def _shown(value: Any) -> str:
    """The offending input in a message, cut short (it may be megabytes of digits)."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_precision(amount: Decimal, currency: str) -> Decimal:
    """The amount quantized to the currency's minor unit; more decimals than it has is an error."""
    if not amount.is_finite():
        raise MoneyError(f"amount {_shown(amount)} is not a finite number")
    _check_range(amount, amount)
    exponent = minor_units(currency)
    quantum = Decimal(1).scaleb(-exponent)
    try:
        quantized = amount.quantize(quantum)
    except ArithmeticError:  # InvalidOperation: more digits than the context holds
        raise MoneyError(f"amount {_shown(amount)} is out of range") from None
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
