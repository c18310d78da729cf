"""Poison tasks: a task whose worker keeps dying under it is dead-lettered instead of run again.

A task is acknowledged only after it ran (`task_acks_late`) and requeued when its pool process dies
(`task_reject_on_worker_lost`): that is what makes a crash lose nothing, and also what would make a
task that kills its process (a segfault, the OOM killer, a RecursionError in C code, a hard time
limit) come back forever and stop its queue. So each run of a task body counts itself in Redis,
keyed by the task id (which a Celery retry keeps), and clears the count when the body finishes in
any way (success, failure or retry). A count still standing is a start whose process died. Only
starts count: a task prefetched by a worker that died before running it costs it nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.exceptions import InvalidTaskError
from celery.worker.request import Request
from django.conf import settings

from core import json_depth

logger = logging.getLogger(__name__)

# A task found with this many unfinished starts is not run a fourth time: it goes to its DLQ.
MAX_UNFINISHED_STARTS = 3
# Longer than any gap between two deliveries of one message (a requeue is immediate; a message of
# a dead worker's main process comes back after the broker's visibility timeout, 10 minutes).
STARTS_TTL_S = 24 * 3600
KEY_PREFIX = "kp:task-starts:"
# The dlq-reason of a task dead-lettered by this rule.
POISON_REASON = "poison"
# A task message's own nesting above its event's data (args, payload, a batch's list) is a few
# levels: twice the data cap leaves room and stays far below the recursion limit.
TASK_MESSAGE_MAX_DEPTH = 2 * json_depth.MAX_JSON_DEPTH


class TaskPoisoned(Exception):
    """The task started MAX_UNFINISHED_STARTS times and never finished."""


class StartCounter:
    """Unfinished starts per task id, in Redis (INCR with a TTL; DEL on finish)."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def start(self, task_id: str) -> int:
        """Record one more start; how many starts are unfinished, this one included."""
        key = KEY_PREFIX + task_id
        pipe = self._redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, STARTS_TTL_S)
        count, _ = pipe.execute()
        return int(count)

    def finish(self, task_id: str) -> None:
        self._redis.delete(KEY_PREFIX + task_id)

    def unfinished(self, task_id: str) -> int:
        return int(self._redis.get(KEY_PREFIX + task_id) or 0)


def is_poison(starts: int) -> bool:
    """`starts` counts the start under way: more than the limit means the limit died before it."""
    return starts > MAX_UNFINISHED_STARTS


_counter: StartCounter | None = None


def counter() -> StartCounter:
    """The process's counter, on the broker's Redis (a worker without it runs nothing anyway)."""
    global _counter
    if _counter is None:
        _counter = StartCounter(
            redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)
        )
    return _counter


def kill_switch_pulled(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Tests only: does an event payload of this task ask its process to die?

    With TASK_TEST_KILL_MARKER set (it never is outside the test suite), a payload whose
    `data.metadata.killWorker` equals it makes the task kill its own pool process before its body:
    a task whose worker dies under it every time, to prove the rule above end to end.
    """
    marker = getattr(settings, "TASK_TEST_KILL_MARKER", "")
    if not marker:
        return False
    payloads: list[Any] = [args[0] if args else kwargs.get("payload")]
    if len(args) > 1 and isinstance(args[1], list):  # bridge.process_batch(task_name, payloads)
        payloads += args[1]
    for payload in payloads:
        data = payload.get("data") if isinstance(payload, dict) else None
        metadata = data.get("metadata") if isinstance(data, dict) else None
        if isinstance(metadata, dict) and metadata.get("killWorker") == marker:
            return True
    return False


class DepthCheckedRequest(Request):
    """The worker's request for a task message, refusing a message nested too deeply unread.

    The worker's main process decodes each message and pickles its arguments for the pool child;
    both recurse once per level, so a message nested ~1000 levels deep kills the main process
    (RecursionError), and the redelivered message kills every restarted worker. Nothing the
    platform sends nests that deep (its inputs are capped at MAX_JSON_DEPTH), so such a message
    was written to Redis by something else: the raw body is measured without recursion first,
    and the message is refused as an invalid task (logged with the head of its body, rejected
    without requeueing: Celery's own handling of InvalidTaskError), never run or retried.
    """

    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        body = message.body
        if isinstance(body, bytes | str):
            depth = json_depth.raw_depth(body, limit=TASK_MESSAGE_MAX_DEPTH)
            if depth > TASK_MESSAGE_MAX_DEPTH:
                raise InvalidTaskError(
                    f"task message nested more than {TASK_MESSAGE_MAX_DEPTH} levels deep: refused unread"
                )
        super().__init__(message, *args, **kwargs)
