"""The names of the Django groups the platform's permissions are built on."""

from __future__ import annotations

OPERATORS = "operators"
AUDITORS = "auditors"
