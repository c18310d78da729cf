"""Audit: every event in a tamper-evident log, compliance alerts, retention, a query API."""
