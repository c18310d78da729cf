"""What the apps consume, as they declare it: the bridge's routes are built from these.

Each app that consumes events lists them in its own `consumers.py` as `CONSUMERS`, a sequence of
`Consumer`: the event type (a topic of the catalog, or a family such as every `audit.*` input),
the schema its data is validated against, and the Celery task that handles it. The bridge finds
the modules through Django's app registry (`declared()`), so it never imports a domain by name:
an app that is not installed consumes nothing.

One event type, one schema: every consumer of a type declares the same model (the producer's
published one); the routes refuse a disagreement at start-up rather than validate twice.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

from django.apps import apps
from pydantic import BaseModel

MODULE = "consumers"


@dataclass(frozen=True)
class Consumer:
    """One app's interest in one event type: validated by `schema`, handled by the task `task`."""

    event_type: str
    schema: type[BaseModel]
    task: str
    # `event_type` names a family of topics (bridge.topics.FAMILIES), not one topic.
    family: bool = False


class DeclarationError(Exception):
    """The apps' declarations contradict each other (say, two schemas for one event type)."""


def declared() -> list[Consumer]:
    """Every installed app's consumers, in INSTALLED_APPS order (so a type's tasks keep an order)."""
    found: list[Consumer] = []
    for config in apps.get_app_configs():
        name = f"{config.name}.{MODULE}"
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        consumers: Sequence[Consumer] = getattr(module, "CONSUMERS", ())
        for consumer in consumers:
            if not isinstance(consumer, Consumer):
                raise DeclarationError(f"{name}.CONSUMERS holds {consumer!r}, not a Consumer")
            found.append(consumer)
    return found
