"""Every platform metric is scraped from the web, the bridge and a worker (real processes)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
import requests
from kafka import TopicPartition
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bridge import topics
from bridge.consumer import Bridge, BridgeOptions, _CommitOnRevoke
from bridge.models import OutboxEvent
from core import metrics
from tests.conftest import Stack
from tests.ops.conftest import METRICS_TOKEN, WebProcess
from tests.support.builders import payment_request, structured
from tests.support.kafka import Collector, produce, subject_is

PLATFORM_METRICS = (
    "kafka_messages_total",
    "bridge_consumer_lag",
    "bridge_dispatch_total",
    "dlq_messages_total",
    "outbox_pending",
    "payments_processed_total",
    "payments_failed_total",
    "payment_processing_duration_seconds",
    "ledger_entries_total",
    "ledger_balance_total",
    "notifications_sent_total",
    "notifications_failed_total",
    "audit_events_total",
    "compliance_violations_total",
)


def declared_names(exposition: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", exposition, flags=re.MULTILINE))


def sample(url: str, name: str, **labels: str) -> float:
    """The value of one sample of a scrape (0 when absent)."""
    for family in text_string_to_metric_families(requests.get(url, timeout=5).text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


@pytest.mark.django_db(transaction=True)
def test_web_bridge_and_worker_each_expose_every_platform_metric(
    live: Stack, production_web: WebProcess
) -> None:
    for url in (production_web.url + "/metrics", live.probe_url("bridge"), live.probe_url("worker")):
        # The production web process asks for the metrics token; the stack's (development) do not.
        scrape = requests.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=5)
        missing = set(PLATFORM_METRICS) - declared_names(scrape.text)
        assert not missing, f"{url} lacks {sorted(missing)}"


@pytest.mark.django_db(transaction=True)
def test_worker_scrape_sums_the_pool_processes_that_ran_the_tasks(live: Stack, collector: Collector) -> None:
    worker, bridge = live.probe_url("worker"), live.probe_url("bridge")
    captured_before = sample(worker, "payments_processed_total")
    dispatched_before = sample(
        bridge, "kafka_messages_total", topic=topics.PAYMENT_REQUESTED.name, outcome="dispatched"
    )

    data = payment_request()
    produce(
        live.bootstrap,
        topics.PAYMENT_REQUESTED.name,
        structured(topics.PAYMENT_REQUESTED.name, data),
        key=data["paymentId"],
    )
    collector.wait_for(topics.PAYMENT_PROCESSED.name, subject_is(data["paymentId"]))

    # Tasks ran in prefork children; the main process's scrape still sees their counts.
    assert sample(worker, "payments_processed_total") >= captured_before + 1
    assert sample(worker, "payment_processing_duration_seconds_count") >= 1
    assert (
        sample(bridge, "kafka_messages_total", topic=topics.PAYMENT_REQUESTED.name, outcome="dispatched")
        >= dispatched_before + 1
    )


@pytest.mark.django_db
def test_outbox_pending_is_counted_in_the_database_at_scrape_time() -> None:
    before = REGISTRY.get_sample_value("outbox_pending")
    assert before is not None
    for n in range(3):
        OutboxEvent.objects.create(topic="t", key=f"k{n}", event_type="t", value=b"{}")
    OutboxEvent.objects.filter(key="k0").update(sent_at="2026-01-01T00:00:00Z")

    assert REGISTRY.get_sample_value("outbox_pending") == before + 2


@pytest.mark.django_db(transaction=True)
def test_bridge_consumer_lag_is_exposed_per_assigned_partition(live: Stack) -> None:
    # The bridge checks lag every 10 s; by then each assigned partition has a sample.
    deadline = time.monotonic() + 30
    while True:
        families = {
            f.name: f for f in text_string_to_metric_families(requests.get(live.probe_url("bridge")).text)
        }
        lag = families.get("bridge_consumer_lag")
        if lag is not None and any(
            s.labels.get("topic") == topics.PAYMENT_REQUESTED.name for s in lag.samples
        ):
            break
        assert time.monotonic() < deadline, "no bridge_consumer_lag sample for payments.payment-requested"
        time.sleep(1)
    assert all(s.value >= 0 and s.labels["partition"].isdigit() for s in lag.samples)


def test_a_revoked_partition_drops_its_lag_sample() -> None:
    bridge = Bridge(BridgeOptions(group_id="g", max_queue_depth=10, relay=False))
    metrics.BRIDGE_CONSUMER_LAG.labels(topic="ops.revoked", partition="3").set(7)
    asyncio.run(_CommitOnRevoke(bridge).on_partitions_revoked({TopicPartition("ops.revoked", 3)}))
    [family] = metrics.BRIDGE_CONSUMER_LAG.collect()
    assert not [s for s in family.samples if s.labels["topic"] == "ops.revoked"]
