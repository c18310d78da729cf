"""Routes of the notifications API, included under /api/v1/."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from notifications.api.views import NotificationViewSet, WebhookEndpointViewSet

router = SimpleRouter()
router.register("webhook-endpoints", WebhookEndpointViewSet, basename="webhook-endpoint")
router.register("notifications", NotificationViewSet, basename="notification")

urlpatterns = router.urls
