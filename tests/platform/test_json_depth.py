"""The nesting cap's measures, amount parsing's limits, and the codec's refusal of what they catch."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from bridge import codec
from bridge.codec import IncomingMessage, PoisonMessage
from core.json_depth import MAX_JSON_DEPTH, TooDeep, check_raw, check_value, raw_depth, value_depth
from core.money import MoneyError, check_precision, parse_amount


def nested(levels: int, *, leaf: str = "1", key: str = "a") -> str:
    """`levels` objects one inside the other (built as text: json.dumps itself would recurse)."""
    return f'{{"{key}":' * levels + leaf + "}" * levels


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[[[{{{"', 0),
        ("{}", 1),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ("[[], [], [[]]]", 3),
        # Brackets inside strings never count, escaped quotes do not end the string.
        ('{"a": "[[[[", "b": "\\"[[[[\\\\", "c": {}}', 2),
        ('{"a": "\\\\"}', 1),
        ('["\\u005b\\u005b", "]]]]", {"x": "}}}{{{"}]', 2),
        # Malformed: counted by the deepest prefix (what a recursive parser would reach).
        ('{"a": [[[', 4),
        ("]]]{", 0),
        # An unterminated string hides whatever follows it.
        ('[["abc [[[[[', 2),
    ],
)
def test_raw_depth_counts_brackets_outside_strings(text: str, depth: int) -> None:
    assert raw_depth(text) == depth
    assert raw_depth(text.encode()) == depth
    if _valid(text):
        assert value_depth(json.loads(text)) == depth


def _valid(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def test_the_cap_is_32_levels_the_outermost_being_the_first() -> None:
    check_raw(nested(MAX_JSON_DEPTH - 1, leaf="[]"))
    with pytest.raises(TooDeep):
        check_raw(nested(MAX_JSON_DEPTH, leaf="[]"))
    check_value(json.loads(nested(MAX_JSON_DEPTH)))
    with pytest.raises(TooDeep):
        check_value(json.loads(nested(MAX_JSON_DEPTH + 1)))


def test_depth_far_beyond_the_recursion_limit_is_measured_without_recursion() -> None:
    for text in (nested(200_000), "[" * 1_000_000, '{"a":' * 100_000 + "[" * 100_000):
        assert raw_depth(text) == MAX_JSON_DEPTH + 1
        assert raw_depth(text.encode()) == MAX_JSON_DEPTH + 1
    # A value built in memory, deeper than any parser would build it, and one that contains itself.
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(100_000):
        cursor["a"] = cursor = {}
    assert value_depth(deep) == MAX_JSON_DEPTH + 1
    loop: list[Any] = []
    loop.append(loop)
    assert value_depth(loop) == MAX_JSON_DEPTH + 1


def test_wide_json_is_not_deep() -> None:
    text = "[" + ",".join(["[]"] * 200_000) + "]"
    assert raw_depth(text) == 2


# --- the codec --------------------------------------------------------------------------------


def message(value: bytes, headers: list[tuple[str, bytes]] | None = None) -> IncomingMessage:
    return IncomingMessage(
        topic="payments.payment-requested",
        partition=0,
        offset=7,
        key=b"k",
        value=value,
        headers=headers or [],
    )


def structured_with_data(data: str) -> bytes:
    return (
        '{"specversion": "1.0", "id": "e1", "source": "/x", "type": "payments.payment-requested", "data": '
        + data
        + "}"
    ).encode()


@pytest.mark.parametrize("levels", [900, 50_000])
def test_a_deep_record_is_poison_never_a_recursion_error(levels: int) -> None:
    for value in (nested(levels).encode(), structured_with_data(nested(levels))):
        with pytest.raises(PoisonMessage) as caught:
            codec.decode(message(value))
        assert caught.value.reason == "invalid_json" and "nested more than 32 levels" in str(caught.value)


def test_the_cap_counts_within_data_whatever_the_form() -> None:
    at_cap, over = nested(MAX_JSON_DEPTH), nested(MAX_JSON_DEPTH + 1)
    assert codec.decode(message(structured_with_data(at_cap))).data["a"]
    assert codec.decode(message(at_cap.encode())).data["a"]
    binary = [("ce_specversion", b"1.0"), ("ce_id", b"e"), ("ce_source", b"/x"), ("ce_type", b"t")]
    assert codec.decode(message(at_cap.encode(), binary)).data["a"]
    for value, headers in (
        (structured_with_data(over), None),
        (over.encode(), None),
        (over.encode(), binary),
    ):
        with pytest.raises(PoisonMessage) as caught:
            codec.decode(message(value, headers))
        assert caught.value.reason == "invalid_json"


def test_any_surprise_while_decoding_is_poison(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a decoder bug")

    monkeypatch.setattr(codec, "_decode_structured", explode)
    with pytest.raises(PoisonMessage) as caught:
        codec.decode(message(structured_with_data("{}")))
    assert caught.value.reason == "invalid_json" and "ZeroDivisionError" in str(caught.value)

    monkeypatch.setattr(codec, "_decode_bare", lambda *a: (_ for _ in ()).throw(RecursionError()))
    with pytest.raises(PoisonMessage):
        codec.decode(message(b'{"a": 1}'))


# --- amounts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "０.５",
        "１０",
        "١٢",
        "12.５",
        "1e999999999",
        "-1e999999999",
        "1e-999999999",
        "1e15",
        "1_0",
        "0x10",
        "١e2",
    ],
)
def test_amounts_outside_ascii_digits_or_the_range_are_refused(raw: str) -> None:
    with pytest.raises(MoneyError):
        parse_amount(raw)


@pytest.mark.parametrize("raw", [Decimal("1e999999999"), Decimal("-1E+999999999"), Decimal("1e-999999999")])
def test_json_numbers_out_of_range_are_refused_before_any_arithmetic(raw: Decimal) -> None:
    with pytest.raises(MoneyError, match="out of range"):
        parse_amount(raw)
    with pytest.raises(MoneyError, match="out of range"):
        check_precision(raw, "USD")


@pytest.mark.parametrize(
    ("raw", "amount"),
    [("10.50", "10.50"), (" 3 ", "3"), ("1e2", "100"), (".5", "0.5"), ("-2", "-2"), (Decimal("1E+2"), "100")],
)
def test_ordinary_amounts_still_parse(raw: Any, amount: str) -> None:
    assert parse_amount(raw) == Decimal(amount)


# --- values set without the API parser or the codec ------------------------------------------


def test_the_producing_side_refuses_event_data_past_the_cap() -> None:
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(MAX_JSON_DEPTH):  # data itself is level 1: 33 levels in all
        cursor["a"] = cursor = {}
    event = codec.build_event(
        event_type="payments.payment-requested", domain="payments", subject="s", data=deep
    )
    with pytest.raises(codec.EventTooDeep, match="nested more than 32 levels"):
        codec.encode_event(event)
    codec.encode_event({**event, "data": deep["a"]})


@pytest.mark.django_db
def test_admin_json_fields_refuse_deep_text_as_a_form_error_not_a_500() -> None:
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    from core.admin_base import CappedJSONFormField
    from notifications.models import Template

    request = RequestFactory().get("/admin/")
    request.user = get_user_model().objects.create_superuser("json-depth-admin")
    form_class = admin.site._registry[Template].get_form(request)
    field = form_class.base_fields["sample_context"]
    assert isinstance(field, CappedJSONFormField)

    deep = nested(50_000)
    with pytest.raises(ValidationError, match="nested more than 32 levels"):
        field.clean(deep)
    assert field.bound_data(deep, None) == deep  # shown back as typed, never parsed
    assert field.clean(nested(MAX_JSON_DEPTH)) == json.loads(nested(MAX_JSON_DEPTH))
