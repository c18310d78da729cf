"""Notification tables."""
