"""Admin for dead letters (with a replay action), the outbox, oversized records and stuck partitions
(with the action that skips the stuck record to the DLQ)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from bridge import services
from bridge.deadletters import replay
from bridge.models import DeadLetter, OutboxEvent, OversizedRecord, StuckPartition
from core.actors import user_actor
from core.admin_base import ReadOnlyAdmin


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

    @admin.action(description="Replay to the original topic", permissions=["change"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        for dead in queryset:
            replay(dead, actor=user_actor(request.user))
        self.message_user(request, f"Replayed {queryset.count()} dead letters.", messages.SUCCESS)


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "event_type", "key", "sent_at", "attempts")
    list_filter = ("event_type",)
    search_fields = ("key",)
    exclude = ("value",)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # As before the shared base: whoever holds the delete permission (no role grants it,
        # superusers do) may remove an outbox row.
        return admin.ModelAdmin.has_delete_permission(self, request, obj)


@admin.register(OversizedRecord)
class OversizedRecordAdmin(admin.ModelAdmin):
    """The whole values behind dead-letter references (replayed from the dead letter's row)."""

    list_display = ("stored_at", "topic", "partition", "offset", "size", "reason")
    list_filter = ("topic", "reason")
    exclude = ("value",)
    readonly_fields = ("topic", "partition", "offset", "key", "headers", "size", "reason", "stored_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OversizedRecord | None = None) -> bool:
        return False


@admin.register(StuckPartition)
class StuckPartitionAdmin(admin.ModelAdmin):
    """Partitions the bridge cannot move past. Rows are the bridge's; operators only act on them."""

    list_display = (
        "topic",
        "partition",
        "offset",
        "stuck_since",
        "error",
        "reported_by",
        "reported_at",
        "skip_requested_by",
        "skip_requested_at",
    )
    list_filter = ("topic", "group")
    readonly_fields = [f.name for f in StuckPartition._meta.fields]
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
