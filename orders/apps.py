"""Django app config for orders (with the inventory it reserves from)."""

from __future__ import annotations

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
