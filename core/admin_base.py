"""Admin building blocks every app uses: read-only pages, money shown as the currency has it, and
JSON fields held to the platform's nesting cap."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import options as admin_options
from django.core.exceptions import ValidationError
from django.db import models
from django.http import HttpRequest

from core import json_depth
from core.admin_display import ChangedByActionsAdmin
from core.money import format_money


class CappedJSONFormField(forms.JSONField):
    """Django's JSON form field, refusing text nested deeper than MAX_JSON_DEPTH before parsing it:
    Django's own catches only JSONDecodeError, so a deep value would be a RecursionError (a 500)
    here, and again wherever the stored value is read."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and not self.disabled and self._too_deep(value):
            raise ValidationError(
                f"JSON nested more than {json_depth.MAX_JSON_DEPTH} levels deep is refused.", code="too_deep"
            )
        return super().to_python(value)

    def bound_data(self, data: Any, initial: Any) -> Any:
        if isinstance(data, str) and not self.disabled and self._too_deep(data):
            return forms.fields.InvalidJSONInput(data)  # shown back as typed, never parsed
        return super().bound_data(data, initial)

    @staticmethod
    def _too_deep(text: str) -> bool:
        return json_depth.raw_depth(text) > json_depth.MAX_JSON_DEPTH


def cap_json_in_admin() -> None:
    """Every ModelAdmin's JSONField gets CappedJSONFormField (before the admins are registered)."""
    admin_options.FORMFIELD_FOR_DBFIELD_DEFAULTS[models.JSONField] = {"form_class": CappedJSONFormField}


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows nobody edits here (records, logs): view only; changes happen through services."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ActionsOnlyAdmin(ChangedByActionsAdmin):
    """Rows changed only through admin actions (which call services), never added or deleted
    here: every field read-only, and the page of one row view-only (ChangedByActionsAdmin)."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    # Columns computed for display (e.g. `money(...)` ones) shown on the change page too, in place
    # of the raw fields named in `exclude`.
    shown_fields: tuple[str, ...] = ()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        hidden = set(self.exclude or ())
        return [f.name for f in self.model._meta.fields if f.name not in hidden] + list(self.shown_fields)


def money(
    field: str, *, currency_field: str = "currency", label: str | None = None
) -> Callable[[Any, Any], str]:
    """A column showing `field` with its currency's decimals ("99.99", JPY "3000"), for a
    ModelAdmin or inline class body: `amount_shown = money("amount")`."""

    @admin.display(description=label or field.replace("_", " "), ordering=field)
    def shown(model_admin: Any, obj: Any) -> str:
        amount = getattr(obj, field)
        return "" if amount is None else format_money(Decimal(amount), getattr(obj, currency_field))

    shown.__name__ = f"{field}_shown"
    return shown
