"""Which channels a customer is told on: the one mapping of a `customer` object to recipients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifications.models import Channel


def customer_recipients(customer: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(channel, recipient) for each channel the customer gave an address for (payments, orders)."""
    customer = customer or {}
    addresses = (
        (Channel.EMAIL, customer.get("email")),
        (Channel.SMS, customer.get("phone")),
        (Channel.PUSH, customer.get("pushToken")),
        (Channel.WEBHOOK, customer.get("webhookUrl")),
    )
    return [(channel.value, str(recipient)) for channel, recipient in addresses if recipient]
