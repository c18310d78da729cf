"""`manage.py dlq_replay --topic payments.dlq [--since ...]`: republish dead letters to their topics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bridge.deadletters import publish_original, read_dlq
from bridge.topics import DLQ_BY_DOMAIN


class Command(BaseCommand):
    help = "Replay a dead-letter topic's records to their original topics."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--topic", required=True, choices=sorted(t.name for t in DLQ_BY_DOMAIN.values()))
        parser.add_argument("--since", help="Only records dead-lettered at or after this ISO 8601 time.")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        since = None
        if options["since"]:
            try:
                since = datetime.fromisoformat(options["since"])
            except ValueError:
                raise CommandError(f"--since {options['since']!r} is not an ISO 8601 time") from None
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
        count = 0
        for original_topic, key, value, headers in read_dlq(options["topic"], since=since):
            if not original_topic:
                self.stderr.write("skipping a record without dlq-original-topic")
                continue
            if not options["dry_run"]:
                publish_original(original_topic, key, value, headers)
            count += 1
        verb = "would replay" if options["dry_run"] else "replayed"
        self.stdout.write(f"{verb} {count} records from {options['topic']}")
