"""Audit and compliance API routes under /api/v1/."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from audit.api.views import AuditEventListView, AuditVerifyView, ComplianceAlertViewSet

router = SimpleRouter(trailing_slash=True)
router.register("compliance/alerts", ComplianceAlertViewSet, basename="compliance-alert")

urlpatterns = [
    path("audit/events/", AuditEventListView.as_view(), name="audit-event-list"),
    path("audit/verify/", AuditVerifyView.as_view(), name="audit-verify"),
    *router.urls,
]
