"""Poison messages go to the domain's DLQ whole, with the dlq-* headers, and the flow goes on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from bridge import topics
from bridge.models import DeadLetter
from tests.conftest import Stack
from tests.support.builders import payment_request, structured
from tests.support.kafka import Collector, produce, subject_is

REQUESTED = topics.PAYMENT_REQUESTED.name
DLQ = topics.PAYMENTS_DLQ.name


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{this is not json", "invalid_json"),
        (
            b'{"paymentId":"p-bad-amt","userId":"u","amount":"10.001","currency":"USD","paymentMethod":"c"}',
            "schema_violation",
        ),
        (
            b'{"paymentId":"p-abc","userId":"u","amount":"abc","currency":"USD","paymentMethod":"c"}',
            "schema_violation",
        ),
    ],
)
def test_poison_lands_in_dlq_with_original_bytes_and_flow_continues(
    live: Stack, collector: Collector, raw: bytes, reason: str
) -> None:
    key = f"poison-{reason}-{uuid.uuid4().hex[:8]}"
    produce(live.bootstrap, REQUESTED, raw, key=key, headers=[("x-trace", b"t-1")])
    good = payment_request()
    produce(live.bootstrap, REQUESTED, structured(REQUESTED, good), key=good["paymentId"])

    [dead] = collector.wait_for(DLQ, subject_is(key))
    assert dead.value == raw
    assert dead.headers["x-trace"] == b"t-1"
    assert dead.headers["dlq-reason"] == reason.encode()
    assert dead.headers["dlq-original-topic"] == REQUESTED.encode()
    assert int(dead.headers["dlq-original-offset"]) >= 0
    assert int(dead.headers["dlq-original-partition"]) >= 0
    assert dead.headers["dlq-error"] and dead.headers["dlq-failed-at"].endswith(b"Z")

    collector.wait_for(topics.PAYMENT_PROCESSED.name, subject_is(good["paymentId"]))
    listed = DeadLetter.objects.get(original_topic=REQUESTED, key=key.encode())
    assert bytes(listed.value) == raw and listed.reason == reason


def test_dlq_replay_republishes_the_original_record(live: Stack, collector: Collector) -> None:
    key = f"poison-replay-{uuid.uuid4().hex[:8]}"
    produce(live.bootstrap, REQUESTED, b"[1]", key=key)
    collector.wait_for(DLQ, subject_is(key))
    call_command("dlq_replay", "--topic", DLQ)
    [replayed] = collector.wait_for(REQUESTED, subject_is(key), count=2)[1:]
    assert replayed.value == b"[1]"
    assert not any(k.startswith("dlq-") for k in replayed.headers)


def test_dlq_replay_skips_records_the_platform_did_not_dead_letter(live: Stack, collector: Collector) -> None:
    # Someone able to write to a DLQ topic must not get a record onto another topic through a replay.
    since = datetime.now(UTC)
    injected = f"injected-{uuid.uuid4().hex[:8]}"
    produce(
        live.bootstrap,
        DLQ,
        b'{"transactionId": "x"}',
        key=injected,
        headers=[
            ("dlq-reason", b"invalid_json"),
            ("dlq-original-topic", topics.LEDGER_TRANSACTION_REQUESTED.name.encode()),
            ("dlq-original-partition", b"0"),
            ("dlq-original-offset", b"0"),
            ("dlq-failed-at", since.isoformat().replace("+00:00", "Z").encode()),
        ],
    )
    genuine = f"poison-replay-{uuid.uuid4().hex[:8]}"
    produce(live.bootstrap, REQUESTED, b"[2]", key=genuine)
    [dead] = collector.wait_for(DLQ, subject_is(genuine))
    assert dead.headers["dlq-signature"].startswith(b"v1,")

    call_command("dlq_replay", "--topic", DLQ, "--since", since.isoformat())

    collector.wait_for(REQUESTED, subject_is(genuine), count=2)
    assert not collector.matching(topics.LEDGER_TRANSACTION_REQUESTED.name, subject_is(injected))
