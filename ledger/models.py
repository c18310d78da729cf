"""Ledger tables."""
