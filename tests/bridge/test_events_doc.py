"""docs/events.md's generated part: the committed page matches the code, and a stale one fails the check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from bridge import events_doc, routing, schemas, topics
from bridge.management.commands.events_doc import STALE, default_path
from orders import task_names as order_tasks


def generated_part(text: str) -> str:
    return text.split(events_doc.BEGIN, 1)[1].split(events_doc.END, 1)[0]


def test_the_committed_page_matches_the_code() -> None:
    """What `make test` runs: docs/events.md agrees with the catalog, the routing table and the models."""
    call_command("events_doc", "--check")


def test_every_catalog_topic_has_its_section_with_key_consumers_and_schema() -> None:
    part = generated_part(default_path().read_text())
    dead_letter = {t.name for t in topics.DLQ_BY_DOMAIN.values()}
    for topic in topics.CATALOG:
        section = part.split(f"\n### {topic.name}\n", 1)[1].split("\n### ", 1)[0]
        assert f"key: `{topic.key_field}`" in section, topic.name
        for task in routing.route_for(topic.name).tasks if routing.route_for(topic.name) else ():
            assert f"`{task}`" in section, (topic.name, task)
        if topic.name not in dead_letter:
            assert f"schemas/events/{topic.name}.json" in section, topic.name
            assert "```json" in section, topic.name
    # Topics the hand-written page used to leave out, and a schema it used to deny.
    for name in (
        "orders.order-requested",
        "inventory.stock-updated",
        "users.user-login",
        "audit.checkpoints",
    ):
        assert f"\n### {name}\n" in part
    assert "schemas/events/ledger.balance-updated.json" in part


def test_every_example_is_accepted_by_its_model() -> None:
    models = schemas.event_models(app.name for app in apps.get_app_configs())
    for event_type, model in models.items():
        model.model_validate(events_doc.example(schemas.schema_for(event_type, model), model))


def stale_copy(tmp_path: Path, change: str, into: str) -> Path:
    path = tmp_path / "events.md"
    text = default_path().read_text()
    assert change in text
    path.write_text(text.replace(change, into, 1))
    return path


def test_check_fails_when_the_catalog_changed_under_the_page(tmp_path: Path) -> None:
    # As if a topic's partitions changed in bridge/topics.py after the page was generated.
    path = stale_copy(tmp_path, "- key: `orderId`; 6 partitions", "- key: `orderId`; 3 partitions")

    with pytest.raises(CommandError) as raised:
        call_command("events_doc", "--check", "--path", str(path))
    assert raised.value.returncode == STALE
    assert "events_doc" in str(raised.value)

    call_command("events_doc", "--path", str(path))
    call_command("events_doc", "--check", "--path", str(path))
    assert path.read_text() == default_path().read_text()


def test_regenerating_keeps_the_prose_outside_the_generated_part(tmp_path: Path) -> None:
    path = stale_copy(tmp_path, "## The envelope\n", "## The envelope\n\nA note written by hand.\n")
    path.write_text(re.sub(r"\| `users.dlq` \|[^\n]*\n", "", path.read_text(), count=1))

    call_command("events_doc", "--path", str(path))

    text = path.read_text()
    assert "A note written by hand." in text
    assert generated_part(text) == generated_part(default_path().read_text())


def test_a_page_without_its_markers_is_refused(tmp_path: Path) -> None:
    path = stale_copy(tmp_path, events_doc.END, "")

    with pytest.raises(CommandError) as raised:
        call_command("events_doc", "--path", str(path))
    assert raised.value.returncode == STALE


def section_of(part: str, name: str) -> str:
    return part.split(f"\n### {name}\n", 1)[1].split("\n### ", 1)[0]


def test_every_catalog_topic_names_its_producers_from_the_declarations() -> None:
    """Producers are declared (PRODUCES, kept true by tests/bridge/test_declarations.py): no
    topic is left without one, and the page says what the declarations say."""
    part = generated_part(default_path().read_text())
    for topic in topics.CATALOG:
        assert events_doc.producers(topic.name), f"nobody declares producing {topic.name}"
        assert f"- produced by: {', '.join(events_doc.producers(topic.name))}\n" in section_of(
            part, topic.name
        )
    assert "- produced by: payments\n" in section_of(part, topics.PAYMENT_PROCESSED.name)
    assert "- produced by: payments, orders, clients\n" in section_of(part, topics.PAYMENT_REQUESTED.name)
    assert "- produced by: bridge (dead letters)\n" in section_of(part, topics.ORDERS_DLQ.name)


def test_a_filtered_consumer_says_what_it_takes() -> None:
    part = generated_part(default_path().read_text())
    for topic in (topics.PAYMENT_PROCESSED, topics.PAYMENT_FAILED):
        assert f"`{order_tasks.SETTLE_ORDER_PAYMENT}` (order payments only)" in section_of(part, topic.name)
