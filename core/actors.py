"""Who did something, as the audit log spells it: `user:<username>` for people and API clients."""

from __future__ import annotations

from typing import Any

USER_PREFIX = "user:"


def user_actor(user: Any) -> str:
    """The audit actor of a Django user (an API client, an operator, an auditor)."""
    return username_actor(user.get_username())


def username_actor(username: str) -> str:
    """The audit actor of a user known by name only (e.g. from an identity system's event)."""
    return f"{USER_PREFIX}{username}"
