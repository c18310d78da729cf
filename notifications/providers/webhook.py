"""Webhooks as a provider: a signed HTTP POST of the notification's JSON body to the recipient URL.

Idempotent in the Standard Webhooks sense: every attempt of one notification has the same
`webhook-id`, which receivers use to drop duplicates, so resending after an unknown outcome is safe.
Any answer but 2xx is retried on the schedule; 410 Gone also disables the endpoint.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from django.conf import settings

from notifications import webhooks
from notifications.providers import DeliveryError, OutgoingMessage, Receipt
from notifications.providers.http import post

USER_AGENT = "kafka-platform-webhooks/1.0"


class WebhookProvider:
    name = "webhook"
    idempotent = True

    def breaker_key(self, message: OutgoingMessage) -> str:
        # One receiver failing must not hold back the others: a breaker per target host.
        return f"webhook:{urlsplit(message.recipient).netloc.lower()}"

    def send(self, message: OutgoingMessage) -> Receipt:
        try:
            webhooks.check_url(message.recipient)
        except webhooks.ForbiddenTarget as exc:
            raise DeliveryError("forbidden_target", str(exc), retryable=False, provider_fault=False) from exc
        body = message.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **webhooks.signature_headers(
                secret=message.signing_secret,
                msg_id=message.idempotency_key,
                timestamp=int(time.time()),
                body=body,
            ),
        }
        try:
            response = post(
                message.recipient,
                timeout=settings.WEBHOOK_TIMEOUT_S,
                session=webhooks.webhook_session(),
                data=body,
                headers=headers,
            )
        except webhooks.ForbiddenTarget as exc:
            raise DeliveryError("forbidden_target", str(exc), retryable=False, provider_fault=False) from exc
        code = response.status_code
        if 200 <= code < 300:
            return Receipt(provider_message_id=message.idempotency_key, status_code=code)
        # The receiver's answer is its owner's business: kept apart from the detail, which goes into
        # the failed event, the notification's last error and log lines.
        detail = f"receiver answered HTTP {code}"
        answer = response.text[:4000]
        if code == 410:
            raise DeliveryError(
                "endpoint_gone",
                detail,
                retryable=False,
                provider_fault=False,
                status_code=code,
                endpoint_gone=True,
                response_body=answer,
            )
        # The receiver's own trouble (5xx, 429, 408, redirects) opens its breaker; other 4xx do not,
        # but Standard Webhooks senders retry them as well: the receiver may be mid-deploy.
        fault = code >= 500 or code in (408, 429) or 300 <= code < 400
        raise DeliveryError(
            "receiver_error",
            detail,
            retryable=True,
            provider_fault=fault,
            status_code=code,
            response_body=answer,
        )
