"""Periodic tasks in the admin: operators enable, disable and reschedule existing tasks; creating
one, changing what it runs, deleting it or running it on demand is for superusers."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from core import roles

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:django_celery_beat_periodictask_add")
LIST_URL = reverse("admin:django_celery_beat_periodictask_changelist")
TOPUP = "ledger.post_transaction_requested"
ADD_AND_DELETE = ["add_periodictask", "delete_periodictask"]
MIGRATION = "core.migrations.0002_operators_schedule_periodic_tasks_only"


def browser(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator() -> User:
    user = User.objects.create_user(username="olga_operator", password="pw-olga", is_staff=True)
    user.groups.add(Group.objects.get(name=roles.OPERATORS))
    return user


@pytest.fixture
def superuser() -> User:
    return User.objects.create_superuser("sam_super", "sam@example.invalid", "pw-sam")


@pytest.fixture
def every_minute() -> IntervalSchedule:
    return IntervalSchedule.objects.create(every=1, period=IntervalSchedule.MINUTES)


@pytest.fixture
def every_hour() -> IntervalSchedule:
    return IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)


@pytest.fixture
def sweep(every_minute: IntervalSchedule) -> PeriodicTask:
    return PeriodicTask.objects.create(
        name="test sweep", task="bridge.sweep_outbox", interval=every_minute, kwargs="{}", enabled=True
    )


def crafted_topup(interval: IntervalSchedule, **extra: str) -> dict[str, Any]:
    """The POST of a periodic task topping up an account: task, arguments and routing included."""
    return {
        "name": "free money",
        "regtask": TOPUP,
        "task": TOPUP,
        "enabled": "on",
        "interval": str(interval.pk),
        "start_time_0": "",
        "start_time_1": "",
        "args": "[]",
        "kwargs": json.dumps({"payload": {"data": {"kind": "topup", "amount": "5000", "currency": "USD"}}}),
        "queue": "ledger",
        "exchange": "",
        "routing_key": "",
        "headers": "{}",
        "priority": "",
        "expire_seconds": "",
        "description": "",
        **extra,
    }


def test_operators_hold_only_view_and_change_of_periodic_tasks() -> None:
    granted = set(
        Group.objects.get(name=roles.OPERATORS)
        .permissions.filter(content_type__app_label="django_celery_beat")
        .values_list("codename", flat=True)
    )
    assert {"view_periodictask", "change_periodictask"} <= granted
    assert not {c for c in granted if c.startswith(("add_", "delete_"))}


def test_the_upgrade_migration_takes_add_and_delete_from_operators() -> None:
    group = Group.objects.get(name=roles.OPERATORS)
    # An installation migrated under the old grant.
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="django_celery_beat", codename__in=ADD_AND_DELETE)
    )
    migration = importlib.import_module(MIGRATION)

    migration.revoke_add_and_delete(apps, None)

    codenames = set(group.permissions.values_list("codename", flat=True))
    assert "add_periodictask" not in codenames and "delete_periodictask" not in codenames
    assert {"view_periodictask", "change_periodictask"} <= codenames


def test_an_operator_cannot_open_the_add_page_or_post_a_new_periodic_task(
    operator: User, every_minute: IntervalSchedule
) -> None:
    client = browser(operator)
    assert client.get(ADD_URL).status_code == 403

    response = client.post(ADD_URL, crafted_topup(every_minute))

    assert response.status_code == 403
    assert not PeriodicTask.objects.filter(name="free money").exists()
    assert not PeriodicTask.objects.filter(task=TOPUP).exists()


def test_an_operator_reschedules_and_disables_but_cannot_change_what_a_task_runs(
    operator: User, sweep: PeriodicTask, every_hour: IntervalSchedule
) -> None:
    client = browser(operator)
    change_url = reverse("admin:django_celery_beat_periodictask_change", args=[sweep.pk])
    page = client.get(change_url)
    assert page.status_code == 200
    assert 'name="kwargs"' not in page.content.decode(), "arguments are shown read-only"
    assert 'name="regtask"' not in page.content.decode()

    # Enabled unticked, hourly instead of every minute, and a crafted task, arguments and queue.
    post = crafted_topup(every_hour, name="renamed")
    del post["enabled"]
    response = client.post(change_url, post)

    assert response.status_code == 302, response.content.decode()[:2000]
    sweep.refresh_from_db()
    assert sweep.enabled is False
    assert sweep.interval_id == every_hour.pk
    assert (sweep.name, sweep.task, sweep.kwargs, sweep.queue) == (
        "test sweep",
        "bridge.sweep_outbox",
        "{}",
        None,
    )


def test_a_staff_user_granted_add_and_delete_by_hand_still_cannot_create_or_delete(
    operator: User, sweep: PeriodicTask, every_minute: IntervalSchedule
) -> None:
    # The admin itself refuses, whatever permissions a group or user was given outside the roles.
    operator.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="django_celery_beat", codename__in=ADD_AND_DELETE)
    )
    client = browser(operator)
    assert client.get(ADD_URL).status_code == 403
    assert client.post(ADD_URL, crafted_topup(every_minute)).status_code == 403
    assert not PeriodicTask.objects.filter(task=TOPUP).exists()
    delete_url = reverse("admin:django_celery_beat_periodictask_delete", args=[sweep.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert PeriodicTask.objects.filter(pk=sweep.pk).exists()


def test_an_operator_cannot_delete_a_periodic_task(operator: User, sweep: PeriodicTask) -> None:
    delete_url = reverse("admin:django_celery_beat_periodictask_delete", args=[sweep.pk])
    assert browser(operator).post(delete_url, {"post": "yes"}).status_code == 403
    assert PeriodicTask.objects.filter(pk=sweep.pk).exists()


def test_run_task_is_a_superuser_action(operator: User, superuser: User, sweep: PeriodicTask) -> None:
    operators_page = browser(operator).get(LIST_URL).content.decode()
    assert 'value="disable_tasks"' in operators_page, "operators keep the switches"
    assert 'value="run_tasks"' not in operators_page
    assert 'value="run_tasks"' in browser(superuser).get(LIST_URL).content.decode()

    # Posting the action by name does not run it either.
    response = browser(operator).post(
        LIST_URL, {"action": "run_tasks", "_selected_action": [str(sweep.pk)]}, follow=True
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "successfully run" not in page
    assert "No action selected" in page


def test_operators_switch_tasks_off_with_the_bulk_action(operator: User, sweep: PeriodicTask) -> None:
    browser(operator).post(LIST_URL, {"action": "disable_tasks", "_selected_action": [str(sweep.pk)]})
    sweep.refresh_from_db()
    assert sweep.enabled is False


def test_a_superuser_creates_a_periodic_task_with_its_task_and_arguments(
    superuser: User, every_minute: IntervalSchedule
) -> None:
    response = browser(superuser).post(ADD_URL, crafted_topup(every_minute))

    assert response.status_code == 302, response.content.decode()[:2000]
    created = PeriodicTask.objects.get(name="free money")
    assert created.task == TOPUP
    assert json.loads(created.kwargs)["payload"]["data"]["amount"] == "5000"
    assert created.queue == "ledger"
