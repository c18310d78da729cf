"""Celery's broker transport: kombu's Redis transport, fixed so a worker outlives a Redis restart.

When a worker loses Redis, Celery 5.7 calls `Connection.collect()` and then `Connection.close()` on
the broken connection. `collect()` detaches the transport (`transport.client = None`), but it
stops closing channels at the first error from the dead Redis, so the task channel can stay open.
`close()` then closes that channel, and its QoS puts the prefetched, not yet acknowledged
(`acks_late`) tasks back through a new connection pool. kombu reads that pool's address from
`transport.client`, which is None now: "AttributeError: 'NoneType' object has no attribute
'hostname'". Celery only tolerates connection errors there, so the worker exits with "Unrecoverable
error". A task that was running through the outage acknowledges through the same pool, and fails
the same way once the worker has reconnected. The same failure in older kombu: celery/kombu#582,
celery/kombu#970. kombu 5.7.0 and Celery 5.7.0 are the latest releases and still have it.

A channel's Redis address cannot change during its life, so `Channel` works it out once, while the
transport is still attached. After that, a dead Redis shows up as a Redis `ConnectionError`, which
Celery handles: the worker reconnects, and a task it could not put back or acknowledge stays in
Redis's unacked set until `visibility_timeout` redelivers it (the consumers are idempotent).

A second gap loses a task outright. A worker takes a task with BRPOP, which removes it from the
queue, and only then records it in the unacked set. When Redis stops between the two, the record
fails, the task exists only in the worker's memory, and Celery drops it with the broken connection
(celery/kombu#1733): seen in the Redis-restart chaos scenario as a batch of 100 payments never
posted. `QoS` keeps such a task in the process, and the next channel of the process, opened once
Redis answers again, puts it back at the head of its queue.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, get_transport_cls, redis

logger = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis", "rediss")


# Tasks taken off a queue whose unacked record failed (Redis went away in between): (raw message,
# exchange, routing key), put back by the process's next channel.
_stranded: list[tuple[dict[str, Any], str, str]] = []
_stranded_lock = threading.Lock()


class QoS(redis.QoS):
    def append(self, message: Any, delivery_tag: str) -> None:
        try:
            super().append(message, delivery_tag)
        except self.channel.connection_errors:  # type: ignore[attr-defined]  # kombu: not in the stubs
            delivery = message.delivery_info
            with _stranded_lock:
                _stranded.append((message._raw, delivery["exchange"], delivery["routing_key"]))
            logger.warning(
                "task %s taken off %s as Redis went away: kept to be put back on reconnection",
                message.headers.get("id") if isinstance(message.headers, dict) else delivery_tag,
                delivery["routing_key"],
            )
            raise


class Channel(redis.Channel):
    """A Redis channel that keeps its pool parameters so it can still reach Redis after its transport
    has been detached, and puts back the tasks a broken channel of this process took but could not
    record."""

    QoS = QoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pool_params: dict[bool, dict[str, Any]] = {}
        # The parent's constructor PINGs through the asynchronous pool, which records its
        # parameters. The synchronous ones (used for acks and restores) are recorded here.
        super().__init__(*args, **kwargs)
        self._connparams(asynchronous=False)
        self._put_back_stranded()

    def _put_back_stranded(self) -> None:
        with _stranded_lock:
            stranded = list(_stranded)
            _stranded.clear()
        if not stranded:
            return
        try:
            with self.conn_or_acquire() as client, client.pipeline() as pipe:
                for payload, exchange, routing_key in stranded:
                    # rpush: the head BRPOP takes next, where the task was.
                    self._do_restore_message(payload, exchange, routing_key, pipe)  # type: ignore[attr-defined]
                pipe.execute()
        except self.connection_errors:  # type: ignore[attr-defined]  # kombu: not in the stubs
            with _stranded_lock:
                _stranded[:0] = stranded  # for the next channel
            logger.warning("%d stranded task(s) not put back yet: Redis went away again", len(stranded))
            return
        logger.warning("put back %d task(s) taken off their queue as Redis went away", len(stranded))

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if asynchronous not in self._pool_params:
            self._pool_params[asynchronous] = super()._connparams(  # type: ignore[misc]  # kombu private
                asynchronous=asynchronous
            )
        return dict(self._pool_params[asynchronous])


class Transport(redis.Transport):
    Channel = Channel


def use_for_redis_urls() -> None:
    """Make kombu open redis:// and rediss:// URLs with `Transport`, in this process.

    kombu picks the transport by looking up the URL scheme here. Replacing the entry (rather than
    setting Celery's `broker_transport`) leaves the URLs as they are, so `rediss://` still means
    TLS, and the logs and Flower still see a redis:// broker.
    """
    for scheme in REDIS_SCHEMES:
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
        if get_transport_cls(scheme) is not Transport:  # kombu caches what it resolved earlier
            raise RuntimeError(f"kombu resolved {scheme}:// before core.broker was registered")
