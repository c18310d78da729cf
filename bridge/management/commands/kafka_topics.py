"""`manage.py kafka_topics --create`: create every catalog topic that does not exist yet."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from bridge.clients import new_admin
from bridge.topics import CATALOG


class Command(BaseCommand):
    help = "List the topic catalog, or create its topics (idempotent) with --create."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--create", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["create"]:
            for topic in CATALOG:
                self.stdout.write(f"{topic.name}\tpartitions={topic.partitions}\t{topic.config()}")
            return
        admin = new_admin()
        try:
            existing = set(admin.list_topics())
            for topic in CATALOG:
                if topic.name in existing:
                    self.stdout.write(f"exists  {topic.name}")
                    continue
                new = NewTopic(
                    topic.name,
                    num_partitions=topic.partitions,
                    replication_factor=settings.KAFKA_TOPIC_REPLICATION_FACTOR,
                    topic_configs=topic.config(),
                )
                try:
                    admin.create_topics([new])
                    self.stdout.write(f"created {topic.name} ({topic.partitions} partitions)")
                except TopicAlreadyExistsError:
                    self.stdout.write(f"exists  {topic.name}")
        finally:
            admin.close()
