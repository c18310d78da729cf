"""The Celery queues: one per domain that has work of its own, and the default for the rest.

A task's queue is the domain its name starts with (`payments.charge_payment` -> `payments`), so
whoever sends a task by name (the bridge, a service) finds its queue without importing the task.
Each app spells the names it sends in its `task_names.py`. A name never changes once released:
periodic-task rows and tasks in flight know a task only by it.
"""

from __future__ import annotations

from enum import StrEnum

from celery import current_app
from django.db import transaction


class TaskQueue(StrEnum):
    PAYMENTS = "payments"
    LEDGER = "ledger"
    NOTIFICATIONS = "notifications"
    AUDIT = "audit"
    DEFAULT = "default"


def queue_for_task(name: str) -> str:
    domain = name.split(".", 1)[0]
    return domain if domain in TaskQueue._value2member_map_ else TaskQueue.DEFAULT.value


def enqueue(task_name: str, *args: object) -> None:
    """Send task `task_name` now, to its queue.

    The one idiom for a service that hands work to a task: by name, so services never import their
    tasks module (which imports them). The process's Celery app (kafka_platform.celery) sends it.
    """
    current_app.send_task(task_name, args=list(args), queue=queue_for_task(task_name))


def enqueue_on_commit(task_name: str, *args: object) -> None:
    """`enqueue` once the caller's transaction commits (arguments as they are now)."""
    transaction.on_commit(lambda: enqueue(task_name, *args))
