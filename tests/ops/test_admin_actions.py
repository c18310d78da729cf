"""Admin actions carry their permission: an auditor (view only) is offered none that changes
anything, operators keep every action they run, and a crafted POST of an action changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, Permission, User
from django.test import Client, RequestFactory
from django.urls import reverse

from core import roles
from notifications.models import EndpointKind, WebhookEndpoint
from orders.models import Order, OrderStatus
from tests.conftest import Stack
from tests.orders.support import make_product, order_request, wait_status
from tests.support.users import make_api_user, token_client

# The only actions an auditor may run: working compliance alerts (acknowledge, resolve) is part of
# the auditor's role; everything else an auditor does in the admin is reading.
AUDITOR_ACTIONS: dict[str, set[str]] = {
    "audit.compliancealert": {"acknowledge_selected", "resolve_selected"},
}
# Every action operators run today, by model: none may be lost to the permission checks.
OPERATOR_ACTIONS: dict[str, set[str]] = {
    "payments.payment": {"refund_in_full", "retry_gateway_failure"},
    "orders.order": {"cancel_orders", "mark_shipped", "mark_delivered"},
    "notifications.notification": {"resend"},
    "notifications.webhookendpoint": {"enable", "disable"},
    "bridge.deadletter": {"replay_selected"},
    "bridge.stuckpartition": {"skip_to_dlq"},
    "django_celery_beat.periodictask": {"enable_tasks", "disable_tasks", "toggle_tasks"},
    # Operators assign (and remove) ledger accounts of API clients.
    "ledger.clientaccount": {"delete_selected"},
}


def offered(user: User) -> dict[str, set[str]]:
    """The actions every ModelAdmin of the admin site offers `user`, by model (empty ones left out)."""
    request = RequestFactory().get("/admin/")
    request.user = user
    found = {}
    for model, model_admin in admin.site._registry.items():
        actions = set(model_admin.get_actions(request))
        if actions:
            found[model._meta.label_lower] = actions
    return found


def staff(name: str, role: str) -> User:
    user = User.objects.create_user(username=name, password=f"pw-{name}", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.mark.django_db
def test_an_auditor_is_offered_no_admin_action_that_changes_anything() -> None:
    auditor = staff("ada_auditor", roles.AUDITORS)
    assert offered(auditor) == AUDITOR_ACTIONS


@pytest.mark.django_db
def test_reading_every_model_never_brings_an_action_with_it() -> None:
    # Whatever model an auditor may read now or later: a view permission offers no action.
    reader = staff("rita_reader", roles.AUDITORS)
    reader.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    reader = User.objects.get(pk=reader.pk)  # drop the cached permissions
    assert offered(reader) == AUDITOR_ACTIONS


@pytest.mark.django_db
def test_operators_keep_every_action_they_run() -> None:
    assert offered(staff("olga_operator", roles.OPERATORS)) == OPERATOR_ACTIONS


def admin_browser(user: User) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def run_action(browser: Client, model: type[Any], action: str, pk: Any) -> Any:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return browser.post(url, {"action": action, ACTION_CHECKBOX_NAME: [str(pk)], "index": "0"}, follow=True)


def test_an_auditor_posting_cancel_orders_leaves_the_order_confirmed(live: Stack) -> None:
    product = make_product(available=3, price="1000.00")
    owner = token_client(make_api_user("shopper"))
    body = order_request(product)
    del body["userId"]
    placed = owner.post(
        "/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=f"admin-{body['orderId']}"
    )
    assert placed.status_code == 202, placed.json()
    order = wait_status(body["orderId"], OrderStatus.CONFIRMED)

    auditor = make_api_user("audstaff", role=roles.AUDITORS)
    auditor.is_staff = True
    auditor.save(update_fields=["is_staff"])
    answer = run_action(admin_browser(auditor), Order, "cancel_orders", order.pk)
    # Offered no action, the auditor's changelist has no action form: the POST runs nothing.
    assert answer.status_code == 200 and "cancelled." not in answer.content.decode()
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED

    # The same POST from an operator is what cancels (so the auditor's was refused, not malformed).
    operator = make_api_user("opstaff", role=roles.OPERATORS)
    operator.is_staff = True
    operator.save(update_fields=["is_staff"])
    run_action(admin_browser(operator), Order, "cancel_orders", order.pk)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert (
        order.transitions.filter(to_status=OrderStatus.CANCELLED).get().actor == f"user:{operator.username}"
    )


@pytest.mark.django_db
def test_an_auditor_posting_disable_leaves_another_clients_webhook_endpoint_active() -> None:
    client = User.objects.create_user(username="shop_owner")
    endpoint = WebhookEndpoint.objects.create(
        url="https://shop.example.com/hooks", owner=client, kind=EndpointKind.REGISTERED, event_types=["*"]
    )
    auditor, operator = staff("ada_auditor", roles.AUDITORS), staff("olga_operator", roles.OPERATORS)
    run_action(admin_browser(auditor), WebhookEndpoint, "disable", endpoint.pk)
    endpoint.refresh_from_db()
    assert endpoint.is_active

    run_action(admin_browser(operator), WebhookEndpoint, "disable", endpoint.pk)
    endpoint.refresh_from_db()
    assert not endpoint.is_active
