"""Payments API routes under /api/v1/."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from payments.api.views import PaymentViewSet

router = DefaultRouter(trailing_slash=True)
router.register("payments", PaymentViewSet, basename="payment")
urlpatterns = router.urls
