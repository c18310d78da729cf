"""Fixtures of the audit tests: users in each role with API tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from core import roles


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(username: str, *, role: str | None = None, staff: bool = True, **extra: Any) -> User:
        user = User.objects.create_user(username=username, password="pw-" + username, is_staff=staff, **extra)
        if role is not None:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def auditor(make_user: Callable[..., User]) -> User:
    return make_user("ada_auditor", role=roles.AUDITORS)


@pytest.fixture
def operator(make_user: Callable[..., User]) -> User:
    return make_user("otto_operator", role=roles.OPERATORS)


@pytest.fixture
def client_user(make_user: Callable[..., User]) -> User:
    return make_user("carla_client", staff=False)
