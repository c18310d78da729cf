"""The provider interface every channel delivers through, and the provider chosen for each channel.

A provider hands one message to the outside world. It answers with a Receipt when the message was
accepted, or raises DeliveryError saying whether trying again may help (`retryable`), whether the
fault is the provider's own (`provider_fault`: it counts towards that provider's circuit breaker),
and whether the message may have been accepted all the same (`outcome_unknown`). A provider that
is `idempotent` deduplicates by the message's idempotency key, so resending after an unknown
outcome is safe; for one that is not, an unknown outcome is never resent automatically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class OutgoingMessage:
    notification_id: str
    channel: str
    recipient: str
    subject: str
    body: str
    html_body: str = ""
    # Same on every attempt of one notification: the provider's (or receiver's) deduplication key.
    idempotency_key: str = ""
    # Webhooks: the signing secret (`whsec_...`) of the endpoint.
    signing_secret: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    provider_message_id: str
    status_code: int | None = None


class DeliveryError(Exception):
    """A message the provider did not (knowingly) accept."""

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        retryable: bool,
        provider_fault: bool,
        status_code: int | None = None,
        outcome_unknown: bool = False,
        endpoint_gone: bool = False,
        response_body: str = "",
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.retryable = retryable
        self.provider_fault = provider_fault
        self.status_code = status_code
        self.outcome_unknown = outcome_unknown
        self.endpoint_gone = endpoint_gone
        # A webhook receiver's answer: for its owner's eyes, never in `detail` (events, logs).
        self.response_body = response_body

    @classmethod
    def unavailable(cls, detail: str, *, status_code: int | None = None) -> DeliveryError:
        """The provider is down, overloaded or answered 5xx/429: try again later."""
        return cls(
            "provider_unavailable", detail, retryable=True, provider_fault=True, status_code=status_code
        )

    @classmethod
    def rejected(cls, detail: str, *, status_code: int | None = None) -> DeliveryError:
        """The provider refused this message (bad recipient, bad content): trying again will not help."""
        return cls("rejected", detail, retryable=False, provider_fault=False, status_code=status_code)

    @classmethod
    def unknown(cls, detail: str) -> DeliveryError:
        """The message was sent but no answer came back: it may or may not have been accepted."""
        return cls("outcome_unknown", detail, retryable=True, provider_fault=True, outcome_unknown=True)


class Provider(Protocol):
    name: str
    idempotent: bool

    def breaker_key(self, message: OutgoingMessage) -> str:
        """The circuit breaker this message's delivery counts towards."""
        ...

    def send(self, message: OutgoingMessage) -> Receipt: ...


def _channel_provider_paths() -> dict[str, str]:
    return {
        "email": "notifications.providers.email.DjangoEmailProvider",
        "sms": settings.NOTIFICATIONS_SMS_PROVIDER,
        "push": settings.NOTIFICATIONS_PUSH_PROVIDER,
        "webhook": "notifications.providers.webhook.WebhookProvider",
    }


@cache
def provider_for(channel: str) -> Provider:
    return import_string(_channel_provider_paths()[channel])()
