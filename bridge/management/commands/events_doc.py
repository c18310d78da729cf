"""`manage.py events_doc [--check]`: write the generated part of docs/events.md, or check it is current."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bridge import events_doc, schemas

# Exit code of --check when the committed document is not what the code generates.
STALE = 1


def default_path() -> Path:
    return Path(settings.BASE_DIR) / "docs" / "events.md"


class Command(BaseCommand):
    help = (
        "Regenerate the topic catalog, consumers, schema links and examples in docs/events.md from "
        "bridge/topics.py, the apps' consumer declarations (<app>/consumers.py) and the event models; "
        "the prose outside the generated part is kept. With --check, write nothing and exit 1 when "
        "the document is out of date."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--check", action="store_true", help="compare with the document; write nothing")
        parser.add_argument("--path", type=Path, default=None, help="the document (default: docs/events.md)")

    def handle(self, *args: Any, check: bool, path: Path | None, **options: Any) -> None:
        path = path or default_path()
        models = schemas.event_models(app.name for app in apps.get_app_configs())
        current = {event_type: schemas.schema_for(event_type, model) for event_type, model in models.items()}
        document = path.read_text()
        try:
            wanted = events_doc.splice(document, events_doc.render(models, current))
        except events_doc.DocumentError as exc:
            raise CommandError(f"{path}: {exc}", returncode=STALE) from None
        if check:
            if wanted != document:
                raise CommandError(
                    f"{path} is out of date with the topic catalog, the routing table or the event "
                    "models: run `python manage.py events_doc` and commit the result.",
                    returncode=STALE,
                )
            self.stdout.write(f"{path} matches the code")
            return
        if wanted != document:
            path.write_text(wanted)
            self.stdout.write(f"{path} regenerated")
        else:
            self.stdout.write(f"{path} was already current")
