"""Admin for dead letters (with a replay action), the outbox, oversized records and stuck partitions
(with the action that skips the stuck record to the DLQ).

Records are the bridge's: their pages are view-only (actions need the change permission), keys,
values and headers are shown decoded once with the raw bytes folded beneath, times to the second."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from bridge import services
from bridge.deadletters import replay
from bridge.models import DeadLetter, OutboxEvent, OversizedRecord, StuckPartition
from core.actors import user_actor
from core.admin_base import ReadOnlyAdmin
from core.admin_display import EMPTY, PRE, ChangedByActionsAdmin, at_second, bytes_shown, pretty_json


def decoded_headers(headers: Any, *, base64_values: bool = True) -> SafeString | str:
    """Stored headers as "name: value" lines. Dead letters and oversized records keep the
    record's bytes as [name, base64] pairs: those are decoded, the stored pairs folded beneath;
    the outbox keeps [name, text] pairs, shown as they are."""
    if not headers:
        return EMPTY
    lines = []
    for pair in headers:
        name, stored = pair if isinstance(pair, list) and len(pair) == 2 else (repr(pair), "")
        value = str(stored)
        if base64_values:
            try:
                value = base64.b64decode(value, validate=True).decode("utf-8", errors="replace")
            except (binascii.Error, ValueError):
                value = f"{stored!r} (not base64)"
        lines.append((name, value))
    shown = format_html(PRE, format_html_join("\n", "{}: {}", lines))
    return format_html("{}{}", shown, pretty_json(headers)) if base64_values else shown


def _place(partition: int | None, offset: int | None) -> str:
    return f"{EMPTY if partition is None else partition}@{EMPTY if offset is None else offset}"


@admin.register(DeadLetter)
class DeadLetterAdmin(ChangedByActionsAdmin):
    failed = at_second("failed_at", label="failed")
    replayed = at_second("replayed_at", label="replayed")
    key_shown = bytes_shown("key", label="key")
    value_shown = bytes_shown("value", label="value")
    list_display = ("failed", "original_topic", "place", "reason", "replayed")
    list_filter = ("reason", "original_topic", "dlq_topic")
    search_fields = ("error",)
    fields = readonly_fields = (
        "reason",
        "original_topic",
        "place",
        "failed",
        "replayed",
        "dlq_topic",
        "error",
        "key_shown",
        "value_shown",
        "headers_shown",
    )
    actions = ["replay_selected"]

    @admin.display(description="partition@offset")
    def place(self, obj: DeadLetter) -> str:
        return _place(obj.original_partition, obj.original_offset)

    @admin.display(description="headers")
    def headers_shown(self, obj: DeadLetter) -> SafeString | str:
        return decoded_headers(obj.headers)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Replay to the original topic", permissions=["change"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        for dead in queryset:
            replay(dead, actor=user_actor(request.user))
        self.message_user(request, f"Replayed {queryset.count()} dead letters.", messages.SUCCESS)


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    created = at_second("created_at", label="created")
    sent = at_second("sent_at", label="sent")
    list_display = ("created", "event_type", "key", "sent", "attempts")
    list_filter = ("event_type",)
    search_fields = ("key",)
    fields = readonly_fields = (
        "event_type",
        "key",
        "topic",
        "created",
        "sent",
        "attempts",
        "last_error",
        "event_id",
        "headers_shown",
    )

    @admin.display(description="headers")
    def headers_shown(self, obj: OutboxEvent) -> SafeString | str:
        return decoded_headers(obj.headers, base64_values=False)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # As before the shared base: whoever holds the delete permission (no role grants it,
        # superusers do) may remove an outbox row.
        return admin.ModelAdmin.has_delete_permission(self, request, obj)


@admin.register(OversizedRecord)
class OversizedRecordAdmin(admin.ModelAdmin):
    """The whole values behind dead-letter references (replayed from the dead letter's row)."""

    stored = at_second("stored_at", label="stored")
    key_shown = bytes_shown("key", label="key")
    list_display = ("stored", "topic", "place", "size", "reason")
    list_filter = ("topic", "reason")
    # The value is the whole oversized record (megabytes): replayed, never shown.
    fields = readonly_fields = ("topic", "place", "reason", "size", "stored", "key_shown", "headers_shown")

    @admin.display(description="partition@offset")
    def place(self, obj: OversizedRecord) -> str:
        return _place(obj.partition, obj.offset)

    @admin.display(description="headers")
    def headers_shown(self, obj: OversizedRecord) -> SafeString | str:
        return decoded_headers(obj.headers)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OversizedRecord | None = None) -> bool:
        return False


@admin.register(StuckPartition)
class StuckPartitionAdmin(ChangedByActionsAdmin):
    """Partitions the bridge cannot move past. Rows are the bridge's; operators only act on them."""

    since = at_second("stuck_since", label="stuck since")
    reported = at_second("reported_at", label="reported")
    skip_requested = at_second("skip_requested_at", label="skip requested")
    list_display = ("topic", "place", "since", "error", "reported", "skip_requested_by")
    list_filter = ("topic", "group")
    fields = readonly_fields = (
        "topic",
        "place",
        "since",
        "error",
        "group",
        "reported",
        "reported_by",
        "skip_requested",
        "skip_requested_by",
    )

    @admin.display(description="partition@offset")
    def place(self, obj: StuckPartition) -> str:
        return _place(obj.partition, obj.offset)

    actions = ["skip_to_dlq"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(
        description="Skip the stuck record to the DLQ (dlq-reason skipped_by_operator)",
        permissions=["change"],
    )
    def skip_to_dlq(self, request: HttpRequest, queryset: QuerySet[StuckPartition]) -> None:
        requested = [
            stuck
            for stuck in queryset
            if services.stuck_partition_request_skip(stuck_id=stuck.pk, actor=user_actor(request.user))
        ]
        if requested:
            names = ", ".join(str(stuck) for stuck in requested)
            self.message_user(
                request,
                f"Asked the bridge to skip {names} to the DLQ; it does so within seconds.",
                messages.SUCCESS,
            )
        if len(requested) < len(queryset):
            self.message_user(request, "Some were already requested or gone.", messages.WARNING)
