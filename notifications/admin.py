"""Admin for notifications: notifications with their attempts and a resend action, templates with a
preview, webhook endpoints with enable/disable. Actions call the services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import escape, format_html

from core.actors import user_actor
from core.admin_base import ReadOnlyInline
from core.admin_display import ChangedByActionsAdmin, InlinesWithRowsAdmin, at_second, readable_fields
from notifications import rendering, services, webhooks
from notifications.models import DeliveryAttempt, EndpointKind, Notification, Template, WebhookEndpoint

# Webhook receivers' answers are for the endpoint's owner and the operators who run deliveries,
# not for everyone who may read notifications (auditors).
SEE_RECEIVER_ANSWERS = "notifications.change_notification"


def _actor(request: HttpRequest) -> str:
    return user_actor(request.user)


class DeliveryAttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    started = at_second("started_at", label="started")
    fields = (
        "number",
        "status",
        "provider",
        "started",
        "latency_ms",
        "status_code",
        "provider_message_id",
        "error",
    )
    readonly_fields = fields

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if request.user.has_perm(SEE_RECEIVER_ANSWERS):
            return (*self.fields, "response_body")
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)


@admin.register(Notification)
class NotificationAdmin(InlinesWithRowsAdmin, ChangedByActionsAdmin):
    """View-only pages (the resend action is the change); times to the second, context folded."""

    created = at_second("created_at", label="created")
    list_display = (
        "notification_id",
        "owner",
        "channel",
        "recipient",
        "template_key",
        "status",
        "attempts",
        "created",
    )
    list_filter = ("status", "channel", "failure_reason", "deferred_reason")
    search_fields = ("notification_id", "recipient", "template_key", "correlation_id")
    date_hierarchy = "created_at"
    fields = readonly_fields = readable_fields(Notification)
    inlines = [DeliveryAttemptInline]
    actions = ["resend"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Resend the selected notifications", permissions=["change"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        resent = 0
        for notification_id in queryset.values_list("notification_id", flat=True):
            try:
                services.notification_redeliver(notification_id=notification_id, actor=_actor(request))
                resent += 1
            except (services.NotificationInFlight, services.EndpointDisabled) as exc:
                self.message_user(request, str(exc), messages.WARNING)
        if resent:
            self.message_user(request, f"{resent} notification(s) queued again.", messages.SUCCESS)


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    updated = at_second("updated_at", label="updated")
    list_display = ("key", "channel", "locale", "subject", "updated")
    list_filter = ("channel", "locale", "key")
    search_fields = ("key", "subject", "body")
    readonly_fields = ("preview", "updated")
    fields = (
        "key",
        "channel",
        "locale",
        "subject",
        "body",
        "html_body",
        "sample_context",
        "preview",
        "updated",
    )

    @admin.display(description="Preview (saved version, rendered with the sample context)")
    def preview(self, obj: Template) -> str:
        if obj.pk is None:
            return "Save the template to see its preview."
        try:
            rendered = rendering.render_template(obj, dict(obj.sample_context or {}))
        except rendering.TemplateError as exc:
            return format_html('<p style="color:#ba2121">Cannot render: {}</p>', exc)
        html = (
            format_html(
                '<iframe sandbox="" srcdoc="{}" style="{}"></iframe>',
                # The rendered HTML is marked safe; as an attribute value it must be escaped again.
                escape(rendered.html_body),
                "width:100%;height:320px;border:1px solid #ccc",
            )
            if rendered.html_body
            else ""
        )
        return format_html(
            "<p><strong>Subject:</strong> {}</p><pre style='white-space:pre-wrap'>{}</pre>{}",
            rendered.subject,
            rendered.body,
            html,
        )


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "owner", "event_types", "description")

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            webhooks.check_url(url)
        except webhooks.ForbiddenTarget as exc:
            raise forms.ValidationError(str(exc)) from exc
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = (
        "url",
        "kind",
        "owner",
        "event_types",
        "is_active",
        "consecutive_failures",
        "disabled_at",
        "created_at",
    )
    list_filter = ("kind", "is_active")
    search_fields = ("url", "description", "owner__username")
    raw_id_fields = ("owner",)
    # The secret is never shown again after creation (its owner rotates it through the API).
    readonly_fields = (
        "id",
        "kind",
        "consecutive_failures",
        "disabled_at",
        "disabled_reason",
        "created_at",
    )
    fields = (
        "id",
        "url",
        "kind",
        "owner",
        "event_types",
        "description",
        "is_active",
        "consecutive_failures",
        "disabled_at",
        "disabled_reason",
        "created_at",
    )
    actions = ["enable", "disable"]

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> Any:
        # is_active moves through the actions (and their audit records), not by editing the field;
        # an endpoint's owner is who receives its objects' events, fixed once it exists.
        return (*self.readonly_fields, "is_active", "owner") if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        if change:
            services.webhook_endpoint_update(
                endpoint_id=obj.id,
                actor=_actor(request),
                url=obj.url,
                event_types=list(obj.event_types),
                description=obj.description,
            )
            return
        created = services.webhook_endpoint_register(
            url=obj.url,
            event_types=list(obj.event_types),
            description=obj.description,
            owner=obj.owner,
            actor=_actor(request),
        )
        obj.pk = created.pk
        obj.secret = created.secret
        obj.kind = EndpointKind.REGISTERED
        # Shown this once, as the API does on creation.
        self.message_user(request, f"The endpoint's signing secret (shown once): {created.secret}")

    @admin.action(description="Enable the selected endpoints", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint_id in queryset.values_list("id", flat=True):
            services.webhook_endpoint_update(endpoint_id=endpoint_id, actor=_actor(request), is_active=True)

    @admin.action(description="Disable the selected endpoints", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint_id in queryset.values_list("id", flat=True):
            services.webhook_endpoint_update(endpoint_id=endpoint_id, actor=_actor(request), is_active=False)
