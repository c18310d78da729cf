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


def test_the_hand_written_producers_table_names_every_catalog_topic_once() -> None:
    """Producers are not declared in code, so the page lists them by hand: none may be forgotten."""
    prose = default_path().read_text().split(events_doc.BEGIN, 1)[0]
    table = prose.split("Who produces each topic", 1)[1].split("\n\n", 2)[1]
    named = [
        name for row in table.splitlines()[2:] for name in re.findall(r"`([a-z.-]+)`", row.split("|")[1])
    ]
    assert sorted(named) == sorted(t.name for t in topics.CATALOG)
