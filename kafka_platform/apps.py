"""Django app config for project-wide tables (idempotency keys)."""

from __future__ import annotations

from django.apps import AppConfig


class KafkaPlatformConfig(AppConfig):
    name = "kafka_platform"
    verbose_name = "Platform"
