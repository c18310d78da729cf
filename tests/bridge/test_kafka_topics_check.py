"""`manage.py kafka_topics --check`: the live cluster against the topic catalog and the replication
settings, one line per difference and exit 1 on any, against the real (tansu) broker."""

from __future__ import annotations

import io
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from kafka.admin import NewTopic
from pytest_django.fixtures import Settings

from bridge.clients import new_admin
from bridge.embedded import EmbeddedBroker
from bridge.management.commands import kafka_topics
from bridge.management.commands.kafka_topics import NOT_REPORTED, topic_config
from bridge.topics import CATALOG, DAY_MS, Topic
from tests.support.processes import ROOT, child_env, manage


@pytest.fixture
def catalog(
    kafka_broker: EmbeddedBroker, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Topic]]:
    """A catalog of fresh topics of this test's own on the session's broker, in the command's place
    (the shared stack's topics stay untouched); append to it before running the command."""
    settings.KAFKA_BOOTSTRAP_SERVERS = kafka_broker.bootstrap
    prefix = f"check-{uuid.uuid4().hex[:8]}"
    topics = [
        Topic(f"{prefix}.requested", "paymentId", partitions=4),
        Topic(f"{prefix}.audit", "subject", partitions=2, retention_ms=30 * DAY_MS),
        Topic(f"{prefix}.checkpoints", "sequence", partitions=1, retention_ms=-1, cleanup_policy="compact"),
    ]
    monkeypatch.setattr(kafka_topics, "CATALOG", topics)
    yield topics


def create_live(*topics: NewTopic) -> None:
    """Topics made by hand, not by `--create`: the drift an operator or another tool leaves."""
    admin = new_admin()
    try:
        admin.create_topics(list(topics))
    finally:
        admin.close()


def check() -> tuple[str, str | None]:
    """The command's output and, if it failed, its error (manage.py prints it and exits 1)."""
    out = io.StringIO()
    try:
        call_command("kafka_topics", "--check", stdout=out)
    except CommandError as failed:
        return out.getvalue(), str(failed)
    return out.getvalue(), None


def create_catalog() -> None:
    call_command("kafka_topics", "--create", stdout=io.StringIO())


def test_a_cluster_created_from_the_catalog_matches_it(catalog: list[Topic]) -> None:
    create_catalog()
    out, error = check()
    assert error is None, out
    assert out.strip() == "the cluster matches the catalog (3 topics)"


def test_a_missing_topic_is_drift(catalog: list[Topic]) -> None:
    create_catalog()
    late = Topic(catalog[0].name + "-late", "paymentId")
    catalog.append(late)
    out, error = check()
    assert out.splitlines() == [f"{late.name}\ttopic\texpected present\tlive missing"]
    assert error == "1 differences from the catalog in 1 of its 4 topics"


def test_fewer_or_more_partitions_than_the_catalog_are_drift(catalog: list[Topic]) -> None:
    create_catalog()
    fewer = Topic(catalog[0].name + "-fewer", "paymentId", partitions=6)
    more = Topic(catalog[0].name + "-more", "paymentId", partitions=2)
    catalog += [fewer, more]
    create_live(
        NewTopic(fewer.name, 3, 1, topic_configs=topic_config(fewer)),
        NewTopic(more.name, 5, 1, topic_configs=topic_config(more)),
    )
    out, error = check()
    assert sorted(out.splitlines()) == sorted(
        [f"{fewer.name}\tpartitions\texpected 6\tlive 3", f"{more.name}\tpartitions\texpected 2\tlive 5"]
    )
    assert error == "2 differences from the catalog in 2 of its 5 topics"


def test_a_config_that_differs_is_drift(catalog: list[Topic]) -> None:
    create_catalog()
    audit = Topic(catalog[0].name + "-audit", "subject", retention_ms=30 * DAY_MS)
    catalog.append(audit)
    # Created as the catalog said before someone shortened the retention and turned compaction on.
    live = replace(audit, retention_ms=7 * DAY_MS, cleanup_policy="compact")
    create_live(NewTopic(audit.name, audit.partitions, 1, topic_configs=topic_config(live)))
    out, error = check()
    assert sorted(out.splitlines()) == [
        f"{audit.name}\tcleanup.policy\texpected delete\tlive compact",
        f"{audit.name}\tretention.ms\texpected {30 * DAY_MS}\tlive {7 * DAY_MS}",
    ]
    assert error == "2 differences from the catalog in 1 of its 4 topics"


def test_min_insync_replicas_and_replication_are_checked_against_the_settings(
    catalog: list[Topic], settings: Settings
) -> None:
    create_catalog()
    # The same topics, judged by production's expectations: three replicas, two in sync.
    settings.KAFKA_TOPIC_REPLICATION_FACTOR = 3
    settings.KAFKA_TOPIC_MIN_INSYNC_REPLICAS = 2
    out, error = check()
    lines = out.splitlines()
    for topic in catalog:
        assert f"{topic.name}\treplication\texpected 3\tlive 1" in lines
        assert f"{topic.name}\tmin.insync.replicas\texpected 2\tlive 1" in lines
    assert len(lines) == 6
    assert error == "6 differences from the catalog in 3 of its 3 topics"


def test_a_config_the_broker_does_not_report_fails_the_check_and_says_so(catalog: list[Topic]) -> None:
    """tansu answers DescribeConfigs with the configs a topic was created with, nothing else: a
    topic created bare cannot be shown to match, and the check does not pretend it does."""
    create_catalog()
    bare = Topic(catalog[0].name + "-bare", "paymentId")
    catalog.append(bare)
    create_live(NewTopic(bare.name, bare.partitions, 1))
    out, error = check()
    assert sorted(out.splitlines()) == sorted(
        f"{bare.name}\t{name}\texpected {value}\tlive {NOT_REPORTED}"
        for name, value in topic_config(bare).items()
    )
    assert error == f"5 differences from the catalog in 1 of its 4 topics, 5 of them configs {NOT_REPORTED}"


def test_a_min_insync_above_the_replication_factor_stops_the_command(
    catalog: list[Topic], settings: Settings
) -> None:
    settings.KAFKA_TOPIC_MIN_INSYNC_REPLICAS = 2
    with pytest.raises(CommandError, match="KAFKA_TOPIC_MIN_INSYNC_REPLICAS=2 with KAFKA_TOPIC_REPLICATION"):
        call_command("kafka_topics", "--create", stdout=io.StringIO())


def test_manage_py_exits_1_on_drift_and_0_once_the_catalog_is_created(tmp_path: Path) -> None:
    """The whole catalog, as CI and the operator run it: on a broker of its own, since other tests
    recreate shared topics their own way."""
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    env = child_env({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "DJANGO_DEBUG": "1"})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            manage("kafka_topics", *args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    try:
        empty = run("--check")
        assert empty.returncode == 1, empty.stderr
        assert f"{CATALOG[0].name}\ttopic\texpected present\tlive missing" in empty.stdout.splitlines()
        summary = (
            f"{len(CATALOG)} differences from the catalog in {len(CATALOG)} of its {len(CATALOG)} topics"
        )
        assert summary in empty.stderr

        assert run("--create").returncode == 0
        matching = run("--check")
        assert matching.returncode == 0, matching.stdout + matching.stderr
        assert matching.stdout.strip() == f"the cluster matches the catalog ({len(CATALOG)} topics)"
    finally:
        broker.stop()
