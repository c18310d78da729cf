"""HTTP views of the notifications domain: translate requests into service calls and back.

What a user may see comes from the selectors (a client its own notifications and endpoints); what it
may do from Django permissions. Errors are raised, and rendered as problem+json in one place
(core/problems.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from audit.conflicts import conflicting_duplicate_alert
from core import api_fields
from core.actors import user_actor
from core.ids import ConflictingDuplicate
from core.problems import Problem
from notifications import selectors, services
from notifications.api.serializers import (
    NotificationDetailSerializer,
    NotificationRequestSerializer,
    NotificationSerializer,
    WebhookEndpointSecretSerializer,
    WebhookEndpointSerializer,
)
from notifications.events import NotificationRequested
from notifications.models import Notification, WebhookEndpoint

ADD_NOTIFICATION = "notifications.add_notification"
CHANGE_NOTIFICATION = "notifications.change_notification"


class HoldsPermission(BasePermission):
    """The action needs one Django permission (from a role group or granted to a service account)."""

    permission = ""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.has_perm(self.permission))


class CanRequestNotifications(HoldsPermission):
    permission = ADD_NOTIFICATION


class CanRedeliverNotifications(HoldsPermission):
    permission = CHANGE_NOTIFICATION


class NotificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Notifications: request one (202), follow its status and attempts, redeliver it."""

    lookup_field = "notification_id"
    lookup_url_kwarg = "notification_id"
    lookup_value_regex = "[^/]+"

    def get_permissions(self) -> list[BasePermission]:
        # Any client may read its own notifications; asking for one (any text to anyone) or sending
        # one again is for operators and service accounts.
        extra: dict[str, list[BasePermission]] = {
            "create": [CanRequestNotifications()],
            "redeliver": [CanRedeliverNotifications()],
        }
        return [IsAuthenticated(), *extra.get(self.action or "", [])]

    def get_queryset(self) -> QuerySet[Notification]:
        if self.action == "retrieve":
            return selectors.notification_with_attempts(user=self.request.user)
        params = self.request.query_params
        return selectors.notification_list(
            user=self.request.user,
            status=params.get("status"),
            channel=params.get("channel"),
            recipient=params.get("recipient"),
            owner=params.get("user"),
        )

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action == "retrieve":
            return NotificationDetailSerializer
        if self.action == "create":
            return NotificationRequestSerializer
        return NotificationSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, description="queued, sending, sent or failed"),
            OpenApiParameter("channel", str),
            OpenApiParameter("recipient", str),
            OpenApiParameter("user", str, description="username of the API client they belong to"),
        ]
    )
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=NotificationRequestSerializer, responses={202: dict, 400: dict, 403: dict})
    def create(self, request: Request) -> Response:
        serializer = NotificationRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = {"notificationId": f"ntf_{uuid.uuid4().hex}", **serializer.validated_data}
        # A pydantic ValidationError is rendered as a 400 problem by the API's exception handler.
        notification_request = NotificationRequested.model_validate(data)
        try:
            services.notification_submit(
                request=notification_request,
                user=request.user,
                correlation_id=request.headers.get("X-Correlation-Id"),
            )
        except services.ReservedNotificationId as exc:
            raise ValidationError({"notificationId": [str(exc)]}) from exc
        except services.NotificationIdTaken:
            raise api_fields.id_unavailable(field="notificationId") from None
        except ConflictingDuplicate as conflict:
            conflicting_duplicate_alert(conflict=conflict, source=f"api:{user_actor(request.user)}")
            raise api_fields.conflicting_duplicate(conflict, field="notificationId") from None
        location = request.build_absolute_uri(f"{notification_request.notificationId}/")
        return Response(
            {
                "notificationId": notification_request.notificationId,
                "status": "accepted",
                "statusUrl": location,
            },
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": location},
        )

    @extend_schema(request=None, responses={202: NotificationSerializer, 403: dict, 404: dict, 409: dict})
    @action(detail=True, methods=["post"])
    def redeliver(self, request: Request, notification_id: str) -> Response:
        notification: Notification = self.get_object()
        try:
            notification = services.notification_redeliver(
                notification_id=notification.notification_id, actor=user_actor(request.user)
            )
        except services.NotificationInFlight as exc:
            raise Problem(409, str(exc), code="notification_in_flight") from exc
        except services.EndpointDisabled as exc:
            raise Problem(409, str(exc), code="endpoint_disabled") from exc
        return Response(NotificationSerializer(notification).data, status=status.HTTP_202_ACCEPTED)


class WebhookEndpointViewSet(viewsets.ModelViewSet):
    """A client's webhook endpoints: a URL, the event types it wants, and its own secret, shown once
    (on creation and on rotation). Its customers' webhookUrls appear here too (kind `recipient`):
    rotate one's secret to learn what its deliveries are signed with."""

    serializer_class = WebhookEndpointSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    queryset = WebhookEndpoint.objects.none()  # for the schema; get_queryset decides what a user sees

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        reading = self.action in ("list", "retrieve")
        return selectors.webhook_endpoint_list(user=self.request.user, to_change=not reading)

    @extend_schema(responses={201: WebhookEndpointSecretSerializer, 400: dict})
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            endpoint = services.webhook_endpoint_register(
                url=data["url"],
                event_types=data["event_types"],
                description=data.get("description", ""),
                owner=request.user,
                actor=user_actor(request.user),
            )
        except services.InvalidEndpoint as exc:
            raise ValidationError({"url": [str(exc)]}) from exc
        return Response(WebhookEndpointSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: WebhookEndpoint) -> None:
        services.webhook_endpoint_delete(endpoint_id=instance.id, actor=user_actor(self.request.user))

    def partial_update(self, request: Request, *args: object, **kwargs: object) -> Response:
        endpoint: WebhookEndpoint = self.get_object()
        serializer = self.get_serializer(endpoint, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            endpoint = services.webhook_endpoint_update(
                endpoint_id=endpoint.id,
                actor=user_actor(request.user),
                url=data.get("url"),
                event_types=data.get("event_types"),
                description=data.get("description"),
                is_active=data.get("is_active"),
            )
        except services.InvalidEndpoint as exc:
            raise ValidationError({"url": [str(exc)]}) from exc
        return Response(self.get_serializer(endpoint).data)

    @extend_schema(request=None, responses={200: WebhookEndpointSecretSerializer, 404: dict})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str) -> Response:
        endpoint: WebhookEndpoint = self.get_object()
        endpoint = services.webhook_endpoint_rotate_secret(
            endpoint_id=endpoint.id, actor=user_actor(request.user)
        )
        return Response(WebhookEndpointSecretSerializer(endpoint).data)
