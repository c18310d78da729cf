"""API users as the platform knows them: plain clients, operators, auditors, with real tokens."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def make_api_user(name: str, *, role: str | None = None) -> Any:
    """A new user (unique name) in `role`'s group, or a plain API client without one."""
    user = get_user_model().objects.create_user(f"{name}-{uuid.uuid4().hex[:6]}")
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def token_client(user: Any) -> APIClient:
    """An API client that authenticates the way a real one does: `Authorization: Token ...`."""
    token, _ = Token.objects.get_or_create(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api
