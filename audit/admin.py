"""Admin for the audit log and checkpoints (read-only for everyone) and compliance alerts
(auditors acknowledge, resolve, reassign and add notes; all through the services)."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet
from django.http import HttpRequest

from audit import services
from audit.models import AlertStatus, AuditEvent, ChainCheckpoint, ComplianceAlert
from core.admin_base import ReadOnlyAdmin
from core.admin_display import at_second, readable_fields


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    occurred = at_second("occurred_at", label="occurred")
    list_display = ("sequence", "occurred", "event_type", "action", "actor", "subject_type", "subject_id")
    list_filter = ("event_type", "action")
    search_fields = ("subject_id", "actor", "correlation_id", "event_id")
    fields = readonly_fields = readable_fields(AuditEvent)
    date_hierarchy = "occurred_at"
    # Counting a log of millions of rows on every page costs more than the page itself.
    show_full_result_count = False


@admin.register(ChainCheckpoint)
class ChainCheckpointAdmin(ReadOnlyAdmin):
    signed = at_second("signed_at", label="signed")
    list_display = ("sequence", "kind", "signed", "record_hash", "archive")
    list_filter = ("kind",)
    fields = readonly_fields = readable_fields(ChainCheckpoint)


class ComplianceAlertForm(forms.ModelForm):
    new_note = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label="Add a note", max_length=5000
    )

    class Meta:
        model = ComplianceAlert
        fields = ["assignee"]


@admin.register(ComplianceAlert)
class ComplianceAlertAdmin(admin.ModelAdmin):
    form = ComplianceAlertForm
    raised = at_second("raised_at", label="raised")
    list_display = ("raised", "rule", "severity", "status", "subject", "assignee")
    list_filter = ("status", "rule", "severity")
    search_fields = ("subject", "alert_id", "source_event_id", "correlation_id")
    date_hierarchy = "raised_at"
    readonly_fields = readable_fields(ComplianceAlert, leave_out=("id", "assignee", "dedupe_key"))
    actions = ["acknowledge_selected", "resolve_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ComplianceAlert, form: Any, change: bool) -> None:
        services.compliance_alert_update(
            alert_id=str(obj.alert_id),
            by=cast(AbstractBaseUser, request.user),  # the admin only serves logged-in users
            assignee=form.cleaned_data.get("assignee"),
            note=form.cleaned_data.get("new_note", ""),
        )

    def _move(self, request: HttpRequest, queryset: QuerySet[ComplianceAlert], do: Any, done: str) -> None:
        moved, refused = 0, []
        for alert in queryset:
            try:
                do(alert_id=str(alert.alert_id), by=request.user)
                moved += 1
            except services.IllegalAlertTransition as exc:
                refused.append(str(exc))
        if moved:
            self.message_user(request, f"{moved} alert(s) {done}.", messages.SUCCESS)
        for message in refused:
            self.message_user(request, message, messages.WARNING)

    @admin.action(description="Acknowledge (and assign to me)", permissions=["change"])
    def acknowledge_selected(self, request: HttpRequest, queryset: QuerySet[ComplianceAlert]) -> None:
        self._move(
            request,
            queryset.exclude(status=AlertStatus.ACKNOWLEDGED),
            services.compliance_alert_acknowledge,
            "acknowledged",
        )

    @admin.action(description="Resolve", permissions=["change"])
    def resolve_selected(self, request: HttpRequest, queryset: QuerySet[ComplianceAlert]) -> None:
        self._move(
            request,
            queryset.exclude(status=AlertStatus.RESOLVED),
            services.compliance_alert_resolve,
            "resolved",
        )
