"""The Celery application: Redis broker, crash-safe task defaults, one queue per domain."""

from __future__ import annotations

import logging.config
import os
from typing import Any

from celery import Celery, signals
from kombu import Queue

from core import broker, correlation, tracing, worker_probe
from core.queues import TaskQueue, queue_for_task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kafka_platform.settings")

# Before any broker connection exists: redis:// URLs get the transport that survives a Redis restart.
broker.use_for_redis_urls()


def route_task(
    name: str, args: object, kwargs: object, options: object, task: object = None, **kw: object
) -> dict[str, str]:
    return {"queue": queue_for_task(name)}


# Every task rides out short database/Redis outages and dead-letters its event when it fails.
app = Celery("kafka_platform", task_cls="bridge.tasks:EventTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=[Queue(q.value) for q in TaskQueue],
    task_default_queue=TaskQueue.DEFAULT.value,
    task_routes=(route_task,),
    task_serializer="json",
    accept_content=["json"],
    # A task is acknowledged only after it ran; a worker killed mid-task gets it redelivered.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=4,
    task_time_limit=300,
    task_soft_time_limit=240,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler",
    # Celery's Django fixup closes the database connection before and after every task unless this
    # is set: a new PostgreSQL connection per task cost about a tenth of the worker's time (see
    # docs/performance.md). It now recycles them once per this many tasks; between tasks
    # `_release_connections` applies Django's own CONN_MAX_AGE and health rules.
    CELERY_DB_REUSE_MAX=1000,
)
app.autodiscover_tasks()

# Metrics and /healthz of a worker (no-op in other processes); it must run before any metric exists.
worker_probe.install(app)
correlation.connect_celery_signals()
# A task sent during traced work carries its trace context (the event tasks carry it in their payload).
signals.before_task_publish.connect(tracing.add_to_task_headers, weak=False, dispatch_uid="tracing.publish")


@signals.worker_init.connect(weak=False)
def _trace_worker(**kwargs: Any) -> None:
    """Before the pool forks: the children inherit it (the SDK restarts its export thread in each)."""
    tracing.setup("worker")


@signals.worker_process_init.connect(weak=False)
def _own_process_group(**kwargs: Any) -> None:
    """A pool child leaves the worker's process group, so a signal to the group (Ctrl-C in a
    terminal, a process manager such as `make run`'s stopping each group) reaches only the main
    process, which shuts down warm: the task a child is running finishes instead of dying under it
    and being redelivered. A child still dies with its parent (Celery sets PR_SET_PDEATHSIG)."""
    os.setpgid(0, 0)


@signals.beat_init.connect(weak=False)
def _trace_beat(**kwargs: Any) -> None:
    tracing.setup("beat")


@signals.task_postrun.connect(weak=False)
def _release_connections(**kwargs: Any) -> None:
    """Drop a connection that broke or outlived CONN_MAX_AGE, as Django does after a request."""
    from django.db import close_old_connections

    close_old_connections()


@signals.setup_logging.connect(weak=False)
def _log_as_configured(loglevel: int | None = None, **kwargs: Any) -> None:
    """Worker, beat: Django's LOGGING (JSON lines) instead of Celery's own handlers; `-l` sets the level."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)
