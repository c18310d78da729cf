"""Orders gets only its own payments, through the real bridge and worker: a shop's payment that
names an order makes no orders task (the bridge counts it in bridge_filtered_total), while the
order's own payment still reaches orders and confirms the order."""

from __future__ import annotations

import json

import requests
from prometheus_client.parser import text_string_to_metric_families

from bridge import topics
from ledger import task_names as ledger_tasks
from ledger.models import Transaction
from ledger.postings import payment_transaction_id
from orders import task_names as order_tasks
from orders.models import OrderStatus
from tests.conftest import Stack
from tests.orders.support import make_product, order_request, place, wait_status
from tests.support.builders import payment_request, structured
from tests.support.kafka import Collector, produce, subject_is
from tests.support.waiting import wait_until

PAYMENT_REQUESTED = topics.PAYMENT_REQUESTED.name
PROCESSED = topics.PAYMENT_PROCESSED.name


def refused_for_orders(stack: Stack) -> float:
    """bridge_filtered_total{topic=payments.payment-processed, task=orders' task} on the bridge."""
    scrape = requests.get(stack.probe_url("bridge"), timeout=5).text
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            if (
                sample.name == "bridge_filtered_total"
                and sample.labels.get("topic") == PROCESSED
                and sample.labels.get("task") == order_tasks.SETTLE_ORDER_PAYMENT
            ):
                return sample.value
    return 0.0


def dispatch_lines(stack: Stack, event_id: str) -> list[str]:
    """The bridge's `dispatched ... to <tasks>` log lines of one event."""
    lines = stack.bridge.log_path.read_text(errors="replace").splitlines()
    logged = [json.loads(line) for line in lines if event_id in line and line.startswith("{")]
    return [entry["event"] for entry in logged if str(entry.get("event", "")).startswith("dispatched ")]


def test_a_shop_payment_naming_an_order_makes_no_orders_task_and_the_orders_own_confirms_it(
    live: Stack, collector: Collector
) -> None:
    product = make_product(available=5)
    data = order_request(product)
    place(live, data)
    # The order's own payment went through the filter to orders, which confirmed the order.
    order = wait_status(data["orderId"], OrderStatus.CONFIRMED)
    transitions = [t.to_status for t in order.transitions.all()]
    before = refused_for_orders(live)

    shop = payment_request(metadata={"orderId": data["orderId"]})
    produce(
        live.bootstrap,
        PAYMENT_REQUESTED,
        structured(PAYMENT_REQUESTED, shop),
        key=shop["paymentId"],
    )

    # Captured and handed to its other consumers (the ledger posted it), while the bridge made
    # no task of orders for it.
    [processed] = collector.wait_for(PROCESSED, subject_is(shop["paymentId"]))
    wait_until(
        lambda: Transaction.objects.filter(transaction_id=payment_transaction_id(shop["paymentId"])).exists(),
        what="the shop payment's capture posted by the ledger",
    )
    wait_until(lambda: refused_for_orders(live) >= before + 1, what="orders' task refused by its filter")
    [dispatched] = wait_until(
        lambda: dispatch_lines(live, processed.json()["id"]), what="the bridge's dispatch of the shop payment"
    )
    assert ledger_tasks.POST_CAPTURED_PAYMENT in dispatched
    assert order_tasks.SETTLE_ORDER_PAYMENT not in dispatched
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED
    assert [t.to_status for t in order.transitions.all()] == transitions
