"""What the apps consume and produce, as they declare it: the bridge's routes are built from
these, and docs/events.md's consumers and producers columns.

Each app that consumes events lists them in its own `consumers.py` as `CONSUMERS`, a sequence of
`Consumer`: the event type (a topic of the catalog, or a family such as every `audit.*` input),
the schema its data is validated against, the Celery task that handles it and, optionally, a
cheap filter (`accepts`, with `accepts_doc` saying in a few words what it lets through): a record
the filter refuses makes no task for that consumer (bridge.dispatcher). The filter is an
optimisation, never the rule: the task must still ignore what is not its own.

Each app that records events in the outbox lists the topics it records them on in its own
`events.py` (next to the builders and `EMITTED_EVENTS`) as `PRODUCES`, a sequence of
`bridge.topics.Topic`. A test (tests/bridge/test_declarations.py) scans each app's code for the
topics it records events on (`topic=topics.X`) and fails when one is not declared, or one
declared is never recorded; docs/events.md's producers are these.

The bridge finds both through Django's app registry (`declared()`, `producers()`), so it never
imports a domain by name: an app that is not installed consumes and produces nothing.

One event type, one schema: every consumer of a type declares the same model (the producer's
published one); the routes refuse a disagreement at start-up rather than validate twice.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from pydantic import BaseModel

from bridge.topics import Topic

MODULE = "consumers"
# The module of each app that holds its event builders, and there the topics it produces.
PRODUCER_MODULE = "events"
PRODUCES = "PRODUCES"

# A consumer's filter: the record's validated `data` in, whether the consumer wants it.
Accepts = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class Consumer:
    """One app's interest in one event type: validated by `schema`, handled by the task `task`."""

    event_type: str
    schema: type[BaseModel]
    task: str
    # `event_type` names a family of topics (bridge.topics.FAMILIES), not one topic.
    family: bool = False
    # Cheap filter on the validated data: what it refuses is never sent to `task`. One that
    # raises accepts (the task decides). Say what it lets through in `accepts_doc`, for the docs.
    accepts: Accepts | None = None
    accepts_doc: str = ""


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


def producers() -> dict[str, tuple[Topic, ...]]:
    """Every installed app that declares `PRODUCES` (app label -> its topics), in INSTALLED_APPS order."""
    found: dict[str, tuple[Topic, ...]] = {}
    for config in apps.get_app_configs():
        name = f"{config.name}.{PRODUCER_MODULE}"
        if importlib.util.find_spec(name) is None:
            continue
        produced: Sequence[Topic] | None = getattr(importlib.import_module(name), PRODUCES, None)
        if produced is None:
            continue
        for topic in produced:
            if not isinstance(topic, Topic):
                raise DeclarationError(f"{name}.{PRODUCES} holds {topic!r}, not a bridge.topics.Topic")
        found[config.label] = tuple(produced)
    return found
