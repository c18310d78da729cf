"""`manage.py dlq_replay --topic payments.dlq [--since ...]`: republish dead letters to their topics."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bridge.deadletters import audit_replay, publish_original, read_dlq
from bridge.topics import DLQ_BY_DOMAIN


class Command(BaseCommand):
    help = "Replay a dead-letter topic's records to their original topics."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--topic", required=True, choices=sorted(t.name for t in DLQ_BY_DOMAIN.values()))
        parser.add_argument("--since", help="Only records dead-lettered at or after this ISO 8601 time.")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument(
            "--actor",
            default=None,
            help="Who replays, for the audit log (default: cli:<login name>); e.g. user:<username>.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since = None
        if options["since"]:
            try:
                since = datetime.fromisoformat(options["since"])
            except ValueError:
                raise CommandError(f"--since {options['since']!r} is not an ISO 8601 time") from None
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
        actor = options["actor"] or _login_actor()
        count = 0
        for original_topic, key, value, headers, meta in read_dlq(options["topic"], since=since):
            if not original_topic:
                self.stderr.write("skipping a record without dlq-original-topic")
                continue
            if not options["dry_run"]:
                # As it was, never signed anew: an unsigned record is judged again on its topic.
                publish_original(original_topic, key, value, headers)
                audit_replay(
                    actor=actor,
                    topic=original_topic,
                    partition=_int(meta.get("dlq-original-partition")),
                    offset=_int(meta.get("dlq-original-offset")),
                    reason=meta.get("dlq-reason", ""),
                    via="dlq_replay",
                )
            count += 1
        verb = "would replay" if options["dry_run"] else "replayed"
        self.stdout.write(f"{verb} {count} records from {options['topic']}")


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _login_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # a container user without a passwd entry
        return "cli:unknown"
