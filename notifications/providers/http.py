"""What HTTP provider adapters share: a session per process and the reading of an HTTP answer."""

from __future__ import annotations

from functools import cache
from typing import Any

import requests
from urllib3.exceptions import MaxRetryError, ProtocolError

from notifications.providers import DeliveryError


@cache
def provider_session() -> requests.Session:
    return requests.Session()


def _lost_after_sending(exc: requests.ConnectionError) -> bool:
    """Whether the connection broke once the request was on its way (not while connecting)."""
    cause = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    return isinstance(cause, ProtocolError)


def post(
    url: str, *, timeout: float, session: requests.Session | None = None, **kwargs: Any
) -> requests.Response:
    """POST without following redirects; a transport failure is `unavailable` when nothing was sent,
    `unknown` when the request went out and no answer came back."""
    try:
        return (session or provider_session()).post(url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.ConnectTimeout as exc:
        raise DeliveryError.unavailable(f"{type(exc).__name__}: {exc}") from exc
    except requests.ConnectionError as exc:
        if _lost_after_sending(exc):
            raise DeliveryError.unknown(f"{type(exc).__name__}: {exc}") from exc
        raise DeliveryError.unavailable(f"{type(exc).__name__}: {exc}") from exc
    except requests.Timeout as exc:  # a read timeout: sent, no answer
        raise DeliveryError.unknown(f"{type(exc).__name__}: {exc}") from exc


def raise_for_status(response: requests.Response, what: str) -> None:
    """2xx passes. 5xx, 408, 429 and redirects are the provider's trouble (try again later); any
    other 4xx refuses this message."""
    code = response.status_code
    if 200 <= code < 300:
        return
    detail = f"{what}: HTTP {code} {response.text[:500]}"
    if 400 <= code < 500 and code not in (408, 429):
        raise DeliveryError.rejected(detail, status_code=code)
    raise DeliveryError.unavailable(detail, status_code=code)
