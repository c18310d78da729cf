"""The bridge's routes come from the apps' declared consumers, and docs/events.md's producers from
their declared `PRODUCES`, which a scan of their code keeps true (bridge/consumers.py)."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from pydantic import BaseModel

from audit import task_names as audit_tasks
from bridge import routing, schemas, topics
from bridge.codec import Envelope
from bridge.consumers import Consumer, DeclarationError, declared, producers
from core import ids
from ledger import task_names as ledger_tasks
from notifications import task_names as notification_tasks
from orders import task_names as order_tasks


class _A(BaseModel):
    x: int


class _B(BaseModel):
    x: int


def test_every_domain_declares_its_own_consumers() -> None:
    by_task = {consumer.task: consumer for consumer in declared()}
    # Each task is declared by the app whose name prefixes it (its queue follows that name).
    for consumer in declared():
        assert consumer.task.split(".", 1)[0] in {"payments", "ledger", "notifications", "audit", "orders"}
    assert by_task[ledger_tasks.POST_CAPTURED_PAYMENT].event_type == topics.PAYMENT_PROCESSED.name
    assert by_task[audit_tasks.RECORD_AUDIT_EVENT].family


def test_a_type_consumed_by_several_apps_routes_to_each_in_app_order() -> None:
    route = routing.route_for(topics.PAYMENT_PROCESSED.name)
    assert route is not None
    assert route.tasks == (
        ledger_tasks.POST_CAPTURED_PAYMENT,
        notification_tasks.NOTIFY_PAYMENT_OUTCOME,
        order_tasks.SETTLE_ORDER_PAYMENT,
    )


def test_a_family_routes_its_members_but_not_the_excluded_topics() -> None:
    assert routing.route_for("audit.fx-events") == routing.family_routes()[topics.AUDIT_FAMILY]
    assert routing.route_for(topics.AUDIT_COMPLIANCE_ALERTS.name) is None
    assert routing.route_for("nobody.consumes-this") is None


def test_two_schemas_for_one_type_are_refused() -> None:
    with pytest.raises(DeclarationError, match="two schemas"):
        routing.build([Consumer("t.one", _A, "a.task"), Consumer("t.one", _B, "b.task")])


def test_an_unknown_family_is_refused() -> None:
    with pytest.raises(DeclarationError, match="no topic family"):
        routing.build([Consumer("nope.*", _A, "a.task", family=True)])


def test_the_same_task_declared_twice_for_a_type_runs_once() -> None:
    table = routing.build([Consumer("t.one", _A, "a.task"), Consumer("t.one", _A, "a.task")])
    assert table.by_type["t.one"].tasks == ("a.task",)


def _positive(data: Mapping[str, Any]) -> bool:
    return int(data["x"]) > 0


def _event(event_type: str, data: dict[str, Any]) -> Envelope:
    return Envelope(id="e-1", type=event_type, source="/tests", time="2026-11-23T10:00:00Z", data=data)


def test_a_filtered_task_is_left_out_of_what_its_filter_refuses_and_the_others_keep_it() -> None:
    table = routing.build(
        [
            Consumer("t.one", _A, "a.task"),
            Consumer("t.one", _A, "b.task", accepts=_positive, accepts_doc="positive x only"),
        ]
    )
    route = table.by_type["t.one"]
    assert route.accepting(_event("t.one", {"x": 1})) == ("a.task", "b.task")
    assert route.accepting(_event("t.one", {"x": -1})) == ("a.task",)
    kept = route.filter_of("b.task")
    assert kept is not None and kept.doc == "positive x only" and route.filter_of("a.task") is None


def test_a_filter_without_its_doc_or_declared_twice_differently_is_refused() -> None:
    with pytest.raises(DeclarationError, match="needs its accepts_doc"):
        routing.build([Consumer("t.one", _A, "a.task", accepts=_positive)])
    with pytest.raises(DeclarationError, match="different filters"):
        routing.build(
            [
                Consumer("t.one", _A, "a.task", accepts=_positive, accepts_doc="positive"),
                Consumer("t.one", _A, "a.task"),
            ]
        )


@pytest.mark.parametrize("topic", [topics.PAYMENT_PROCESSED, topics.PAYMENT_FAILED])
def test_orders_takes_only_the_payments_of_orders(topic: topics.Topic) -> None:
    route = routing.route_for(topic.name)
    assert route is not None
    order_payment = _event(topic.name, {"paymentId": f"{ids.ORDER_PAYMENT_PREFIX}{'0' * 32}"})
    shop_payment = _event(topic.name, {"paymentId": "pay_1001", "metadata": {"orderId": "ord_1"}})

    assert order_tasks.SETTLE_ORDER_PAYMENT in route.accepting(order_payment)
    others = tuple(t for t in route.tasks if t != order_tasks.SETTLE_ORDER_PAYMENT)
    assert others and route.accepting(shop_payment) == others


# --- what the apps produce ---------------------------------------------------------------------


def _recording_calls(tree: ast.AST) -> Iterator[tuple[ast.Call, set[str]]]:
    """Each call of `record_event` (the outbox's) and the parameters of the function around it."""
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        arguments = function.args
        parameters = {a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]}
        for node in ast.walk(function):
            if isinstance(node, ast.Call):
                called = node.func
                name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
                if name == "record_event":
                    yield node, parameters


def _catalog_topic(node: ast.expr) -> str | None:
    """The topic of `topics.X` (a catalog constant), else None."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "topics":
        topic = getattr(topics, node.attr, None)
        return topic.name if isinstance(topic, topics.Topic) else None
    return None


def recorded_topics(package: Path) -> set[str]:
    """The topics an app's code records events on: every `topic=topics.X` it passes, whether to
    `outbox.record_event` or to a helper of its own that hands the topic on to it (tests and
    migrations left out). A `record_event` whose topic is neither such a constant nor a parameter
    of its function (which a caller then passes as `topic=topics.X`) fails the scan: unknowable."""
    found: set[str] = set()
    for path in sorted(package.rglob("*.py")):
        if {"tests", "migrations"} & set(path.relative_to(package).parts):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "topic" and (name := _catalog_topic(node.value)):
                found.add(name)
        for call, parameters in _recording_calls(tree):
            [topic] = [k.value for k in call.keywords if k.arg == "topic"] or [None]
            passed_on = isinstance(topic, ast.Name) and topic.id in parameters
            assert topic is not None and (_catalog_topic(topic) or passed_on), (
                f"{path}:{call.lineno}: record_event's topic must be `topic=topics.X` or a parameter "
                "its callers pass as `topic=topics.X`, so that the scan of PRODUCES can read it"
            )
    return found


def project_apps() -> dict[str, Path]:
    """The platform's own installed apps (not Django's or a library's): label -> package."""
    base = Path(settings.BASE_DIR).resolve()
    return {
        c.label: Path(c.path) for c in apps.get_app_configs() if Path(c.path).resolve().is_relative_to(base)
    }


@pytest.mark.parametrize(
    "label", ["payments", "ledger", "notifications", "audit", "orders", "bridge", "core"]
)
def test_each_app_declares_exactly_the_topics_it_records_events_on(label: str) -> None:
    """docs/events.md's producers come from PRODUCES: an app that records an event on a topic it
    does not declare, or declares one it never records, fails here."""
    declared_topics = {t.name for t in producers().get(label, ())}
    assert recorded_topics(project_apps()[label]) == declared_topics


def test_every_type_an_app_describes_in_emitted_events_is_one_it_produces() -> None:
    for label, produced in producers().items():
        emitted = schemas.declared_emitted([apps.get_app_config(label).name])
        assert set(emitted) <= {t.name for t in produced}, label


def test_the_scan_sees_a_topic_recorded_but_not_declared(tmp_path: Path) -> None:
    (tmp_path / "services.py").write_text(
        "def ship(order):\n"
        "    outbox.record_event(topic=topics.ORDER_CREATED, subject=order, data={})\n"
        "    _announce(order, topic=topics.ORDER_STATUS_UPDATED)\n"
        "def _announce(order, *, topic):\n"
        "    outbox.record_event(topic=topic, subject=order, data={})\n"
    )
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "0001.py").write_text("x = f(topic=topics.PAYMENT_FAILED)\n")

    assert recorded_topics(tmp_path) == {topics.ORDER_CREATED.name, topics.ORDER_STATUS_UPDATED.name}

    (tmp_path / "tasks.py").write_text(
        "def f(t):\n    outbox.record_event(topic=lookup(t), subject='', data={})\n"
    )
    with pytest.raises(AssertionError, match="record_event's topic"):
        recorded_topics(tmp_path)
