"""HTTP views of the notifications domain: translate requests into service calls and back."""

from __future__ import annotations

import uuid

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from pydantic import ValidationError as PydanticValidationError
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from notifications import selectors, services
from notifications.api.serializers import (
    NotificationDetailSerializer,
    NotificationRequestSerializer,
    NotificationSerializer,
    WebhookEndpointSerializer,
)
from notifications.events import NotificationRequested
from notifications.models import Notification, WebhookEndpoint


def _actor(request: Request) -> str:
    return f"user:{request.user.get_username()}"


class NotificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Notifications: request one (202), follow its status and attempts, redeliver it."""

    lookup_field = "notification_id"
    lookup_url_kwarg = "notification_id"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if self.action == "retrieve":
            return selectors.notification_with_attempts()
        params = self.request.query_params
        return selectors.notification_list(
            status=params.get("status"), channel=params.get("channel"), recipient=params.get("recipient")
        )

    def get_serializer_class(self):  # type: ignore[no-untyped-def]
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
        ]
    )
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=NotificationRequestSerializer, responses={202: dict})
    def create(self, request: Request) -> Response:
        serializer = NotificationRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = {"notificationId": f"ntf_{uuid.uuid4().hex}", **serializer.validated_data}
        try:
            notification_request = NotificationRequested.model_validate(data)
        except PydanticValidationError as exc:
            return Response({"detail": exc.errors(include_url=False)}, status=status.HTTP_400_BAD_REQUEST)
        services.notification_submit(
            request=notification_request, correlation_id=request.headers.get("X-Correlation-Id")
        )
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

    @extend_schema(request=None, responses={202: NotificationSerializer})
    @action(detail=True, methods=["post"])
    def redeliver(self, request: Request, notification_id: str) -> Response:
        get_object_or_404(Notification, notification_id=notification_id)
        try:
            notification = services.notification_redeliver(
                notification_id=notification_id, actor=_actor(request)
            )
        except (services.NotificationInFlight, services.EndpointDisabled) as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(NotificationSerializer(notification).data, status=status.HTTP_202_ACCEPTED)


class WebhookEndpointViewSet(viewsets.ModelViewSet):
    """Registered webhook endpoints: a URL, the event types it wants, and its generated secret."""

    serializer_class = WebhookEndpointSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.webhook_endpoint_list()

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            endpoint = services.webhook_endpoint_register(
                url=data["url"],
                event_types=data["event_types"],
                description=data.get("description", ""),
                actor=_actor(request),
            )
        except services.InvalidEndpoint as exc:
            return Response({"url": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(self.get_serializer(endpoint).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: WebhookEndpoint) -> None:
        services.webhook_endpoint_delete(endpoint_id=instance.id, actor=_actor(self.request))

    def partial_update(self, request: Request, *args: object, **kwargs: object) -> Response:
        endpoint: WebhookEndpoint = self.get_object()
        serializer = self.get_serializer(endpoint, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            endpoint = services.webhook_endpoint_update(
                endpoint_id=endpoint.id,
                actor=_actor(request),
                url=data.get("url"),
                event_types=data.get("event_types"),
                description=data.get("description"),
                is_active=data.get("is_active"),
            )
        except services.InvalidEndpoint as exc:
            return Response({"url": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(self.get_serializer(endpoint).data)
