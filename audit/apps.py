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

        user_login_failed.connect(receivers.record_login_failure, dispatch_uid="audit.login_failed")
        replayed.connect(receivers.record_replay, dispatch_uid="audit.replayed")
        post_migrate.connect(receivers.sync_roles, sender=self, dispatch_uid="audit.sync_roles")
        admin_attention.register()
