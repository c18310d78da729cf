"""Orders and inventory API routes under /api/v1/."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from orders.api.views import OrderViewSet, ProductViewSet

router = DefaultRouter(trailing_slash=True)
router.register("orders", OrderViewSet, basename="order")
router.register("inventory", ProductViewSet, basename="product")
urlpatterns = router.urls
