"""Django app configs: project-wide tables (idempotency keys) and the platform's admin site."""

from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class KafkaPlatformConfig(AppConfig):
    name = "kafka_platform"
    verbose_name = "Platform"


class PlatformAdminConfig(admin_apps.AdminConfig):
    """The admin with the platform's site: its start page shows what needs attention."""

    default = False  # named in INSTALLED_APPS; KafkaPlatformConfig stays this module's default
    default_site = "kafka_platform.admin_site.PlatformAdminSite"
