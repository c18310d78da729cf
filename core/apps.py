"""Django app configs: the shared library's tables (idempotency keys) and the platform's admin site."""

from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Platform"


class PlatformAdminConfig(admin_apps.AdminConfig):
    """The admin with the platform's site: its start page shows what needs attention."""

    default = False  # named in INSTALLED_APPS; CoreConfig stays this module's default
    default_site = "core.admin_site.PlatformAdminSite"

    def ready(self) -> None:
        from core.admin_base import cap_json_in_admin

        cap_json_in_admin()  # before autodiscover: each ModelAdmin copies the defaults when created
        super().ready()
