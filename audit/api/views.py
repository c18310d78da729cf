"""Audit API: the audit log for auditors (cursor-paginated, CSV/JSONL export), chain
verification, and compliance alerts with acknowledge/resolve. HTTP translation only."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import selectors, services
from audit.api.renderers import (
    CSVRenderer,
    EventJSONRenderer,
    JSONLinesRenderer,
    csv_lines,
    jsonl_lines,
)
from audit.api.serializers import (
    AlertAcknowledgeSerializer,
    AlertNoteSerializer,
    AuditEventFilterSerializer,
    AuditEventSerializer,
    ChainReportSerializer,
    ComplianceAlertFilterSerializer,
    ComplianceAlertSerializer,
)
from audit.models import AuditEvent, ComplianceAlert
from core.problems import Problem

EXPORT_CHUNK = 2000


class CanReadAuditLog(BasePermission):
    """Auditors (and superusers): the `audit.view_auditevent` permission."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.has_perm("audit.view_auditevent"))


class CanWorkAlerts(BasePermission):
    """Reading alerts needs `view_compliancealert`; acknowledging and resolving `change_...`."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not user:
            return False
        needed = "view" if request.method in ("GET", "HEAD", "OPTIONS") else "change"
        return bool(user.has_perm(f"audit.{needed}_compliancealert"))


class AuditEventCursorPagination(CursorPagination):
    ordering = "-sequence"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000


class AuditEventListView(generics.ListAPIView):
    """The audit log, newest first; `?format=csv` or `?format=jsonl` streams every matching record
    (oldest first) instead of a page."""

    permission_classes = [IsAuthenticated, CanReadAuditLog]
    serializer_class = AuditEventSerializer
    pagination_class = AuditEventCursorPagination
    renderer_classes = [EventJSONRenderer, CSVRenderer, JSONLinesRenderer]

    @extend_schema(parameters=[AuditEventFilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[AuditEvent]:
        filters = AuditEventFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.audit_event_list(**filters.selector_arguments())

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        export = request.accepted_renderer.format
        if export not in ("csv", "jsonl"):
            return super().list(request, *args, **kwargs)
        rows = self.get_queryset().order_by("sequence").iterator(chunk_size=EXPORT_CHUNK)
        documents = (row.document() for row in rows)
        body = csv_lines(documents) if export == "csv" else jsonl_lines(documents)
        response = StreamingHttpResponse(body, content_type=request.accepted_renderer.media_type)
        response["Content-Disposition"] = f'attachment; filename="audit-events.{export}"'
        return response


class AuditVerifyView(APIView):
    """Verify the hash chain now: sequence, links, hashes and signed checkpoints."""

    permission_classes = [IsAuthenticated, CanReadAuditLog]
    renderer_classes = [EventJSONRenderer]

    @extend_schema(responses=ChainReportSerializer)
    def get(self, request: Request) -> Response:
        return Response(selectors.verify_chain().as_dict())


class ComplianceAlertViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [IsAuthenticated, CanWorkAlerts]
    serializer_class = ComplianceAlertSerializer
    renderer_classes = [EventJSONRenderer]
    lookup_field = "alert_id"
    lookup_value_regex = "[0-9a-fA-F-]{36}"

    @extend_schema(parameters=[ComplianceAlertFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[ComplianceAlert]:
        alerts = ComplianceAlert.objects.select_related("assignee")
        if self.action != "list":
            return alerts
        filters = ComplianceAlertFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return alerts.filter(**filters.validated_data)

    def _transition(self, request: Request, do: Any, serializer_class: type) -> Response:
        body = serializer_class(data=request.data)
        body.is_valid(raise_exception=True)
        alert = self.get_object()
        try:
            alert = do(alert_id=alert.alert_id, by=request.user, **body.validated_data)
        except services.IllegalAlertTransition as exc:
            raise Problem(status.HTTP_409_CONFLICT, str(exc), code="illegal_transition") from None
        return Response(ComplianceAlertSerializer(alert).data)

    @extend_schema(request=AlertAcknowledgeSerializer, responses=ComplianceAlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, alert_id: str | None = None) -> Response:
        return self._transition(request, services.compliance_alert_acknowledge, AlertAcknowledgeSerializer)

    @extend_schema(request=AlertNoteSerializer, responses=ComplianceAlertSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, alert_id: str | None = None) -> Response:
        return self._transition(request, services.compliance_alert_resolve, AlertNoteSerializer)
