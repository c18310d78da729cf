"""Django app config for audit."""

from __future__ import annotations

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed
        from django.db.models.signals import post_migrate

        from audit import admin_attention, receivers
        from bridge.deadletters import replayed
        from bridge.services import skip_requested

        user_login_failed.connect(receivers.record_login_failure, dispatch_uid="audit.login_failed")
        replayed.connect(receivers.record_replay, dispatch_uid="audit.replayed")
        skip_requested.connect(receivers.record_skip_request, dispatch_uid="audit.skip_requested")
        post_migrate.connect(receivers.sync_roles, sender=self, dispatch_uid="audit.sync_roles")
        admin_attention.register()
