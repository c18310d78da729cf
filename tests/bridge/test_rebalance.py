"""The bridge's group rebalancing: offsets of dispatched messages are committed before partitions
move to another owner."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError
from kafka.future import Future

from bridge.consumer import Bridge, BridgeOptions, _CommitOnRevoke

# --- the listener on its own ------------------------------------------------------------------


class RecordingConsumer:
    """Stands in for KafkaConsumer.commit_async: records the offsets, answers with `outcome`."""

    def __init__(self, outcome: Exception | None = None) -> None:
        self.outcome = outcome
        self.commits: list[dict[TopicPartition, int]] = []

    def commit_async(self, offsets: dict[TopicPartition, Any]) -> Future:
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})
        return Future().failure(self.outcome) if self.outcome else Future().success(None)


def bridge_with(consumer: RecordingConsumer) -> Bridge:
    bridge = Bridge(BridgeOptions(group_id="g", max_queue_depth=10, relay=False))
    bridge.consumer = consumer  # type: ignore[assignment]
    return bridge


A0, A1, B0 = TopicPartition("audit.a-events", 0), TopicPartition("audit.a-events", 1), TopicPartition("b", 0)


def test_revocation_commits_only_what_was_dispatched_from_the_revoked_partitions() -> None:
    consumer = RecordingConsumer()
    bridge = bridge_with(consumer)
    bridge.offsets.done.update({A0: 5, A1: 9, B0: 3})
    bridge.offsets.committed.update({A1: 9})
    bridge.paused.add(A0)

    asyncio.run(_CommitOnRevoke(bridge).on_partitions_revoked({A0, A1}))

    assert consumer.commits == [{A0: 5}]  # A1 was committed already; B0 stays ours
    assert bridge.offsets.done == {B0: 3} and not bridge.offsets.committed and not bridge.paused


def test_a_refused_commit_on_revocation_is_logged_and_the_partitions_still_let_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bridge = bridge_with(RecordingConsumer(CommitFailedError("generation changed")))
    bridge.offsets.done.update({A0: 5})

    asyncio.run(_CommitOnRevoke(bridge).on_partitions_revoked({A0}))

    assert "offset commit before revocation failed" in caplog.text
    assert not bridge.offsets.done


def test_lost_partitions_are_let_go_without_a_commit() -> None:
    consumer = RecordingConsumer()
    bridge = bridge_with(consumer)
    bridge.offsets.done.update({A0: 5})

    asyncio.run(_CommitOnRevoke(bridge).on_partitions_lost({A0}))

    assert consumer.commits == [] and not bridge.offsets.done
