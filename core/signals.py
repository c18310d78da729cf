"""Signals through which core asks the apps above it for what only they know, without importing them."""

from __future__ import annotations

from django.dispatch import Signal

# A new API client's ledger accounts: sent with `client` (the user), `account_ids` and `actor`.
# The app that keeps accounts (the ledger) assigns them; a receiver returns the ids it assigned.
client_accounts_requested = Signal()
