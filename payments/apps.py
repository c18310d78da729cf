"""Django app config for payments."""

from __future__ import annotations

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self) -> None:
        from core.admin_site import register_attention
        from payments.admin_attention import ledger_differences

        register_attention(ledger_differences)
