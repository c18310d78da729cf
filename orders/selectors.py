"""Reads of orders and the catalog for the API and the admin: each order read takes the user asking."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from orders.models import Order, Product

# Who sees every order (operators, auditors); an API client sees the ones it placed.
VIEW_ALL_PERMISSION = "orders.view_order"
# Who may cancel, ship and deliver any order (operators); a client may cancel its own.
CHANGE_ANY_PERMISSION = "orders.change_order"
# Who may set products and their stock (operators).
CHANGE_PRODUCT_PERMISSION = "orders.change_product"


def orders_visible_to(user: Any) -> QuerySet[Order]:
    orders = Order.objects.all()
    return orders if user.has_perm(VIEW_ALL_PERMISSION) else orders.filter(client=user)


def order_list(
    *, user: Any, status: str | None = None, user_id: str | None = None, detail: bool = False
) -> QuerySet[Order]:
    """What `user` may see, filtered, newest first; `detail` fetches lines, history and saga too."""
    orders = orders_visible_to(user)
    exact = {"status": status, "user_id": user_id}
    orders = orders.filter(**{field: value for field, value in exact.items() if value})
    orders = orders.prefetch_related("lines")
    if detail:
        orders = orders.prefetch_related("transitions", "saga_steps")
    return orders.order_by("-created_at", "-id")


def may_cancel(*, user: Any, order: Order) -> bool:
    """Operators cancel any order; a client its own; auditors and others none."""
    return user.has_perm(CHANGE_ANY_PERMISSION) or (
        order.client_id is not None and order.client_id == user.pk
    )


def may_fulfil(*, user: Any) -> bool:
    """Marking orders shipped and delivered is for operators."""
    return user.has_perm(CHANGE_ANY_PERMISSION)


def may_set_products(*, user: Any) -> bool:
    return user.has_perm(CHANGE_PRODUCT_PERMISSION)


def product_list() -> QuerySet[Product]:
    """The catalog: every authenticated user may read it."""
    return Product.objects.order_by("product_id")
