"""URL configuration: admin, the versioned API, OpenAPI docs, health and metrics."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core import health, metrics  # noqa: F401 - importing metrics registers them for /metrics

# An unrouted /api/ path answers problem+json like the rest of the API.
handler404 = "core.problems.not_found"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("payments.api.urls")),
    path("api/v1/", include("notifications.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/ledger/", include("ledger.api.urls")),
    path("api/v1/", include("audit.api.urls")),
    path("api/v1/", include("orders.api.urls")),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("health", health.health, name="health"),
    path("ready", health.ready, name="ready"),
    path("live", health.live, name="live"),
    # django_prometheus' view behind the metrics token (core.health.metrics).
    path("metrics", health.metrics, name="prometheus-django-metrics"),
]
