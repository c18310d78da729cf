"""`manage.py event_schemas [--check]`: write the JSON Schema of every event type, or check them."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bridge import schemas

# Exit codes of --check (0: the committed schemas are the models').
BREAKING = 1
STALE = 2


def default_dir() -> Path:
    return Path(settings.BASE_DIR) / "schemas" / "events"


def committed_schemas(directory: Path) -> dict[str, schemas.Schema]:
    return {
        path.name.removesuffix(".json"): json.loads(path.read_text()) for path in directory.glob("*.json")
    }


class Command(BaseCommand):
    help = (
        "Write schemas/events/<type>.json for every event type from the pydantic models; with "
        "--check, exit 1 on a backward-incompatible change against the committed files and 2 when "
        "they are only out of date (regenerate and commit)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--check", action="store_true", help="compare with the committed files; write nothing"
        )
        parser.add_argument(
            "--dir", type=Path, default=None, help="schema directory (default: schemas/events)"
        )

    def handle(self, *args: Any, check: bool, dir: Path | None, **options: Any) -> None:  # noqa: A002
        directory = dir or default_dir()
        models = schemas.event_models(app.name for app in apps.get_app_configs())
        current = {event_type: schemas.schema_for(event_type, model) for event_type, model in models.items()}
        committed = committed_schemas(directory)
        changes = schemas.compare_catalog(committed, current)
        breaking = [c for c in changes if c.breaking]

        for topic in schemas.topics_without_schema(current):
            self.stderr.write(f"note: no model describes {topic}; it has no schema")
        if check:
            self._check(directory, changes, breaking)
            return
        self._write(directory, current, committed)
        for change in changes:
            self.stdout.write(f"{'BREAKING ' if change.breaking else ''}{change}")
        if breaking:
            self.stderr.write(
                self.style.WARNING(
                    f"{len(breaking)} backward-incompatible change(s) written: consumers and producers of "
                    "these types must change with them (or add a new event type instead)."
                )
            )
        self.stdout.write(f"{len(current)} event schemas in {directory}")

    def _check(self, directory: Path, changes: list[schemas.Change], breaking: list[schemas.Change]) -> None:
        if breaking:
            lines = "\n".join(f"  {change}" for change in breaking)
            raise CommandError(
                f"backward-incompatible event schema change(s) against {directory}:\n{lines}\n"
                "Keep the old field (deprecate it, add the new one as optional), or publish a new "
                "event type; if the break is intended, run `python manage.py event_schemas` and "
                "commit the result with the consumers' change.",
                returncode=BREAKING,
            )
        if changes:
            lines = "\n".join(f"  {change}" for change in changes)
            # Compatible, but the committed files must hold every field: a field never committed
            # could later be removed without this check noticing.
            raise CommandError(
                f"event schemas in {directory} are out of date (compatible changes):\n{lines}\n"
                "Run `python manage.py event_schemas` and commit schemas/events/.",
                returncode=STALE,
            )
        self.stdout.write(f"event schemas match the models ({directory})")

    def _write(self, directory: Path, current: dict[str, schemas.Schema], committed: dict[str, Any]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for event_type, schema in current.items():
            path = directory / f"{event_type}.json"
            text = schemas.render(schema)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
        for event_type in committed.keys() - current.keys():
            (directory / f"{event_type}.json").unlink()
