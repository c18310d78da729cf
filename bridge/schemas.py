"""Event schemas: a JSON Schema per event type from the pydantic models, and when a change breaks readers.

The catalog is assembled, never listed by hand: the routing table gives the schema of every type
the platform consumes (what the bridge validates), every `audit.*` topic of the topic catalog
takes the audit record's schema, and each app's `events.py` may declare what it emits in
`EMITTED_EVENTS` (topic name or `Topic` -> model). A new routed or declared type gets its schema
the next time `manage.py event_schemas` runs.

The comparison functions are pure (dicts in, changes out) so they can be tested without files.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# What an events module names to declare the events its domain emits (topic -> model).
EMITTED_EVENTS_ATTRIBUTE = "EMITTED_EVENTS"

Schema = dict[str, Any]


# --- the catalog ------------------------------------------------------------------------------


def declared_emitted(app_modules: Iterable[str]) -> dict[str, type[BaseModel]]:
    """`EMITTED_EVENTS` of each app's `events` module (apps without one declare nothing)."""
    declared: dict[str, type[BaseModel]] = {}
    for app in app_modules:
        name = f"{app}.events"
        if importlib.util.find_spec(app) is None or importlib.util.find_spec(name) is None:
            continue
        emitted = getattr(importlib.import_module(name), EMITTED_EVENTS_ATTRIBUTE, {})
        # Topic objects print as their name; plain strings are accepted as they are.
        declared.update({str(topic): model for topic, model in emitted.items()})
    return declared


def event_models(app_modules: Iterable[str]) -> dict[str, type[BaseModel]]:
    """Every event type the platform emits or consumes, with the model that defines its `data`."""
    from bridge import routing, topics

    models: dict[str, type[BaseModel]] = declared_emitted(app_modules)
    for t in topics.CATALOG:
        family_route = routing.route_for(t.name) if t.name not in routing.routes() else None
        if family_route is not None:
            models[t.name] = family_route.schema
    # Consumed types last: the schema the bridge validates against is the one that counts.
    models.update({name: route.schema for name, route in routing.routes().items()})
    return dict(sorted(models.items()))


def topics_without_schema(event_types: Iterable[str]) -> list[str]:
    """Catalog topics carrying events that no model describes (dead-letter topics carry any record)."""
    from bridge import topics

    dead_letter = {t.name for t in topics.DLQ_BY_DOMAIN.values()}
    covered = set(event_types)
    return sorted(t.name for t in topics.CATALOG if t.name not in covered | dead_letter)


def schema_for(event_type: str, model: type[BaseModel]) -> Schema:
    """The JSON Schema of `data` of one event type.

    Validation mode: the schema says what the platform accepts on the topic (an `amount` may be a
    JSON number or a string), which everything it emits also satisfies.
    """
    generated = model.model_json_schema(mode="validation")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{event_type}.json",
        "title": event_type,
        "x-model": f"{model.__module__}.{model.__qualname__}",
        **{k: v for k, v in generated.items() if k != "title"},
    }


def render(schema: Schema) -> str:
    """The committed form of a schema: stable key order (the model's field order) and a newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


# --- compatibility ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference between a committed schema and the model's; `breaking` ones fail --check."""

    event_type: str
    path: str
    detail: str
    breaking: bool

    def __str__(self) -> str:
        where = f"field {self.path!r}" if self.path else "event type"
        return f"{self.event_type}: {where} {self.detail}"


def compare_catalog(committed: Mapping[str, Schema], current: Mapping[str, Schema]) -> list[Change]:
    """The changes from the committed schemas to the current ones, breaking first."""
    changes: list[Change] = []
    for event_type in sorted(committed.keys() - current.keys()):
        changes.append(Change(event_type, "", "removed (no model defines it any more)", breaking=True))
    for event_type in sorted(current.keys() - committed.keys()):
        changes.append(Change(event_type, "", "added", breaking=False))
    for event_type in sorted(committed.keys() & current.keys()):
        changes.extend(compare_schema(event_type, committed[event_type], current[event_type]))
    return sorted(changes, key=lambda c: not c.breaking)


def compare_schema(event_type: str, old: Schema, new: Schema) -> list[Change]:
    """What changed in one type's schema, as readers and writers of the topic see it.

    Breaking: a field removed (a rename is a removal plus an addition), retyped (any change of its
    JSON types, widening included: consumers of what we emit break too), made required, added as
    required, an enum value dropped, extra fields no longer accepted. Compatible: an optional
    field or an enum value added. Anything else that differs (descriptions, length limits, the
    model's module) is reported as a compatible change so the committed file is regenerated.
    """
    comparison = _Comparison(event_type, old, new)
    comparison.objects(old, new, "")
    if not comparison.changes and old != new:
        comparison.add("", "changed (descriptions, constraints or model name)", breaking=False)
    return comparison.changes


class _Comparison:
    def __init__(self, event_type: str, old_root: Schema, new_root: Schema) -> None:
        self.event_type = event_type
        self.old_root = old_root
        self.new_root = new_root
        self.changes: list[Change] = []

    def add(self, path: str, detail: str, *, breaking: bool) -> None:
        self.changes.append(Change(self.event_type, path, detail, breaking))

    def node(self, old: Schema, new: Schema, path: str) -> None:
        old_types, new_types = _types(old, self.old_root), _types(new, self.new_root)
        if old_types != new_types:
            self.add(path, f"retyped from {_show(old_types)} to {_show(new_types)}", breaking=True)
            return
        old_values, new_values = _enum_values(old, self.old_root), _enum_values(new, self.new_root)
        if old_values is not None and new_values is not None:
            for value in sorted(old_values - new_values, key=repr):
                self.add(path, f"no longer allows {value!r}", breaking=True)
            for value in sorted(new_values - old_values, key=repr):
                self.add(path, f"now allows {value!r}", breaking=False)
        old_objects, new_objects = (
            _of_type(old, self.old_root, "object"),
            _of_type(new, self.new_root, "object"),
        )
        if len(old_objects) == 1 and len(new_objects) == 1:
            self.objects(old_objects[0], new_objects[0], path)
        old_arrays, new_arrays = _of_type(old, self.old_root, "array"), _of_type(new, self.new_root, "array")
        if len(old_arrays) == 1 and len(new_arrays) == 1:
            self.node(old_arrays[0].get("items", {}), new_arrays[0].get("items", {}), f"{path}[]")

    def objects(self, old: Schema, new: Schema, path: str) -> None:
        old, new = _resolve(old, self.old_root), _resolve(new, self.new_root)
        old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        removed = sorted(old_fields.keys() - new_fields.keys())
        added = sorted(new_fields.keys() - old_fields.keys())
        for name in removed:
            renamed = (
                f" (renamed to {added[0]!r}? a rename is a removal)"
                if len(removed) == len(added) == 1
                else ""
            )
            self.add(_join(path, name), f"removed{renamed}", breaking=True)
        for name in added:
            if name in new_required:
                self.add(_join(path, name), "added as required (old producers do not send it)", breaking=True)
            else:
                self.add(_join(path, name), "added (optional)", breaking=False)
        for name in old_fields.keys() & new_fields.keys():
            if name in new_required and name not in old_required:
                self.add(_join(path, name), "made required (it was optional)", breaking=True)
            self.node(old_fields[name], new_fields[name], _join(path, name))
        if old.get("additionalProperties", True) is not False and new.get("additionalProperties") is False:
            self.add(path, "no longer accepts extra fields", breaking=True)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _resolve(node: Schema, root: Schema) -> Schema:
    """A node with its `$ref` (to `#/$defs/...`, as pydantic writes them) followed."""
    seen = 0
    while "$ref" in node and seen < 32:  # a bound, not a cycle detector: pydantic's refs end
        target = root.get("$defs", {}).get(node["$ref"].rsplit("/", 1)[-1], {})
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        seen += 1
    return node


def _branches(node: Schema, root: Schema) -> list[Schema]:
    node = _resolve(node, root)
    alternatives = node.get("anyOf") or node.get("oneOf")
    if alternatives:
        return [branch for alt in alternatives for branch in _branches(alt, root)]
    if len(node.get("allOf", [])) == 1:
        return _branches(node["allOf"][0], root)
    return [node]


_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (type(None), "null"))


def _json_type(value: Any) -> str:
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), "object")


def _types(node: Schema, root: Schema) -> frozenset[str]:
    """The JSON types a node allows, with string formats (`string:date-time`); `any` if open."""
    tokens: set[str] = set()
    for branch in _branches(node, root):
        declared = branch.get("type")
        if declared is not None:
            for name in declared if isinstance(declared, list) else [declared]:
                tokens.add(f"{name}:{branch['format']}" if "format" in branch else name)
        elif "const" in branch:
            tokens.add(_json_type(branch["const"]))
        elif "enum" in branch:
            tokens.update(_json_type(v) for v in branch["enum"])
        elif "properties" in branch:
            tokens.add("object")
        else:
            tokens.add("any")
    return frozenset(tokens)


def _enum_values(node: Schema, root: Schema) -> set[Any] | None:
    """The values an enum or const allows, or None when some branch allows any value of its type."""
    values: set[Any] = set()
    for branch in _branches(node, root):
        if "const" in branch:
            values.add(branch["const"])
        elif "enum" in branch:
            values.update(branch["enum"])
        elif branch.get("type") != "null":
            return None
    return values


def _of_type(node: Schema, root: Schema, json_type: str) -> list[Schema]:
    return [
        b
        for b in _branches(node, root)
        if b.get("type") == json_type or (json_type == "object" and "properties" in b)
    ]


def _show(types: frozenset[str]) -> str:
    return " | ".join(sorted(types))
