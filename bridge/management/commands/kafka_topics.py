"""`manage.py kafka_topics`: list the topic catalog, create its topics (`--create`), or compare the
live cluster with it (`--check`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from bridge.clients import new_admin
from bridge.topics import CATALOG, Topic

NOT_REPORTED = "not reported by the broker"


def topic_config(topic: Topic) -> dict[str, str]:
    """Everything a topic is created with besides partitions and replicas: the catalog's configs
    and the deployment's in-sync minimum."""
    return {**topic.config(), "min.insync.replicas": str(settings.KAFKA_TOPIC_MIN_INSYNC_REPLICAS)}


@dataclass(frozen=True)
class Drift:
    topic: str
    what: str
    expected: str
    live: str

    @property
    def unverified(self) -> bool:
        return self.live == NOT_REPORTED

    def __str__(self) -> str:
        return f"{self.topic}\t{self.what}\texpected {self.expected}\tlive {self.live}"


def catalog_drift(admin: KafkaAdminClient, catalog: Iterable[Topic]) -> list[Drift]:
    """Each way the live topics of `catalog` differ from it and from the replication settings.

    More partitions than the catalog is drift too: keys hash to other partitions than the catalog's
    count, and the catalog (docs/events.md) no longer says what runs. A config the broker leaves out
    of its answer is reported as unverified, never taken as matching (tansu reports only the configs
    a topic was created with)."""
    catalog = list(catalog)
    existing = set(admin.list_topics())
    present = [topic for topic in catalog if topic.name in existing]
    drift = [Drift(t.name, "topic", "present", "missing") for t in catalog if t.name not in existing]
    if not present:
        return drift
    described = {d["name"]: d for d in admin.describe_topics([t.name for t in present])}
    configs = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t.name) for t in present], config_filter="all"
    ).get("topic", {})
    for topic in present:
        partitions = described[topic.name]["partitions"]
        if len(partitions) != topic.partitions:
            drift.append(Drift(topic.name, "partitions", str(topic.partitions), str(len(partitions))))
        replicas = sorted({len(p["replica_nodes"]) for p in partitions})
        expected_replicas = settings.KAFKA_TOPIC_REPLICATION_FACTOR
        if replicas != [expected_replicas]:
            live = "-".join(str(r) for r in sorted({replicas[0], replicas[-1]})) if replicas else "none"
            drift.append(Drift(topic.name, "replication", str(expected_replicas), live))
        live_configs = configs.get(topic.name, {})
        for name, expected in topic_config(topic).items():
            value = live_configs.get(name, {}).get("value")
            if value is None:
                drift.append(Drift(topic.name, name, expected, NOT_REPORTED))
            elif str(value) != expected:
                drift.append(Drift(topic.name, name, expected, str(value)))
    return drift


class Command(BaseCommand):
    help = (
        "List the topic catalog, create its topics (idempotent) with --create, or compare the live "
        "cluster with it with --check (exit 1 on any difference)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        modes = parser.add_mutually_exclusive_group()
        modes.add_argument("--create", action="store_true")
        modes.add_argument("--check", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if not (options["create"] or options["check"]):
            for topic in CATALOG:
                self.stdout.write(f"{topic.name}\tpartitions={topic.partitions}\t{topic_config(topic)}")
            return
        replicas = settings.KAFKA_TOPIC_REPLICATION_FACTOR
        min_insync = settings.KAFKA_TOPIC_MIN_INSYNC_REPLICAS
        if not 1 <= min_insync <= replicas:
            # Production refuses to start with it; with DEBUG on, it stops here.
            raise CommandError(
                f"KAFKA_TOPIC_MIN_INSYNC_REPLICAS={min_insync} with "
                f"KAFKA_TOPIC_REPLICATION_FACTOR={replicas}: no acks=all write could succeed; "
                "set it between 1 and the replication factor."
            )
        admin = new_admin()
        try:
            if options["check"]:
                self.check_catalog(admin)
            else:
                self.create_catalog(admin)
        finally:
            admin.close()

    def create_catalog(self, admin: KafkaAdminClient) -> None:
        existing = set(admin.list_topics())
        for topic in CATALOG:
            if topic.name in existing:
                self.stdout.write(f"exists  {topic.name}")
                continue
            new = NewTopic(
                topic.name,
                num_partitions=topic.partitions,
                replication_factor=settings.KAFKA_TOPIC_REPLICATION_FACTOR,
                topic_configs=topic_config(topic),
            )
            try:
                admin.create_topics([new])
                self.stdout.write(f"created {topic.name} ({topic.partitions} partitions)")
            except TopicAlreadyExistsError:
                self.stdout.write(f"exists  {topic.name}")

    def check_catalog(self, admin: KafkaAdminClient) -> None:
        drift = catalog_drift(admin, CATALOG)
        for line in drift:
            self.stdout.write(str(line))
        if drift:
            unverified = sum(1 for d in drift if d.unverified)
            topics = len({d.topic for d in drift})
            also = f", {unverified} of them configs {NOT_REPORTED}" if unverified else ""
            raise CommandError(
                f"{len(drift)} differences from the catalog in {topics} of its {len(CATALOG)} topics{also}"
            )
        self.stdout.write(f"the cluster matches the catalog ({len(CATALOG)} topics)")
