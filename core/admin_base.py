"""Admin building blocks every app uses: read-only pages and money shown as the currency has it."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from core.money import format_money


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


class ActionsOnlyAdmin(admin.ModelAdmin):
    """Rows changed only through admin actions (which call services): every field read-only and
    no save buttons on the change page, though the user holds the change permission."""

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

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Nothing to save: every field is read-only (a crafted POST changes nothing)."""


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
