"""WSGI entry point (gunicorn kafka_platform.wsgi:application)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kafka_platform.settings")
application = get_wsgi_application()

from core import tracing  # noqa: E402 - reads the settings, so after Django is set up

tracing.setup("web")
