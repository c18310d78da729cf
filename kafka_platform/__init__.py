"""The Django project package: settings, urls, the Celery app, WSGI/ASGI entry points."""

from __future__ import annotations

from kafka_platform.celery import app as celery_app

__all__ = ["celery_app"]
