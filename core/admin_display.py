"""How admin pages show what operators read: times to the second, JSON pretty-printed and folded,
bytes decoded once (the raw form folded beside), related tables only when they have rows, and the
page of one row view-only where rows change through actions.

The columns are factories for a ModelAdmin or inline class body, like `core.admin_base.money`:
`created = at_second("created_at", label="created")`, then name `"created"` in `list_display`,
`fields` or `readonly_fields`. Everything shown goes through `format_html`, which escapes it.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from core import json_depth
from core.money import format_money

EMPTY = "-"
# Bytes decoded on a page at most (a dead letter's value may be megabytes).
BYTES_SHOWN = 20_000
# Characters of pretty-printed JSON shown at most.
JSON_SHOWN = 100_000
# Characters of the one-line JSON shown before the fold is opened.
JSON_PREVIEW = 90
# Inline styles: long lines wrap inside the page's column instead of widening it.
PRE = '<pre style="white-space:pre-wrap;overflow-wrap:anywhere;margin:4px 0">{}</pre>'
FOLD = '<details{}><summary style="cursor:pointer">{}</summary>' + PRE + "</details>"


def utc_seconds(value: datetime.datetime | None) -> str:
    """`2026-12-06 05:17:03 UTC`: four transitions within a minute read as four different times."""
    if value is None:
        return EMPTY
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def at_second(field: str, *, label: str | None = None) -> Callable[[Any, Any], str]:
    """A column showing the datetime `field` to the second, in UTC, sorted by the field."""

    @admin.display(description=label or field.replace("_", " "), ordering=field)
    def shown(model_admin: Any, obj: Any) -> str:
        return utc_seconds(getattr(obj, field))

    shown.__name__ = f"{field}_at_second"
    return shown


def amount_in(
    field: str, *, currency_field: str = "currency", label: str | None = None
) -> Callable[[Any, Any], str]:
    """A column showing `field` with its currency's decimals and the currency: "42.50 USD" (one
    narrow column where a list had two)."""

    @admin.display(description=label or field.replace("_", " "), ordering=field)
    def shown(model_admin: Any, obj: Any) -> str:
        amount, currency = getattr(obj, field), getattr(obj, currency_field)
        # A no-break space: the column may be narrow, "42.50" and "USD" stay on one line.
        return EMPTY if amount is None else f"{format_money(Decimal(amount), currency)}\u00a0{currency}"

    shown.__name__ = f"{field}_in_currency"
    return shown


def breakable(text: str, *, every: int = 12) -> SafeString:
    """`text` allowed to wrap every `every` characters (<wbr>, copied as nothing): a 40-character
    id no longer holds a list column 300 px wide."""
    chunks = [(text[i : i + every],) for i in range(0, len(text), every)]
    return format_html_join(mark_safe("<wbr>"), "{}", chunks)  # noqa: S308 - a constant tag


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}\n… ({len(text) - limit} more characters)"


def pretty_json(value: Any, *, folded: bool = True) -> SafeString | str:
    """JSON indented with sorted keys in a <details> whose summary is its first characters."""
    if value is None or value == "":
        return EMPTY
    line = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    if not value or len(line) <= JSON_PREVIEW and not isinstance(value, (dict, list)):
        return format_html("<code>{}</code>", line)
    preview = line if len(line) <= JSON_PREVIEW else f"{line[: JSON_PREVIEW - 1]}…"
    pretty = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html(FOLD, "" if folded else " open", preview, _clip(pretty, JSON_SHOWN))


def json_shown(field: str, *, label: str | None = None, folded: bool = True) -> Callable[[Any, Any], Any]:
    """A read-only field showing the JSON `field` pretty-printed (see `pretty_json`)."""

    @admin.display(description=label or field.replace("_", " "))
    def shown(model_admin: Any, obj: Any) -> SafeString | str:
        return pretty_json(getattr(obj, field), folded=folded)

    shown.__name__ = f"{field}_json"
    return shown


def _hex_dump(data: bytes) -> str:
    """Offset, hex and printable ASCII, 16 bytes a line (as `xxd` shows them)."""
    lines = []
    for start in range(0, len(data), 16):
        chunk = data[start : start + 16]
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:08x}  {chunk.hex(' '):<47}  {ascii_}")
    return "\n".join(lines)


def _as_text(data: bytes) -> tuple[str, bool]:
    """The bytes as text (pretty-printed when they are JSON) and whether they were valid UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), False
    # Parsing text nested past the platform's cap would be a RecursionError: shown as it came.
    if text[:1] in ("{", "[") and json_depth.raw_depth(text) <= json_depth.MAX_JSON_DEPTH:
        try:
            text = json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
        except ValueError:
            pass  # not JSON after all: the text as it is
    return text, True


def decoded_bytes(raw: bytes | memoryview | None, *, limit: int = BYTES_SHOWN) -> SafeString | str:
    """Bytes decoded once (UTF-8; JSON pretty-printed), with their raw form folded beneath."""
    if raw is None:
        return EMPTY
    whole = bytes(raw)
    data = whole[:limit]
    text, utf8 = _as_text(data)
    notes = []
    if not utf8:
        notes.append("not valid UTF-8: undecodable bytes shown as \ufffd")
    if len(whole) > limit:
        notes.append(f"first {limit} of {len(whole)} bytes")
    note = format_html('<p class="help">{}</p>', "; ".join(notes)) if notes else ""
    raw_summary = f"raw bytes ({len(whole)})"
    return format_html(PRE + "{}" + FOLD, text, note, "", raw_summary, _hex_dump(data))


def bytes_shown(field: str, *, label: str | None = None) -> Callable[[Any, Any], Any]:
    """A read-only field showing the binary `field` decoded (see `decoded_bytes`)."""

    @admin.display(description=label or field.replace("_", " "))
    def shown(model_admin: Any, obj: Any) -> SafeString | str:
        return decoded_bytes(getattr(obj, field))

    shown.__name__ = f"{field}_decoded"
    return shown


def _shown_field(field: models.Field[Any, Any]) -> str | Callable[[Any], Any]:
    """A read-only field's name, or a one-argument display for times, JSON and bytes (the admin
    accepts callables in `readonly_fields` and `fields`)."""
    name = field.name
    if isinstance(field, models.DateTimeField):

        def shown(obj: Any) -> Any:
            return utc_seconds(getattr(obj, name))

    elif isinstance(field, models.JSONField):

        def shown(obj: Any) -> Any:
            return pretty_json(getattr(obj, name))

    elif isinstance(field, models.BinaryField):

        def shown(obj: Any) -> Any:
            return decoded_bytes(getattr(obj, name))

    else:
        return name
    shown.__name__ = name
    shown.short_description = field.verbose_name  # type: ignore[attr-defined]
    return shown


def readable_fields(model: type[models.Model], *, leave_out: tuple[str, ...] = ()) -> list[Any]:
    """Every field of `model` for a read-only page, in the model's order, times to the second, JSON
    pretty-printed and bytes decoded: `readonly_fields = readable_fields(AuditEvent)`."""
    return [_shown_field(field) for field in model._meta.fields if field.name not in leave_out]


def _rows_for(inline: Any, request: HttpRequest, obj: models.Model) -> bool:
    """Whether `inline` has a row pointing at `obj` (through its foreign key to obj's model)."""
    keys = [
        field.name
        for field in inline.model._meta.fields
        if field.is_relation
        and field.related_model is type(obj)
        and (inline.fk_name is None or field.name == inline.fk_name)
    ]
    return bool(keys) and inline.get_queryset(request).filter(**{keys[0]: obj}).exists()


class InlinesWithRowsAdmin(admin.ModelAdmin):
    """Related tables shown only when this row has some (an empty "Saga steps" table on a plain
    payment is noise); none on the add page. For read-only inlines: nobody adds rows here."""

    def get_inline_instances(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        if obj is None:
            return []
        return [
            inline for inline in super().get_inline_instances(request, obj) if _rows_for(inline, request, obj)
        ]


class ChangedByActionsAdmin(admin.ModelAdmin):
    """Rows changed only through admin actions, which need the change permission; the page of one
    row is view-only for everyone (Django then shows "Close", no save buttons, and refuses a POST).

    Django asks `has_change_permission(request)` for the list and its actions and
    `has_change_permission(request, obj)` for one row's page."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request)
