"""Admin for dead letters (with a replay action) and the outbox."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from bridge.deadletters import replay
from bridge.models import DeadLetter, OutboxEvent
from kafka_platform.admin_base import ReadOnlyAdmin


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = (
        "failed_at",
        "original_topic",
        "original_partition",
        "original_offset",
        "reason",
        "replayed_at",
    )
    list_filter = ("reason", "original_topic", "dlq_topic")
    search_fields = ("error",)
    readonly_fields = [f.name for f in DeadLetter._meta.fields] + ["value_text"]
    actions = ["replay_selected"]

    @admin.display(description="value")
    def value_text(self, obj: DeadLetter) -> str:
        return bytes(obj.value or b"")[:20000].decode("utf-8", errors="replace")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Replay to the original topic")
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        for dead in queryset:
            replay(dead)
        self.message_user(request, f"Replayed {queryset.count()} dead letters.", messages.SUCCESS)


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "event_type", "key", "sent_at", "attempts")
    list_filter = ("event_type",)
    search_fields = ("key",)
    exclude = ("value",)

    def has_delete_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        # As before the shared base: whoever holds the delete permission (no role grants it,
        # superusers do) may remove an outbox row.
        return admin.ModelAdmin.has_delete_permission(self, request, obj)
