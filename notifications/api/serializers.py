"""Translations between HTTP JSON and the notifications domain."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core import ids
from notifications.models import Channel, DeliveryAttempt, Notification, WebhookEndpoint


class NotificationRequestSerializer(serializers.Serializer):
    """The body of POST /api/v1/notifications/: a notifications.notification-requested's data."""

    notificationId = serializers.CharField(  # noqa: N815 - the wire name
        max_length=255,
        required=False,
        help_text="Your id; the same id is delivered once. Generated if absent.",
    )
    channel = serializers.ChoiceField(choices=Channel.choices)
    recipient = serializers.CharField(max_length=2000)
    template = serializers.CharField(max_length=100, required=False)
    subject = serializers.CharField(max_length=255, required=False)
    body = serializers.CharField(required=False)
    context = serializers.DictField(required=False)  # type: ignore[assignment]  # a field named like a stub attribute
    locale = serializers.CharField(max_length=35, required=False)

    def validate_notificationId(self, value: str) -> str:  # noqa: N802 - DRF's hook for the wire name
        try:
            return ids.check_client_id(value)
        except ids.InvalidId as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("template") and not attrs.get("body"):
            raise serializers.ValidationError("either template or body is required")
        return attrs


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    startedAt = serializers.DateTimeField(source="started_at")  # noqa: N815
    finishedAt = serializers.DateTimeField(source="finished_at")  # noqa: N815
    latencyMs = serializers.FloatField(source="latency_ms")  # noqa: N815
    statusCode = serializers.IntegerField(source="status_code")  # noqa: N815
    providerMessageId = serializers.CharField(source="provider_message_id")  # noqa: N815
    responseBody = serializers.CharField(  # noqa: N815
        source="response_body", help_text="What the webhook receiver answered; shown to its owner only."
    )

    class Meta:
        model = DeliveryAttempt
        fields = [
            "number",
            "status",
            "provider",
            "startedAt",
            "finishedAt",
            "latencyMs",
            "statusCode",
            "providerMessageId",
            "error",
            "responseBody",
        ]
        read_only_fields = fields

    def to_representation(self, instance: DeliveryAttempt) -> dict[str, Any]:
        data = super().to_representation(instance)
        request = self.context.get("request")
        # A receiver's answer may carry the receiver's own data: only the endpoint's owner (the
        # notification's, by construction) reads it here; operators read it in the admin.
        if request is None or request.user.pk is None or request.user.pk != instance.notification.owner_id:
            data.pop("responseBody", None)
        return data


class NotificationSerializer(serializers.ModelSerializer):
    notificationId = serializers.CharField(source="notification_id")  # noqa: N815
    template = serializers.CharField(source="template_key")
    templateLocale = serializers.CharField(source="template_locale")  # noqa: N815
    nextAttemptAt = serializers.DateTimeField(source="next_attempt_at")  # noqa: N815
    deferredReason = serializers.CharField(source="deferred_reason")  # noqa: N815
    providerMessageId = serializers.CharField(source="provider_message_id")  # noqa: N815
    failureReason = serializers.CharField(source="failure_reason")  # noqa: N815
    lastError = serializers.CharField(source="last_error")  # noqa: N815
    createdAt = serializers.DateTimeField(source="created_at")  # noqa: N815
    sentAt = serializers.DateTimeField(source="sent_at")  # noqa: N815
    failedAt = serializers.DateTimeField(source="failed_at")  # noqa: N815

    class Meta:
        model = Notification
        fields = [
            "notificationId",
            "channel",
            "recipient",
            "template",
            "locale",
            "templateLocale",
            "status",
            "attempts",
            "nextAttemptAt",
            "deferredReason",
            "providerMessageId",
            "failureReason",
            "lastError",
            "createdAt",
            "sentAt",
            "failedAt",
        ]
        read_only_fields = fields


class NotificationDetailSerializer(NotificationSerializer):
    deliveryAttempts = DeliveryAttemptSerializer(source="delivery_attempts", many=True)  # noqa: N815

    class Meta(NotificationSerializer.Meta):
        fields = [*NotificationSerializer.Meta.fields, "deliveryAttempts"]
        read_only_fields = fields


class WebhookEndpointSerializer(serializers.ModelSerializer):
    eventTypes = serializers.ListField(  # noqa: N815
        source="event_types",
        child=serializers.CharField(max_length=100),
        allow_empty=False,
        help_text='Template keys, e.g. ["payment_captured", "payment_failed"], or ["*"].',
    )
    isActive = serializers.BooleanField(source="is_active", required=False)  # noqa: N815
    consecutiveFailures = serializers.IntegerField(source="consecutive_failures", read_only=True)  # noqa: N815
    disabledAt = serializers.DateTimeField(source="disabled_at", read_only=True)  # noqa: N815
    disabledReason = serializers.CharField(source="disabled_reason", read_only=True)  # noqa: N815
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)  # noqa: N815
    owner: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = WebhookEndpoint
        # No secret: it is shown once, by WebhookEndpointSecretSerializer (creation, rotation).
        fields = [
            "id",
            "url",
            "kind",
            "owner",
            "eventTypes",
            "description",
            "isActive",
            "consecutiveFailures",
            "disabledAt",
            "disabledReason",
            "createdAt",
        ]
        read_only_fields = ["id", "kind", "owner"]


class WebhookEndpointSecretSerializer(WebhookEndpointSerializer):
    """The answer to creating an endpoint or rotating its secret: the only time the secret is shown."""

    secret = serializers.CharField(
        read_only=True, help_text="whsec_...; store it now, it is not shown again."
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = [*WebhookEndpointSerializer.Meta.read_only_fields, "secret"]
