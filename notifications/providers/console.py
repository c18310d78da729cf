"""Console SMS and push providers for development: the message goes to the log, nowhere else."""

from __future__ import annotations

import hashlib
import logging

from notifications.providers import OutgoingMessage, Receipt

logger = logging.getLogger(__name__)


class _ConsoleProvider:
    # Printing twice is harmless, and the id below is the same for every attempt.
    idempotent = True
    name = "console"

    def breaker_key(self, message: OutgoingMessage) -> str:
        return self.name

    def send(self, message: OutgoingMessage) -> Receipt:
        logger.info(
            "%s to %s [%s]: %s%s",
            message.channel,
            message.recipient,
            message.notification_id,
            f"{message.subject}: " if message.subject else "",
            message.body,
        )
        digest = hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:24]
        return Receipt(provider_message_id=f"{self.name}-{digest}")


class ConsoleSmsProvider(_ConsoleProvider):
    name = "console-sms"


class ConsolePushProvider(_ConsoleProvider):
    name = "console-push"
