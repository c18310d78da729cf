"""Email through Django's mail framework: SMTP, the console, or an ESP through django-anymail.

Which one is EMAIL_BACKEND's business (settings.py); this adapter only builds the message (plain
text with an HTML alternative) and translates the backend's errors into DeliveryError. Every
attempt of one notification carries the same Message-ID, derived from the notification id, so a
receiving system that deduplicates by Message-ID sees one message; SMTP itself has no idempotency
key, so email counts as not idempotent.
"""

from __future__ import annotations

import hashlib
import smtplib

import requests
from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from notifications.providers import DeliveryError, OutgoingMessage, Receipt


def message_id_for(notification_id: str) -> str:
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip("> ") or "localhost"
    return f"<{hashlib.sha256(notification_id.encode()).hexdigest()[:32]}@{domain}>"


def _smtp_reply_error(code: int, detail: str) -> DeliveryError:
    if code >= 500:
        return DeliveryError.rejected(detail, status_code=code)
    return DeliveryError.unavailable(detail, status_code=code)


def _classify_send_error(exc: Exception) -> DeliveryError:
    """What an exception raised after the connection was open means for the message."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return _smtp_reply_error(min(codes) if codes else 550, f"recipients refused: {exc.recipients}")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _smtp_reply_error(exc.smtp_code, f"{type(exc).__name__}: {exc.smtp_code} {exc.smtp_error!r}")
    if isinstance(exc, AnymailRecipientsRefused):
        return DeliveryError.rejected(str(exc))
    if isinstance(exc, requests.ConnectionError):  # includes ConnectTimeout: nothing was sent
        return DeliveryError.unavailable(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, AnymailAPIError):
        code = exc.status_code
        if code is not None and 400 <= code < 500 and code not in (408, 429):
            return DeliveryError.rejected(str(exc), status_code=code)
        if code is None and not isinstance(exc, requests.Timeout):
            return DeliveryError.unavailable(str(exc))
        if code is not None:
            return DeliveryError.unavailable(str(exc), status_code=code)
    # A timeout or a dropped connection once the message was on its way: it may have been accepted.
    return DeliveryError.unknown(f"{type(exc).__name__}: {exc}")


class DjangoEmailProvider:
    idempotent = False

    def __init__(self) -> None:
        self.name = "email:" + settings.EMAIL_BACKEND.rsplit(".", 2)[-2]

    def breaker_key(self, message: OutgoingMessage) -> str:
        return self.name

    def send(self, message: OutgoingMessage) -> Receipt:
        message_id = message_id_for(message.notification_id)
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.recipient],
            headers={"Message-ID": message_id, "X-Notification-Id": message.notification_id},
        )
        if message.html_body:
            email.attach_alternative(message.html_body, "text/html")
        connection = get_connection(fail_silently=False)
        try:
            connection.open()
        except (OSError, smtplib.SMTPException, AnymailError) as exc:
            raise DeliveryError.unavailable(f"cannot connect: {type(exc).__name__}: {exc}") from exc
        try:
            sent = connection.send_messages([email])
        except (OSError, smtplib.SMTPException, AnymailError) as exc:
            raise _classify_send_error(exc) from exc
        finally:
            try:
                connection.close()
            except (OSError, smtplib.SMTPException):
                pass  # the message's fate is decided; a failed QUIT changes nothing
        if not sent:
            raise DeliveryError.rejected("the email backend sent nothing")
        status = getattr(email, "anymail_status", None)
        esp_id = getattr(status, "message_id", None) if status is not None else None
        return Receipt(provider_message_id=str(esp_id) if esp_id is not None else message_id.strip("<>"))
