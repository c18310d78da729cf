"""Event schemas: what counts as a breaking change, and the committed schemas match the models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pydantic import BaseModel, ConfigDict, Field

from bridge import routing, schemas
from bridge.management.commands.event_schemas import BREAKING, STALE, default_dir
from payments.events import PaymentRequested

TYPE = "payments.payment-example"


class Method(BaseModel):
    type: str
    token: str | None = None


class Leg(BaseModel):
    account: str
    amount: str


class V1(BaseModel):
    model_config = ConfigDict(extra="allow")

    paymentId: str  # noqa: N815 - wire names, as in the events modules
    amount: str
    method: str | Method
    channel: Literal["email", "sms"]
    legs: list[Leg] = Field(default_factory=list)
    note: str | None = None


def changes(new: type[BaseModel], old: type[BaseModel] = V1) -> list[schemas.Change]:
    return schemas.compare_schema(TYPE, schemas.schema_for(TYPE, old), schemas.schema_for(TYPE, new))


def breaking(new: type[BaseModel], old: type[BaseModel] = V1) -> list[str]:
    return [str(c) for c in changes(new, old) if c.breaking]


def test_the_same_model_has_no_changes() -> None:
    assert changes(V1) == []


def test_a_removed_field_breaks() -> None:
    class NoNote(BaseModel):
        paymentId: str  # noqa: N815
        amount: str
        method: str | Method
        channel: Literal["email", "sms"]
        legs: list[Leg] = Field(default_factory=list)

    assert breaking(NoNote) == [f"{TYPE}: field 'note' removed"]


def test_a_renamed_field_breaks_as_a_removal() -> None:
    class Renamed(BaseModel):
        paymentId: str  # noqa: N815
        amount: str
        method: str | Method
        channel: Literal["email", "sms"]
        legs: list[Leg] = Field(default_factory=list)
        comment: str | None = None

    assert breaking(Renamed) == [
        f"{TYPE}: field 'note' removed (renamed to 'comment'? a rename is a removal)"
    ]


def test_a_retyped_field_breaks_at_any_depth() -> None:
    class AmountNumber(V1):
        amount: float  # type: ignore[assignment]

    class LegAmountNumber(Leg):
        amount: int  # type: ignore[assignment]

    class NestedRetyped(V1):
        legs: list[LegAmountNumber] = Field(default_factory=list)  # type: ignore[assignment]

    assert breaking(AmountNumber) == [f"{TYPE}: field 'amount' retyped from string to number"]
    assert breaking(NestedRetyped) == [f"{TYPE}: field 'legs[].amount' retyped from string to integer"]


def test_an_optional_field_made_required_breaks() -> None:
    class NoteRequired(V1):
        note: str  # type: ignore[assignment]

    class TokenRequired(Method):
        token: str  # type: ignore[assignment]

    class MethodTokenRequired(V1):
        method: str | TokenRequired  # type: ignore[assignment]

    # str | None -> str is also a retype (null no longer allowed); both are reported.
    assert f"{TYPE}: field 'note' made required (it was optional)" in breaking(NoteRequired)
    assert breaking(MethodTokenRequired) == [
        f"{TYPE}: field 'method.token' made required (it was optional)",
        f"{TYPE}: field 'method.token' retyped from null | string to string",
    ]


def test_a_new_required_field_or_a_dropped_enum_value_breaks() -> None:
    class WithCurrency(V1):
        currency: str

    class EmailOnly(V1):
        channel: Literal["email"]  # type: ignore[assignment]

    assert breaking(WithCurrency) == [
        f"{TYPE}: field 'currency' added as required (old producers do not send it)"
    ]
    assert breaking(EmailOnly) == [f"{TYPE}: field 'channel' no longer allows 'sms'"]


def test_a_new_optional_field_or_enum_value_is_compatible_but_reported() -> None:
    class WithLocale(V1):
        locale: str | None = None

    class WithPush(V1):
        channel: Literal["email", "sms", "push"]  # type: ignore[assignment]

    assert breaking(WithLocale) == []
    assert [str(c) for c in changes(WithLocale)] == [f"{TYPE}: field 'locale' added (optional)"]
    assert breaking(WithPush) == []
    assert [str(c) for c in changes(WithPush)] == [f"{TYPE}: field 'channel' now allows 'push'"]


def test_a_vanished_event_type_breaks_and_a_new_one_does_not() -> None:
    schema = schemas.schema_for(TYPE, V1)
    result = schemas.compare_catalog({TYPE: schema}, {"payments.other": schema})
    assert [(str(c), c.breaking) for c in result] == [
        (f"{TYPE}: event type removed (no model defines it any more)", True),
        ("payments.other: event type added", False),
    ]


# --- the catalog and the committed files ------------------------------------------------------


def test_every_routed_type_and_the_emitted_ones_have_a_schema() -> None:
    from django.apps import apps

    models = schemas.event_models(app.name for app in apps.get_app_configs())
    for event_type, route in routing.routes().items():
        assert models[event_type] is route.schema
    assert models["audit.payment-events"] is routing.family_routes()["audit.*"].schema
    assert {
        "notifications.notification-sent",
        "audit.compliance-alerts",
        "audit.checkpoints",
        "ledger.balance-updated",
    } <= set(models)
    # A new topic fails here until its app declares the model in EMITTED_EVENTS or a route.
    assert schemas.topics_without_schema(models) == []


def test_an_app_declares_what_it_emits_in_its_events_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "shipping"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "events.py").write_text(
        "from pydantic import BaseModel\n"
        "class Shipped(BaseModel):\n    orderId: str\n"
        "EMITTED_EVENTS = {'shipping.order-shipped': Shipped}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    models = schemas.event_models(["shipping", "payments"])

    assert models["shipping.order-shipped"].__name__ == "Shipped"
    assert models["payments.payment-requested"] is PaymentRequested


def test_the_committed_schemas_match_the_models() -> None:
    """What `make test` runs: the tree's schemas/events/ agrees with the models exactly."""
    call_command("event_schemas", "--check")


def committed_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "events"
    shutil.copytree(default_dir(), copy)
    return copy


def edit(directory: Path, event_type: str, change: Any) -> None:
    path = directory / f"{event_type}.json"
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema))


def test_check_fails_naming_the_type_and_field_when_a_model_dropped_a_field(tmp_path: Path) -> None:
    directory = committed_copy(tmp_path)
    # As if the committed schema had a field the model no longer has.
    edit(
        directory,
        "payments.payment-requested",
        lambda s: s["properties"].update(legacyRef={"type": "string"}),
    )

    with pytest.raises(CommandError) as raised:
        call_command("event_schemas", "--check", "--dir", str(directory))

    assert raised.value.returncode == BREAKING
    assert "payments.payment-requested: field 'legacyRef' removed" in str(raised.value)


def test_check_fails_when_a_model_made_a_field_required(tmp_path: Path) -> None:
    directory = committed_copy(tmp_path)
    edit(directory, "notifications.notification-sent", lambda s: s["required"].remove("attempts"))

    with pytest.raises(CommandError) as raised:
        call_command("event_schemas", "--check", "--dir", str(directory))

    assert raised.value.returncode == BREAKING
    assert "notifications.notification-sent: field 'attempts' made required" in str(raised.value)


def test_check_asks_to_regenerate_on_a_compatible_change_and_writing_settles_it(tmp_path: Path) -> None:
    directory = committed_copy(tmp_path)
    # As if the model gained an optional field after the files were committed.
    edit(directory, "payments.payment-requested", lambda s: s["properties"].pop("timestamp"))
    (directory / "ledger.transaction-requested.json").unlink()

    with pytest.raises(CommandError) as raised:
        call_command("event_schemas", "--check", "--dir", str(directory))
    assert raised.value.returncode == STALE
    assert "payments.payment-requested: field 'timestamp' added (optional)" in str(raised.value)
    assert "ledger.transaction-requested: event type added" in str(raised.value)

    call_command("event_schemas", "--dir", str(directory))
    call_command("event_schemas", "--check", "--dir", str(directory))
    assert (directory / "ledger.transaction-requested.json").read_text() == (
        default_dir() / "ledger.transaction-requested.json"
    ).read_text()
