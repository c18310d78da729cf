"""Admin login lockout (django-axes): wrong passwords for a username from one address lock that
pair out for the cool-off, the right password included; API tokens are not affected."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core import roles

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "pw-correct-horse-battery"
GUESSER = "198.51.100.7"


@pytest.fixture
def operator() -> User:
    user = User.objects.create_user(username="olga_locked", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=roles.OPERATORS))
    return user


def log_in(password: str, *, addr: str = GUESSER) -> tuple[int, bool]:
    """(status, logged in) of one admin login from `addr`."""
    browser = Client(REMOTE_ADDR=addr)
    response = browser.post(LOGIN, {"username": "olga_locked", "password": password}, REMOTE_ADDR=addr)
    return response.status_code, "_auth_user_id" in browser.session


def guess(times: int) -> list[int]:
    return [log_in(f"guess-{n}")[0] for n in range(times)]


def test_the_right_password_still_logs_in_before_the_limit(operator: User) -> None:
    assert set(guess(settings.AXES_FAILURE_LIMIT - 1)) == {200}  # the form again, with its error
    assert log_in(PASSWORD) == (302, True)
    # A success clears the count: the next guesses start from zero.
    assert set(guess(settings.AXES_FAILURE_LIMIT - 1)) == {200}
    assert log_in(PASSWORD) == (302, True)


def test_25_wrong_passwords_lock_the_login_and_the_right_one_is_refused_until_reset(operator: User) -> None:
    answers = guess(25)
    limit = settings.AXES_FAILURE_LIMIT
    assert set(answers[: limit - 1]) == {200} and set(answers[limit:]) == {429}, answers
    assert log_in(PASSWORD) == (429, False)

    # The lock is the username from that address: the operator at their own desk still logs in.
    assert log_in(PASSWORD, addr="203.0.113.50") == (302, True)
    # API token authentication never passes through the lockout.
    api = APIClient(REMOTE_ADDR=GUESSER)
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=operator).key}")
    assert api.get("/api/v1/payments/").status_code == 200

    call_command("axes_reset_username", "olga_locked")
    assert log_in(PASSWORD) == (302, True)


def test_the_lock_ends_after_the_cool_off(operator: User) -> None:
    guess(settings.AXES_FAILURE_LIMIT)
    assert log_in(PASSWORD) == (429, False)
    # As if the cool-off had passed since the failures.
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(hours=2))
    assert log_in(PASSWORD) == (302, True)
