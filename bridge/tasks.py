"""Bridge tasks: the base class of event-consuming tasks, and the beat-driven outbox sweep."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis
from celery import shared_task
from celery.contrib.django.task import DjangoTask
from celery.exceptions import Retry
from django.db import InterfaceError, OperationalError, connections, transaction
from kafka.errors import KafkaError
from kombu.exceptions import OperationalError as KombuOperationalError

from bridge import clients, codec, outbox, poison, signing
from bridge.codec import Envelope, IncomingMessage
from bridge.deadletters import dead_letter
from core import correlation, tracing
from core.backoff import Backoff, backoff_delay
from core.logs import safe_error
from core.queues import queue_for_task

logger = logging.getLogger(__name__)

# The sweep leaves fresh rows to the bridge's relay thread, which publishes right after commit.
SWEEP_AFTER_S = 5.0


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    # A publish that found Redis away (a batch sending an unsure payment on as its own task).
    KombuOperationalError,
)
# An outage is ridden out for this long from its first failure, then the task fails for good
# (dead-lettered). The same budget as when the task waited in the worker.
TRANSIENT_RETRY_FOR_S = 180.0
# Celery retries during an outage: 1 s, 2 s, 4 s ... at most 10 s apart, far below the broker's
# visibility timeout (CELERY_VISIBILITY_TIMEOUT, 600 s), so a retry is never redelivered twice.
OUTAGE_RETRY_FIRST_S = 1.0
OUTAGE_RETRY_MAX_S = 10.0
# Message headers carrying an outage across retries: when it started, how many retries so far.
OUTAGE_SINCE_HEADER = "kp_outage_since"
OUTAGE_RETRIES_HEADER = "kp_outage_retries"
# While the broker itself is away the retry cannot be published: wait in the worker, this long
# at first and doubling up to the cap, then run the body again.
BROKER_DOWN_WAIT_FIRST_S = 0.2
BROKER_DOWN_WAIT_MAX_S = 5.0


def outage_retry_countdown(retries: int) -> float:
    return backoff_delay(retries, first=OUTAGE_RETRY_FIRST_S, cap=OUTAGE_RETRY_MAX_S)


class EventTask(DjangoTask):
    """The platform's task class (the Celery app's default).

    Rides out transient database and Redis outages through Celery retries (see `_run`), and, for a task
    whose first argument is an event payload, dead-letters the event when it fails for good.
    Each run is a span, a child of the event's trace context (or of the task message's).
    """

    # False for a task whose run is not about one event or request (the batch task: its events
    # get a span each instead).
    traced = True
    # A message nested deeper than any the platform sends is refused before the worker's main
    # process decodes or pickles it (either would kill that process).
    Request = "bridge.poison:DepthCheckedRequest"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the body, unless it already started MAX_UNFINISHED_STARTS times and never finished
        (its worker died under it each time): then it is dead-lettered (`on_poison`) instead."""
        request = self.request
        if request.called_directly or request.is_eager or not request.id:
            return self._traced(*args, **kwargs)
        task_id = str(request.id)
        starts = self._count_start(task_id)
        if starts is not None and poison.is_poison(starts):
            logger.error(
                "%s[%s]: started %d times without finishing; dead-lettered, not run again",
                self.name,
                task_id,
                starts - 1,
            )
            self.on_poison(starts - 1, args, kwargs)
            self._count_finish(task_id)
            return None
        if poison.kill_switch_pulled(args, kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            return self._traced(*args, **kwargs)
        finally:
            # Whatever way the body ended (a Retry too), it ended: only a dead process leaves a count.
            if starts is not None:
                self._count_finish(task_id)

    def _count_start(self, task_id: str) -> int | None:
        try:
            return poison.counter().start(task_id)
        except redis.exceptions.RedisError as exc:
            # The broker's Redis is away: the task runs uncounted rather than not at all.
            logger.warning("%s[%s]: start not counted: %s", self.name, task_id, safe_error(exc))
            return None

    def _count_finish(self, task_id: str) -> None:
        try:
            poison.counter().finish(task_id)
        except redis.exceptions.RedisError as exc:  # the count expires (STARTS_TTL_S)
            logger.warning("%s[%s]: finish not recorded: %s", self.name, task_id, safe_error(exc))

    def on_poison(self, starts: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Dead-letter the task's event (reason `poison`), with its domain's *-failed event where it
        has one; a task not about an event is dead-lettered as its name and arguments."""
        exc = poison.TaskPoisoned(f"started {starts} times without finishing (its worker died under it)")
        payload = args[0] if args else kwargs.get("payload")
        if isinstance(payload, dict) and "type" in payload:
            event = Envelope.from_task_payload(payload)
            try:
                self.on_event_failed(event, exc)
            finally:
                self._dead_letter(event, exc, reason=poison.POISON_REASON)
            return
        message = IncomingMessage(
            topic=self.name,  # its domain's DLQ (dlq_for reads the first segment)
            partition=-1,
            offset=-1,
            key=str(self.request.id).encode(),
            value=codec.dumps({"task": self.name, "args": list(args), "kwargs": kwargs}),
            headers=[],
        )
        dead_letter(message, reason=poison.POISON_REASON, error=f"{self.name}: {safe_error(exc)}")

    def _traced(self, *args: Any, **kwargs: Any) -> Any:
        if not self.traced:
            return self._run(*args, **kwargs)
        payload = args[0] if args else kwargs.get("payload")
        event = payload if isinstance(payload, dict) and "type" in payload else {}
        with tracing.span(
            self.name,
            parent=tracing.task_parent(payload, self.request),
            kind=tracing.SpanKind.CONSUMER,
            attributes={
                "celery.task_name": self.name,
                "celery.task_id": self.request.id,
                "cloudevents.event_id": event.get("id"),
                "cloudevents.event_type": event.get("type"),
                "cloudevents.event_subject": event.get("subject"),
            }
            if tracing.enabled()
            else None,
        ):
            return self._run(*args, **kwargs)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the body; a database or Redis outage becomes a Celery retry of this message.

        The worker process is free while the outage lasts: the retry is a new message with a
        countdown. It keeps `request.retries` as it was, so an outage never spends a task's own
        retry budget (the gateway's PAYMENTS_GATEWAY_MAX_RETRIES in payments.tasks.RetryPolicy);
        the outage's own budget (TRANSIENT_RETRY_FOR_S) travels in message headers.

        One case stays in the worker: when the broker (Redis) is what is away, the retry cannot be
        published, and neither can the message be acked or requeued. Celery's own `retry` would
        then reject the message without requeueing it (lost, since it was acked late); leaving it
        unacked would bring it back only after the visibility timeout (10 minutes). So only then
        the worker waits (0.2 s doubling to 5 s, within the same outage budget) and runs the body
        again, exactly as before; every body is idempotent, so a second run has its effect once.
        A task called directly (inside process_batch) raises: its caller owns the retry.
        """
        request = self.request
        if request.called_directly or request.is_eager:
            return super().__call__(*args, **kwargs)
        outage_since = float(request.get(OUTAGE_SINCE_HEADER) or 0.0) or None
        outage_retries = int(request.get(OUTAGE_RETRIES_HEADER) or 0)
        broker_waits = Backoff(first=BROKER_DOWN_WAIT_FIRST_S, cap=BROKER_DOWN_WAIT_MAX_S)
        while True:
            try:
                return super().__call__(*args, **kwargs)
            except TRANSIENT_ERRORS as exc:
                connections.close_all()
                outage_since = outage_since or time.time()
                if time.time() - outage_since > TRANSIENT_RETRY_FOR_S:
                    raise
                countdown = outage_retry_countdown(outage_retries)
                retry = self.signature_from_request(
                    request,
                    countdown=countdown,
                    retries=request.retries,  # not one of the task's own retries
                    headers={
                        OUTAGE_SINCE_HEADER: repr(outage_since),
                        OUTAGE_RETRIES_HEADER: str(outage_retries + 1),
                    },
                )
                try:
                    retry.apply_async()
                except Exception as publish_exc:  # noqa: BLE001 - the broker is away: wait here (see above)
                    broker_wait = broker_waits.next_delay()
                    if time.time() + broker_wait - outage_since > TRANSIENT_RETRY_FOR_S:
                        raise exc from publish_exc
                    logger.warning(
                        "%s: %s: %s; the broker is away too (%s): running it again in %.1fs",
                        self.name,
                        type(exc).__name__,
                        exc,
                        safe_error(publish_exc),
                        broker_wait,
                    )
                    time.sleep(broker_wait)
                    continue
                logger.warning("%s: %s: %s; retrying in %.1fs", self.name, type(exc).__name__, exc, countdown)
                # celery-types wants an Exception and a `numbers.Real`; Celery takes any of these.
                raise Retry(exc=cast(Exception, exc), when=cast(Any, countdown), sig=retry) from exc

    def on_failure(
        self, exc: BaseException, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], einfo: Any
    ) -> None:
        payload = args[0] if args else kwargs.get("payload")
        if not isinstance(payload, dict):
            return
        event = Envelope.from_task_payload(payload)
        if getattr(exc, "dlq_reason", None):
            # Refused as a whole (say, an id seen before with other content): not a failure of
            # the work it asks for, so no *-failed event (a ledger.transaction-failed for
            # `payment:<id>` would start the payment's compensation).
            self._dead_letter(event, exc)
            return
        try:
            self.on_event_failed(event, exc)
        finally:
            self._dead_letter(event, exc)

    def on_event_failed(self, event: Envelope, exc: BaseException) -> None:
        """Hook for the domain's *-failed event; the default has none."""

    def _dead_letter(self, event: Envelope, exc: BaseException, *, reason: str = "task_failed") -> None:
        structured = codec.build_event(
            event_type=event.type,
            domain=event.type.split(".", 1)[0],
            subject=event.subject or event.id,
            data=event.data,
            correlation_id=event.correlation_id,
            event_id=event.id,
            actor=event.actor if event.signed else None,
            traceparent=event.traceparent,
            tracestate=event.tracestate,
        )
        value, headers = codec.encode_event(structured)
        if event.signed:
            # The platform's own record, verified when it came in, rebuilt from what was verified:
            # signed again so that a replay of it is judged as the platform's, as it was. A record
            # from outside stays unsigned and is judged again on replay.
            headers = signing.signed_headers(
                headers,
                topic=event.topic or event.type,
                event_id=event.id,
                event_type=event.type,
                value=value,
            )
        message = IncomingMessage(
            topic=event.topic or event.type,
            partition=event.partition if event.partition is not None else -1,
            offset=event.offset if event.offset is not None else -1,
            key=(event.subject or event.id).encode(),
            value=value,
            headers=headers,
        )
        reason = getattr(exc, "dlq_reason", None) or reason
        dead_letter(message, reason=reason, error=f"{self.name}: {safe_error(exc)}")


BatchHandler = Callable[[list[Envelope]], object]
_BATCH_HANDLERS: dict[str, BatchHandler] = {}
H = TypeVar("H", bound=BatchHandler)
T = TypeVar("T")


def batch_handler(task_name: str) -> Callable[[H], H]:
    """Register `fn` to take a whole batch of `task_name`'s events in one go (all or nothing).

    The consumer's one path: its task runs an event it gets alone as a batch of one through `fn`.
    """

    def register(fn: H) -> H:
        _BATCH_HANDLERS[task_name] = fn
        return fn

    return register


def in_one_transaction(body: Callable[[Envelope], T]) -> Callable[[list[Envelope]], list[T]]:
    """A batch handler that runs `body` for each event inside one database transaction, so the
    batch costs one commit (each body's own `atomic` becomes a savepoint). For bodies that only
    write to the database and act on the outside world after commit (`on_commit`)."""

    def handler(events: list[Envelope]) -> list[T]:
        results = []
        with transaction.atomic():
            for event in events:
                with (
                    correlation.bound(
                        event.correlation_id or event.id, event_id=event.id, event_type=event.type
                    ),
                    tracing.within(event),
                ):
                    results.append(body(event))
        return results

    return handler


class BatchTask(EventTask):
    """`bridge.process_batch`: when it fails for good, each of its events is dead-lettered."""

    traced = False  # one span per event (process_batch), no span of its own

    def on_failure(
        self, exc: BaseException, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], einfo: Any
    ) -> None:
        task_name, payloads = (list(args) + [None, None])[:2]
        inner = self.app.tasks.get(task_name) if isinstance(task_name, str) else None
        owner = inner if isinstance(inner, EventTask) else self
        for payload in payloads or []:
            if isinstance(payload, dict):
                owner._dead_letter(Envelope.from_task_payload(payload), exc)

    def on_poison(self, starts: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A batch that keeps killing its worker is split: each event is sent on as its own task,
        so only the event at fault is dead-lettered (after its own starts), never its batch-mates."""
        task_name, payloads = (list(args) + [None, None])[:2]
        if not isinstance(task_name, str) or task_name not in self.app.tasks:
            super().on_poison(starts, args, kwargs)
            return
        for payload in payloads or []:
            self.app.send_task(task_name, args=[payload], queue=queue_for_task(task_name))


@shared_task(name="bridge.process_batch", bind=True, base=BatchTask)
def process_batch(self: BatchTask, task_name: str, payloads: list[dict[str, Any]]) -> dict[str, int]:
    """Run the events the bridge packed into one message through the task `task_name`.

    A task with a registered `batch_handler` (say, the audit log's, which appends a whole batch under
    one chain lock in one transaction) gets them all at once. When the database or Redis is away,
    the whole batch is run again (EventTask). Without a handler, or when it raises anything else,
    each event runs through the task's own body here, in this process. An event whose body raises is
    sent on as a task of its own, so Celery's retries, countdowns and dead-lettering apply to it
    exactly as if the bridge had never batched. Every body is idempotent (inbox, natural keys),
    so running an event again after a crash or a failed batch has its effect once.
    """
    task = self.app.tasks[task_name]
    batch = _BATCH_HANDLERS.get(task_name)
    if batch is not None:
        events = [Envelope.from_task_payload(p) for p in payloads]
        try:
            with tracing.event_spans(task_name, events):
                batch(events)
        except TRANSIENT_ERRORS:
            raise  # the database or Redis is away: EventTask runs the whole batch again
        except Exception as exc:  # noqa: BLE001 - fall back to one event at a time, which isolates it
            logger.warning(
                "%s: batch of %d failed (%s); one by one", task_name, len(payloads), safe_error(exc)
            )
        else:
            return {"events": len(payloads), "batched": len(payloads), "resent": 0}
    resend = []
    for payload in payloads:
        with correlation.bound(
            payload.get("correlationid") or payload.get("id"),
            event_id=payload.get("id"),
            event_type=payload.get("type"),
        ):
            try:
                task(payload)
            except Exception as exc:  # noqa: BLE001 - the event's own task retries or dead-letters it
                logger.warning("%s: %s; sent on as its own task", task_name, safe_error(exc))
                resend.append(payload)
    for payload in resend:
        self.app.send_task(task_name, args=[payload], queue=queue_for_task(task_name))
    return {"events": len(payloads), "batched": 0, "resent": len(resend)}


@shared_task(name="bridge.sweep_outbox")
def sweep_outbox() -> int:
    """Publish outbox rows the relay thread left behind (for example while no bridge ran)."""
    published = 0
    try:
        while (n := outbox.relay_pending(older_than_s=SWEEP_AFTER_S)) > 0:
            published += n
    except KafkaError:
        clients.discard_shared_producer()  # the next sweep publishes with a new one
        raise
    return published
