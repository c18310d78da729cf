"""The routing table, built from the apps' declarations (bridge.consumers): event type -> the
schema its data is validated against, the Celery tasks that consume it and their filters."""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, replace

from pydantic import BaseModel, ValidationError

from bridge import topics
from bridge.codec import Envelope, PoisonMessage
from bridge.consumers import Accepts, Consumer, DeclarationError, declared
from core import ids
from core.logs import safe_error

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Filter:
    """A task's filter on one route (bridge.consumers.Consumer.accepts) and what it lets through."""

    task: str
    accepts: Accepts
    doc: str


# The filters that raised in this process: each is logged the first time only.
_raised: set[Filter] = set()


@dataclass(frozen=True)
class Route:
    schema: type[BaseModel]
    tasks: tuple[str, ...]
    # The tasks (of `tasks`) that take only what their filter accepts; the others take everything.
    filters: tuple[Filter, ...] = ()

    def accepting(self, envelope: Envelope) -> tuple[str, ...]:
        """The tasks that want the (validated) event: all but those whose filter refuses its data.
        A filter that raises accepts: the task, which judges anyway, decides."""
        if not self.filters:
            return self.tasks
        refused = {f.task for f in self.filters if not _accepts(f, envelope)}
        return tuple(task for task in self.tasks if task not in refused)

    def filter_of(self, task: str) -> Filter | None:
        return next((f for f in self.filters if f.task == task), None)


def _accepts(candidate: Filter, envelope: Envelope) -> bool:
    try:
        return bool(candidate.accepts(envelope.data))
    except Exception as exc:  # noqa: BLE001 - a broken filter costs the optimisation, never the event
        if candidate not in _raised:
            _raised.add(candidate)
            logger.warning(
                "filter of %s raised on %s %s (%s): it accepts what it cannot judge; logged once",
                candidate.task,
                envelope.type,
                envelope.id,
                safe_error(exc),
            )
        return True


@dataclass(frozen=True)
class _Table:
    by_type: dict[str, Route]
    # Topic families (a regex each, bridge.topics.FAMILIES) and their route, in declaration order.
    families: tuple[tuple[str, str, Route], ...]


def build(consumers: list[Consumer]) -> _Table:
    """One route per event type (or family): its one schema, its tasks in declaration order and
    their filters."""
    schemas: dict[tuple[str, bool], type[BaseModel]] = {}
    tasks: dict[tuple[str, bool], list[str]] = {}
    filters: dict[tuple[str, bool], dict[str, Filter | None]] = {}
    for consumer in consumers:
        key = (consumer.event_type, consumer.family)
        if consumer.family and consumer.event_type not in topics.FAMILIES:
            raise DeclarationError(f"{consumer.task}: no topic family {consumer.event_type!r}")
        if consumer.accepts is not None and not consumer.accepts_doc:
            raise DeclarationError(
                f"{consumer.task} on {consumer.event_type}: a filter (accepts) needs its accepts_doc"
            )
        wanted = Filter(consumer.task, consumer.accepts, consumer.accepts_doc) if consumer.accepts else None
        known_filter = filters.setdefault(key, {}).setdefault(consumer.task, wanted)
        if known_filter != wanted:
            raise DeclarationError(
                f"{consumer.event_type}: {consumer.task} declared twice with different filters"
            )
        known = schemas.setdefault(key, consumer.schema)
        if known is not consumer.schema:
            raise DeclarationError(
                f"{consumer.event_type}: declared with two schemas, {known.__name__} and "
                f"{consumer.schema.__name__} ({consumer.task}); every consumer takes the producer's one"
            )
        if consumer.task not in tasks.setdefault(key, []):
            tasks[key].append(consumer.task)
    by_type: dict[str, Route] = {}
    families: list[tuple[str, str, Route]] = []
    for (name, family), schema in schemas.items():
        declared_filters = filters[(name, family)]
        route = Route(
            schema,
            tuple(tasks[(name, family)]),
            tuple(f for task in tasks[(name, family)] if (f := declared_filters[task]) is not None),
        )
        if family:
            families.append((name, topics.FAMILIES[name], route))
        else:
            by_type[name] = route
    return _Table(by_type, tuple(families))


@functools.cache
def _table() -> _Table:
    return build(declared())


def routes() -> dict[str, Route]:
    """Every event type consumed by name (not through a family), and its route."""
    return dict(_table().by_type)


def family_routes() -> dict[str, Route]:
    """Every declared topic family (say `audit.*`) and its route."""
    return {name: route for name, _pattern, route in _table().families}


def route_for(event_type: str) -> Route | None:
    table = _table()
    route = table.by_type.get(event_type)
    if route is None:
        for _name, pattern, family_route in table.families:
            if re.fullmatch(pattern, event_type):
                return family_route
    return route


def subscription_pattern() -> str:
    """The regex of topics the bridge consumes: every routed type's topic plus each family's."""
    table = _table()
    alternatives = [re.escape(name) for name in sorted(table.by_type)]
    alternatives += [pattern for _name, pattern, _route in table.families]
    return f"^(?:{'|'.join(alternatives)})$"


def validate(envelope: Envelope) -> tuple[Envelope, Route]:
    """The envelope with `data` checked and normalised by its type's schema, and its route."""
    route = route_for(envelope.type)
    if route is None:
        raise PoisonMessage("unknown_type", f"no consumer for event type {envelope.type!r}")
    try:
        model = route.schema.model_validate(envelope.data)
    except ValidationError as exc:
        raise PoisonMessage("schema_violation", f"{envelope.type}: {exc}") from None
    normalised = model.model_dump(exclude_unset=False, exclude_none=True)
    _refuse_reserved_id(envelope, normalised)
    return replace(envelope, data=normalised), route


RESERVED_ID = "reserved_id"


def _refuse_reserved_id(envelope: Envelope, data: dict) -> None:
    """A record from outside the platform may not name its object with one of the platform's
    own ids (core.ids): checked here, once for every domain, where the record's origin is known.
    The field is the topic's key field (the id of what the event creates or concerns)."""
    if envelope.signed:
        return
    topic = topics.lookup(envelope.type)
    field = topic.key_field if topic else None
    if field not in ids.OBJECT_ID_FIELDS:
        return
    value = data.get(field)
    if isinstance(value, str) and ids.is_reserved(value):
        raise PoisonMessage(
            RESERVED_ID, f"{envelope.type}: {field} {value!r} is the platform's own id (unsigned record)"
        )
