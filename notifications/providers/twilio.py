"""SMS through Twilio's Messages API (or anything that speaks it), configured by TWILIO_* settings.

Twilio takes no idempotency key for a new message, so an SMS whose answer was lost is not resent.
"""

from __future__ import annotations

from django.conf import settings

from notifications.providers import DeliveryError, OutgoingMessage, Receipt
from notifications.providers.http import post, raise_for_status


class TwilioSmsProvider:
    name = "twilio"
    idempotent = False

    def breaker_key(self, message: OutgoingMessage) -> str:
        return self.name

    def send(self, message: OutgoingMessage) -> Receipt:
        sid = settings.TWILIO_ACCOUNT_SID
        url = f"{settings.TWILIO_BASE_URL.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
        response = post(
            url,
            timeout=settings.NOTIFICATIONS_PROVIDER_TIMEOUT_S,
            auth=(sid, settings.TWILIO_AUTH_TOKEN),
            data={"To": message.recipient, "From": settings.SMS_FROM_NUMBER, "Body": message.body},
        )
        raise_for_status(response, "twilio")
        try:
            message_sid = response.json()["sid"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DeliveryError.unknown(f"twilio answered {response.status_code} without a sid") from exc
        return Receipt(provider_message_id=str(message_sid), status_code=response.status_code)
