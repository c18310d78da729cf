"""Who did something, as the audit log spells it: `user:<username>` for people and API clients."""

from __future__ import annotations

from typing import Any

USER_PREFIX = "user:"


def user_actor(user: Any) -> str:
    """The audit actor of a Django user (an API client, an operator, an auditor)."""
    return f"{USER_PREFIX}{user.get_username()}"
