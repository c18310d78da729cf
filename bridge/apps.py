"""Django app config for the Kafka bridge."""

from __future__ import annotations

from django.apps import AppConfig


class BridgeConfig(AppConfig):
    name = "bridge"
    verbose_name = "Kafka bridge"
