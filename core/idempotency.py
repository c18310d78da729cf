"""Idempotency-Key handling for POST endpoints (IETF draft-ietf-httpapi-idempotency-key-header).

No key: 400. The same key and body: the first answer again (with `Idempotent-Replayed: true`).
The same key with a different body: 422. The same key while the first request is still being
processed: 409. Keys are scoped per client (the authenticated user) and per endpoint.

The key row is claimed in its own committed transaction first, so a concurrent duplicate sees it
at once; the handler's writes and the stored answer then commit together. A handler that raises
or answers with an error releases the key, so a corrected request may reuse it. A claim left
behind by a crashed process expires after IN_FLIGHT_TTL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from core import problems
from core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
IN_FLIGHT_TTL = timedelta(seconds=60)
MAX_KEY_LENGTH = 255


def _problem(code: int, detail: str) -> Response:
    return Response(
        problems.problem_body(code, detail, code="idempotency_key"),
        status=code,
        content_type=problems.CONTENT_TYPE,
    )


def fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    digest.update((request.method or "").encode() + b" " + request.path.encode() + b"\n")
    digest.update(request.body)
    return digest.hexdigest()


def _replay(record: IdempotencyRecord) -> Response:
    headers = {"Idempotent-Replayed": "true"}
    if record.response_location:
        headers["Location"] = record.response_location
    return Response(record.response_body, status=record.response_status, headers=headers)


def _claim(*, client: str, scope: str, key: str, print_: str) -> IdempotencyRecord | Response:
    """The claimed record, or the answer for a key that is already taken."""
    now = timezone.now()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                client=client,
                scope=scope,
                key=key,
                fingerprint=print_,
                state=IdempotencyRecord.State.IN_FLIGHT,
                locked_until=now + IN_FLIGHT_TTL,
            )
    except IntegrityError:
        pass
    with transaction.atomic():
        record = IdempotencyRecord.objects.select_for_update().get(client=client, scope=scope, key=key)
        if record.fingerprint != print_:
            return _problem(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                f"{HEADER} {key!r} was already used with a different request body.",
            )
        if record.state == IdempotencyRecord.State.COMPLETED:
            return _replay(record)
        if record.locked_until > now:
            return _problem(
                status.HTTP_409_CONFLICT, f"A request with {HEADER} {key!r} is still being processed."
            )
        record.locked_until = now + IN_FLIGHT_TTL  # the first attempt died: take it over
        record.save(update_fields=["locked_until"])
        return record


def idempotent(request: Request, *, scope: str, handler: Callable[[], Response]) -> Response:
    """Run `handler` at most once per (client, scope, Idempotency-Key) and replay its answer."""
    key = request.headers.get(HEADER, "").strip()
    if not key:
        return _problem(status.HTTP_400_BAD_REQUEST, f"The {HEADER} header is required.")
    if len(key) > MAX_KEY_LENGTH:
        return _problem(status.HTTP_400_BAD_REQUEST, f"The {HEADER} header is longer than {MAX_KEY_LENGTH}.")
    claimed = _claim(client=f"user:{request.user.pk}", scope=scope, key=key, print_=fingerprint(request))
    if isinstance(claimed, Response):
        return claimed
    try:
        with transaction.atomic():
            response = handler()
            if status.is_success(response.status_code):
                claimed.state = IdempotencyRecord.State.COMPLETED
                claimed.response_status = response.status_code
                claimed.response_body = response.data
                claimed.response_location = response.headers.get("Location", "")
                claimed.save()
                return response
    except BaseException:
        IdempotencyRecord.objects.filter(pk=claimed.pk, state=IdempotencyRecord.State.IN_FLIGHT).delete()
        raise
    IdempotencyRecord.objects.filter(pk=claimed.pk).delete()
    return response
