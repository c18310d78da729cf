"""The correlation id of the work in hand, from the incoming event to every log line and outgoing event.

The bridge binds an event's correlation id while it dispatches it; Celery carries it to the
worker in the task message's `correlationid` header (added at publish from the bound value); the
worker binds it again for the task's run; `bridge.outbox.record_event` stamps it on the events the
task emits, and the JSON log formatter (`core.logs`) adds it to every line. A web
request binds the `X-Correlation-ID` header (or a new id), so events an API call publishes carry it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

CONTEXT_KEY = "correlation_id"
# The Celery message header; not `correlation_id`, which Celery itself sets to the task id.
TASK_HEADER = "correlationid"
HTTP_HEADER = "X-Correlation-ID"
MAX_LENGTH = 255

_TASK_KEYS = (CONTEXT_KEY, "task_id", "task_name")


def current() -> str | None:
    """The correlation id bound in this context, if any."""
    value = structlog.contextvars.get_contextvars().get(CONTEXT_KEY)
    return value if isinstance(value, str) and value else None


@contextmanager
def bound(correlation_id: str | None, **fields: Any) -> Iterator[None]:
    """Bind the correlation id (and other log fields) for the `with` block, then restore."""
    values = {k: v for k, v in fields.items() if v is not None}
    if correlation_id:
        values[CONTEXT_KEY] = correlation_id[:MAX_LENGTH]
    with structlog.contextvars.bound_contextvars(**values):
        yield


# --- Celery -------------------------------------------------------------------------------------


def add_to_task_headers(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """`before_task_publish`: a task sent while a correlation id is bound carries it along."""
    correlation_id = current()
    if correlation_id and headers is not None and not headers.get(TASK_HEADER):
        headers[TASK_HEADER] = correlation_id


def _from_task(task: Any, args: tuple[Any, ...] | None, kwargs: Mapping[str, Any] | None) -> str | None:
    header = task.request.get(TASK_HEADER)
    if isinstance(header, str) and header:
        return header
    # A task sent by a client that sets no header: an event payload still names its correlation.
    payload = args[0] if args else (kwargs or {}).get("payload")
    if isinstance(payload, Mapping):
        value = payload.get("correlationid") or payload.get("id")
        if isinstance(value, str) and value:
            return value
    return None


def bind_for_task(
    task_id: str | None = None,
    task: Any = None,
    args: tuple[Any, ...] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    **extra: Any,
) -> None:
    """`task_prerun`: bind the task's correlation id for every log line of its run."""
    structlog.contextvars.unbind_contextvars(*_TASK_KEYS)
    values: dict[str, Any] = {"task_id": task_id, "task_name": getattr(task, "name", None)}
    correlation_id = _from_task(task, args, kwargs) if task is not None else None
    if correlation_id:
        values[CONTEXT_KEY] = correlation_id[:MAX_LENGTH]
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def unbind_after_task(**kwargs: Any) -> None:
    """`task_postrun`: the next task in this process starts with a clean context."""
    structlog.contextvars.unbind_contextvars(*_TASK_KEYS)


def connect_celery_signals() -> None:
    from celery import signals

    signals.before_task_publish.connect(add_to_task_headers, weak=False, dispatch_uid="correlation.publish")
    signals.task_prerun.connect(bind_for_task, weak=False, dispatch_uid="correlation.prerun")
    signals.task_postrun.connect(unbind_after_task, weak=False, dispatch_uid="correlation.postrun")


# --- HTTP ---------------------------------------------------------------------------------------


class CorrelationIdMiddleware:
    """Binds the request's `X-Correlation-ID` (or a new id) and echoes it on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        correlation_id = request.headers.get(HTTP_HEADER, "").strip()[:MAX_LENGTH] or str(uuid.uuid4())
        with bound(correlation_id):
            response = self.get_response(request)
        response[HTTP_HEADER] = correlation_id
        return response
