"""The bridge's routes come from the apps' declared consumers (bridge/consumers.py)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from bridge import routing, task_names, topics
from bridge.consumers import Consumer, DeclarationError, declared


class _A(BaseModel):
    x: int


class _B(BaseModel):
    x: int


def test_every_domain_declares_its_own_consumers() -> None:
    by_task = {consumer.task: consumer for consumer in declared()}
    # Each task is declared by the app whose name prefixes it (its queue follows that name).
    for consumer in declared():
        assert consumer.task.split(".", 1)[0] in {"payments", "ledger", "notifications", "audit", "orders"}
    assert by_task[task_names.POST_CAPTURED_PAYMENT].event_type == topics.PAYMENT_PROCESSED.name
    assert by_task[task_names.RECORD_AUDIT_EVENT].family


def test_a_type_consumed_by_several_apps_routes_to_each_in_app_order() -> None:
    route = routing.route_for(topics.PAYMENT_PROCESSED.name)
    assert route is not None
    assert route.tasks == (
        task_names.POST_CAPTURED_PAYMENT,
        task_names.NOTIFY_PAYMENT_OUTCOME,
        task_names.SETTLE_ORDER_PAYMENT,
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
