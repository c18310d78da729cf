"""Ledger: double-entry bookkeeping, multi-currency balances, history, reconciliation."""
