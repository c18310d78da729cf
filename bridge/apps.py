"""Django app config for the Kafka bridge."""

from __future__ import annotations

from django.apps import AppConfig


class BridgeConfig(AppConfig):
    name = "bridge"
    verbose_name = "Kafka bridge"

    def ready(self) -> None:
        from bridge import admin_attention, health
        from bridge.outbox import pending_count
        from core import metrics

        metrics.OUTBOX_PENDING.count_with(pending_count)
        health.register()
        admin_attention.register()
