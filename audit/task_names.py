"""The names of this app's Celery tasks that are sent by name; a name never changes (core/queues.py)."""

from __future__ import annotations

from typing import Final

RECORD_AUDIT_EVENT: Final = "audit.record_event"
