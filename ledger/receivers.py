"""What the ledger does when other parts of the platform ask through core's signals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger import services


def assign_client_accounts(*, client: Any, account_ids: Sequence[str], actor: str, **_: Any) -> list[str]:
    """`core.signals.client_accounts_requested`: assign each account to the client."""
    for account_id in account_ids:
        services.client_account_assign(account_id=account_id, client=client, actor=actor)
    return list(account_ids)
