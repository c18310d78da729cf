"""ASGI entry point."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kafka_platform.settings")
application = get_asgi_application()

from core import tracing  # noqa: E402 - reads the settings, so after Django is set up

tracing.setup("web")
