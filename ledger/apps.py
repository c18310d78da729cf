"""Django app config for ledger."""

from __future__ import annotations

from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"

    def ready(self) -> None:
        from core.signals import client_accounts_requested
        from ledger import receivers

        client_accounts_requested.connect(
            receivers.assign_client_accounts, dispatch_uid="ledger.assign_client_accounts"
        )
