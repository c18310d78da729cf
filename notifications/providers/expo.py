"""Push through the Expo push service (which forwards to FCM and APNs), configured by EXPO_* settings.

Expo answers each message with a ticket: status `ok` and an id, or `error` with details (for
example DeviceNotRegistered, a recipient problem). It takes no idempotency key.
"""

from __future__ import annotations

from django.conf import settings

from notifications.providers import DeliveryError, OutgoingMessage, Receipt
from notifications.providers.http import post, raise_for_status


class ExpoPushProvider:
    name = "expo"
    idempotent = False

    def breaker_key(self, message: OutgoingMessage) -> str:
        return self.name

    def send(self, message: OutgoingMessage) -> Receipt:
        headers = {"Accept": "application/json"}
        if settings.EXPO_ACCESS_TOKEN:
            headers["Authorization"] = f"Bearer {settings.EXPO_ACCESS_TOKEN}"
        response = post(
            settings.EXPO_PUSH_URL,
            timeout=settings.NOTIFICATIONS_PROVIDER_TIMEOUT_S,
            headers=headers,
            json={
                "to": message.recipient,
                "title": message.subject,
                "body": message.body,
                "data": {"notificationId": message.notification_id},
            },
        )
        raise_for_status(response, "expo")
        try:
            ticket = response.json()["data"]
            status = ticket["status"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DeliveryError.unknown(f"expo answered {response.status_code} without a ticket") from exc
        if status != "ok":
            error = (ticket.get("details") or {}).get("error", "")
            raise DeliveryError.rejected(f"expo: {error or 'error'}: {ticket.get('message', '')}")
        return Receipt(provider_message_id=str(ticket["id"]), status_code=response.status_code)
