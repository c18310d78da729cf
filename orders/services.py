"""Order and inventory use cases: intake and validation, the reservation, the order saga (pay,
confirm, ship; release, refund), the reservation timeout, the catalog, and the users.* events.

Every step of an order happens in one transaction with the status change, the transition row,
the audit record and the events it announces (outbox). The order row is locked before any
product row, and products are locked in productId order, so reservations never deadlock and
never oversell: the CHECK constraint on_hand >= reserved is the database's backstop.

Idempotency: an order is one row per orderId; each consumer claims its event in the inbox; each
saga step is a row unique per order (a redelivered event finds it done); the payment's id is
derived from the orderId, so a redelivered order can never pay twice.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.events import audit_record
from audit.services import ComplianceRuleName, Severity, compliance_alert_raise
from bridge import inbox, outbox, topics
from bridge.codec import Envelope
from core import bulk, metrics, state_machine
from core.actors import user_actor, username_actor
from core.ids import ConflictingDuplicate
from core.money import MoneyError, check_precision, format_money, parse_amount, parse_currency
from core.races import run_again_after_race
from notifications import services as notification_services
from notifications.services import CustomerNotice
from orders.events import (
    OrderRequested,
    StockReason,
    UserLogin,
    UserRegistered,
    order_created_event,
    order_notice_context,
    order_notification_prefix,
    order_payment_request,
    order_status_updated_event,
    stock_updated_event,
    welcome_notification_request,
)
from orders.models import (
    CANCELLABLE,
    ORDER_PAYMENT_PREFIX,
    TRANSITIONS,
    CancelReason,
    Order,
    OrderLine,
    OrderStatus,
    OrderTransition,
    Product,
    RejectReason,
    Reservation,
    ReservationStatus,
    SagaStep,
    order_payment_id,
)
from payments import services as payments

logger = logging.getLogger(__name__)

INBOX_CONSUMER = "orders"
PAYMENT_OUTCOME_CONSUMER = "orders.payments"
WELCOME_CONSUMER = "orders.welcome"
USER_AUDIT_CONSUMER = "orders.user-audit"
WORKER_ACTOR = "system:orders-worker"
SAGA_ACTOR = "system:orders-saga"
CARRIER = "simulated-carrier"
EXPIRE_MAX_PER_RUN = 500

# Template keys (seeded by orders/migrations/0003_seed_templates.py).
ORDER_CONFIRMED = "order_confirmed"
ORDER_CANCELLED = "order_cancelled"
ORDER_SHIPPED = "order_shipped"

# Audit actions of the users.* events.
USER_REGISTERED_ACTION = "user.registered"
USER_LOGIN_ACTION = "user.login"


# What a transition may change on the order row besides its status (set by the caller first).
TRANSITION_FIELDS = ["status", "reason", "reason_message", "reservation_expires_at"]


class IllegalTransition(state_machine.IllegalTransition):
    """An order move TRANSITIONS does not allow."""


ORDER_STATES = state_machine.StateMachine(
    noun="order",
    moves=TRANSITIONS,
    id_field="order_id",
    error=IllegalTransition,
    history=OrderTransition,
    history_fk="order",
)


class OrderNotCancellable(Exception):
    """Only an order that has not left the warehouse may be cancelled."""


class ProductInvalid(ValueError):
    """A product an operator set that cannot be (negative stock, a price its currency cannot hold)."""


class _Refused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- building blocks ------------------------------------------------------------------------------


def _audit(order: Order, *, action: str, actor: str, details: dict[str, Any]) -> None:
    if actor in (WORKER_ACTOR, SAGA_ACTOR) and order.client_id is not None:
        # The worker finishes what an API client asked for: the client is the actor on record.
        details = {**details, "performedBy": actor}
        actor = user_actor(order.client)
    outbox.record_event(
        topic=topics.AUDIT_ORDER_EVENTS,
        subject=order.order_id,
        correlation_id=order.correlation_id or None,
        data=audit_record(
            action=action,
            subject_type="order",
            subject_id=order.order_id,
            actor=actor,
            details={
                "total": format_money(order.total, order.currency),
                "currency": order.currency,
                "userId": order.user_id,
                **details,
            },
        ),
    )


def _transition(order: Order, to_status: str, *, actor: str, reason: str = "") -> None:
    """Move `order` (row locked by the caller) to `to_status`: guarded, recorded, audited, announced."""
    ORDER_STATES.check(order, to_status)
    from_status = order.status
    order.status = to_status
    bulk.update(order, TRANSITION_FIELDS)
    ORDER_STATES.record(order, from_status, actor=actor, reason=reason)
    _audit(
        order,
        action=f"order.{to_status}",
        actor=actor,
        details={"fromStatus": from_status or None, "toStatus": to_status, "reason": reason or None},
    )
    outbox.record_event(
        topic=topics.ORDER_STATUS_UPDATED,
        subject=order.order_id,
        correlation_id=order.correlation_id or None,
        data=order_status_updated_event(
            order, old_status=from_status, actor=actor, reason=reason
        ).model_dump(),
    )
    transaction.on_commit(lambda: metrics.ORDERS.labels(status=to_status).inc())


def _saga_step(order: Order, step: str, detail: str = "") -> bool:
    """Record `step` of the order's saga; False when it was already done (a redelivery)."""
    _, created = SagaStep.objects.get_or_create(order=order, step=step, defaults={"detail": detail[:4000]})
    return created


def _first_saga_step(order: Order, step: str, detail: str = "") -> None:
    """Record `step`, which the order's status (locked) says cannot have been done: no lookup first,
    and written with the batch's other rows (the unique (order, step) constraint stands behind it)."""
    bulk.insert(SagaStep(order=order, step=step, detail=detail[:4000]))


def _notify_customer(
    order: Order,
    *,
    template: str,
    occasion: str,
    context: dict[str, Any],
    notices: list[CustomerNotice] | None = None,
) -> None:
    """Ask notifications to tell the customer, on every channel the order's customer gave and the
    order's client's registered webhook endpoints that want `template` (notifications decides);
    now, or with the batch's other `notices` when given."""
    notice = CustomerNotice(
        notification_prefix=order_notification_prefix(order),
        client_id=order.client_id,
        customer=order.request.get("customer"),
        occasion=occasion,
        template_key=template,
        context=order_notice_context(order, context),
        correlation_id=order.correlation_id or None,
    )
    if notices is None:
        notification_services.customer_notify_many([notice])
    else:
        notices.append(notice)


def _stock_changed(product: Product, *, change: int, reason: str) -> None:
    bulk.update(product, ["on_hand", "reserved"])
    outbox.record_event(
        topic=topics.INVENTORY_STOCK_UPDATED,
        subject=product.product_id,
        data=stock_updated_event(product, change=change, reason=reason).model_dump(),
    )


def _locked_products(product_ids: set[str]) -> dict[str, Product]:
    """The products, row-locked in productId order (one order for every transaction: no deadlock)."""
    return {
        p.product_id: p
        for p in Product.objects.select_for_update().filter(product_id__in=product_ids).order_by("product_id")
    }


def _holdings(orders: Sequence[Order], status: str) -> dict[int, list[Reservation]]:
    """The `orders`' reservations in `status`, by order pk, with their products row-locked (in
    productId order) and shared: every reservation of one product holds the same row object."""
    reservations = list(
        Reservation.objects.filter(order__in=[order.pk for order in orders], status=status).order_by("id")
    )
    products = {
        p.pk: p
        for p in Product.objects.select_for_update()
        .filter(pk__in={r.product_id for r in reservations})
        .order_by("product_id")
    }
    by_order: dict[int, list[Reservation]] = defaultdict(list)
    for reservation in reservations:
        reservation.product = products[reservation.product_id]
        by_order[reservation.order_id].append(reservation)
    return by_order


def _wanted(request: OrderRequested) -> dict[str, int]:
    """Units per product (two lines of one product reserve their sum). The order's lines are the
    request's items: a request that differs from its stored order is refused before this."""
    wanted: dict[str, int] = defaultdict(int)
    for item in request.items:
        wanted[item.productId] += item.quantity
    return dict(wanted)


# --- intake ---------------------------------------------------------------------------------------


def _new_order(*, request: OrderRequested, data: dict[str, Any], client: Any, correlation_id: str) -> Order:
    """The order `request` asks for, not yet saved, with no status yet."""
    subtotal = sum((item.price * item.quantity for item in request.items), Decimal(0))
    given = request.totals
    tax = given.tax if given and given.tax is not None else Decimal(0)
    shipping = given.shipping if given and given.shipping is not None else Decimal(0)
    return Order(
        order_id=request.orderId,
        user_id=request.userId,
        merchant_id=request.merchantId,
        currency=request.currency,
        subtotal=subtotal,
        tax=tax,
        shipping=shipping,
        total=subtotal + tax + shipping,
        status="",
        payment_id=order_payment_id(request.orderId),
        request=data,
        client=client,
        correlation_id=correlation_id,
    )


def _create(new: Sequence[tuple[Order, OrderRequested]], *, actor: str) -> None:
    """Write the `new` orders (one INSERT for all; IntegrityError when an orderId exists) and their
    lines; each becomes pending and announces orders.order-created."""
    Order.objects.bulk_create([order for order, _ in new])
    for order, request in new:
        for item in request.items:
            bulk.insert(
                OrderLine(
                    order=order, product_id=item.productId, quantity=item.quantity, unit_price=item.price
                )
            )
        _transition(order, OrderStatus.PENDING, actor=actor)
        outbox.record_event(
            topic=topics.ORDER_CREATED,
            subject=order.order_id,
            correlation_id=order.correlation_id or None,
            data=order_created_event(order).model_dump(exclude_none=True),
        )


@transaction.atomic
def order_request_create(*, client: Any, request: OrderRequested, correlation_id: str) -> Order:
    """An API client's order: it exists (pending) and its orders.order-requested is on its way."""
    data = request.model_dump(exclude_none=True)
    order = _new_order(request=request, data=data, client=client, correlation_id=correlation_id)
    with bulk.deferred_writes():
        _create([(order, request)], actor=user_actor(client))
        outbox.record_event(
            topic=topics.ORDER_REQUESTED, subject=order.order_id, data=data, correlation_id=correlation_id
        )
    return order


def _check(order: Order, request: OrderRequested, catalog: dict[str, Product]) -> None:
    """The business rules of an order, against `catalog` (its products, locked); raises _Refused
    with its rejection reason."""
    if not request.items:
        raise _Refused(RejectReason.VALIDATION_ERROR, "an order needs at least one item")
    for item in request.items:
        if item.quantity < 1:
            raise _Refused(
                RejectReason.VALIDATION_ERROR,
                f"quantity of {item.productId} must be at least 1, got {item.quantity}",
            )
    for item in request.items:
        product = catalog.get(item.productId)
        if product is None:
            raise _Refused(RejectReason.UNKNOWN_PRODUCT, f"product {item.productId} is not in the catalog")
        if product.currency != order.currency:
            raise _Refused(
                RejectReason.VALIDATION_ERROR,
                f"product {item.productId} is sold in {product.currency}, the order is in {order.currency}",
            )
        if item.price != product.price:
            raise _Refused(
                RejectReason.VALIDATION_ERROR,
                f"price of {item.productId} is {format_money(product.price, product.currency)}, "
                f"not {format_money(item.price, order.currency)}",
            )
    given = request.totals
    if given is None:
        return
    if given.subtotal is not None and given.subtotal != order.subtotal:
        computed = format_money(order.subtotal, order.currency)
        raise _Refused(
            RejectReason.VALIDATION_ERROR,
            f"subtotal {given.subtotal:f} is not the sum of the items, {computed}",
        )
    if given.total is not None and given.total != order.total:
        computed = format_money(order.total, order.currency)
        raise _Refused(
            RejectReason.VALIDATION_ERROR,
            f"total {given.total:f} is not subtotal + tax + shipping, {computed}",
        )


def _reserve(order: Order, request: OrderRequested, products: dict[str, Product]) -> None:
    """Hold every line's units from `products` (locked), all or nothing: raises
    _Refused(out_of_stock), having changed nothing, when any is short."""
    wanted = _wanted(request)
    short = [pid for pid, quantity in wanted.items() if products[pid].available < quantity]
    if short:
        raise _Refused(RejectReason.OUT_OF_STOCK, f"not enough stock of {', '.join(sorted(short))}")
    for product_id in sorted(wanted):
        product, quantity = products[product_id], wanted[product_id]
        product.reserved += quantity
        _stock_changed(product, change=-quantity, reason=StockReason.RESERVED)
        bulk.insert(Reservation(order=order, product=product, quantity=quantity))


def _reject(order: Order, refused: _Refused) -> None:
    order.reason = refused.reason
    order.reason_message = str(refused)
    _transition(order, OrderStatus.REJECTED, actor=WORKER_ACTOR, reason=refused.reason)


def request_conflict(
    order: Order, request: OrderRequested, *, asked: OrderRequested | None = None
) -> ConflictingDuplicate | None:
    """What makes `request` another order than the one stored under its orderId (who, from whom,
    in what currency, which lines), or None when it asks for the same. `asked` is the request the
    order was made from when its lines are not written yet (earlier in the same batch)."""
    if asked is None:
        lines = sorted((line.product_id, line.quantity, line.unit_price) for line in order.lines.all())
    else:
        lines = sorted((item.productId, item.quantity, item.price) for item in asked.items)
    items = sorted((item.productId, item.quantity, item.price) for item in request.items)
    fields: dict[str, tuple[object, object]] = {
        "userId": (order.user_id, request.userId),
        "merchantId": (order.merchant_id, request.merchantId),
        "currency": (order.currency, request.currency),
        "items": (lines, items),
    }
    differences: dict[str, object] = {
        name: "differs" if name == "items" else f"{stored} -> {new}"
        for name, (stored, new) in fields.items()
        if stored != new
    }
    if not differences:
        return None
    return ConflictingDuplicate(kind="order", object_id=order.order_id, differences=differences)


def orders_place(*, events: Sequence[Envelope]) -> list[Order]:
    """Take each order once per orderId: check it, reserve its stock, ask for its payment. One
    request or a batch, in one transaction however many they are: the one way an order is placed.

    A repeated or redelivered request finds the order as it is; the payment is asked for once. An
    orderId seen before with other content raises ConflictingDuplicate (the batch fails; alone,
    the request is dead-lettered). Another delivery of an orderId creating it at the same moment
    runs the transaction again (core.races), which then finds it. Returns the orders the events
    were the first (inbox) to take.
    """
    return run_again_after_race(lambda: _place_all(events), what=f"order intake of {len(events)}")


def _place_all(events: Sequence[Envelope]) -> list[Order]:
    with transaction.atomic(), bulk.deferred_writes():
        claimed = inbox.claim_many(consumer=INBOX_CONSUMER, events=events)
        requests: dict[str, tuple[Envelope, OrderRequested]] = {}
        for event in events:
            if event.id in claimed and event.id not in requests:
                requests[event.id] = (event, OrderRequested.model_validate(event.data))
        # The order rows before any product row, each in orderId order (as every order transaction).
        wanted = sorted({request.orderId for _, request in requests.values()})
        existing = Order.objects.select_for_update().filter(order_id__in=wanted).order_by("order_id")
        stored = {order.order_id: order for order in existing.prefetch_related("lines")}
        # Each order with the first request for it in the batch (the same order, checked below).
        orders: dict[str, tuple[Order, OrderRequested]] = {}
        new: dict[str, tuple[Order, OrderRequested]] = {}
        taken: list[Order] = []
        for event, request in requests.values():
            if request.orderId in new:
                first, asked = new[request.orderId]
                conflict = request_conflict(first, request, asked=asked)
            elif request.orderId in stored:
                first = stored[request.orderId]
                conflict = request_conflict(first, request)
                orders.setdefault(request.orderId, (first, request))
            else:
                first = _new_order(
                    request=request,
                    data=event.data,
                    client=None,
                    correlation_id=event.correlation_id or event.id,
                )
                new[request.orderId] = (first, request)
                conflict = None
            if conflict is not None:
                raise conflict  # the same orderId asking for another order: dead-lettered, not dropped
            taken.append(first)
        _create(list(new.values()), actor=WORKER_ACTOR)
        orders.update(new)
        pending = [(order, req) for order, req in orders.values() if order.status == OrderStatus.PENDING]
        catalog = _locked_products({item.productId for _, request in pending for item in request.items})
        for order, request in pending:
            _place(order, request, catalog)
    return taken


def _place(order: Order, request: OrderRequested, catalog: dict[str, Product]) -> None:
    """A pending order's step: rejected, or its stock reserved and its payment asked for."""
    try:
        _check(order, request, catalog)
        _reserve(order, request, catalog)
    except _Refused as refused:
        _reject(order, refused)
        return
    order.reservation_expires_at = timezone.now() + timedelta(seconds=settings.ORDERS_RESERVATION_TTL_S)
    _transition(order, OrderStatus.RESERVED, actor=WORKER_ACTOR)
    _first_saga_step(order, "stock_reserved")
    _first_saga_step(order, "payment_requested", order.payment_id)
    outbox.record_event(
        topic=topics.PAYMENT_REQUESTED,
        subject=order.payment_id,
        correlation_id=order.correlation_id or None,
        data=order_payment_request(order).model_dump(exclude_none=True),
    )


# --- the saga: the payment's answer ---------------------------------------------------------------


def _release(order: Order, held: list[Reservation], *, reason: str) -> None:
    """Give back what the order holds (`held`: its reservations not paid for, from _holdings)."""
    for reservation in held:
        product = reservation.product
        product.reserved -= reservation.quantity
        _stock_changed(product, change=reservation.quantity, reason=StockReason.RELEASED)
        reservation.status = ReservationStatus.RELEASED
        bulk.update(reservation, ["status"])
    _first_saga_step(order, "stock_released", reason)


def _commit(order: Order, held: list[Reservation]) -> None:
    """The paid-for units (`held`, from _holdings) leave the stock for good."""
    for reservation in held:
        product = reservation.product
        product.reserved -= reservation.quantity
        product.on_hand -= reservation.quantity
        _stock_changed(product, change=-reservation.quantity, reason=StockReason.COMMITTED)
        reservation.status = ReservationStatus.COMMITTED
        bulk.update(reservation, ["status"])
    _first_saga_step(order, "stock_committed")


def _restock(order: Order) -> None:
    """Units sold to an order cancelled before it shipped go back on the shelf."""
    for reservation in _holdings([order], ReservationStatus.COMMITTED)[order.pk]:
        product = reservation.product
        product.on_hand += reservation.quantity
        _stock_changed(product, change=reservation.quantity, reason=StockReason.RESTOCKED)
        reservation.status = ReservationStatus.RESTOCKED
        bulk.update(reservation, ["status"])
    _first_saga_step(order, "stock_restocked")


def _refund(order: Order, *, step: str, reason: str, actor: str) -> None:
    """Have payments refund the order's payment (its own service, as payments' saga does), once."""
    if not _saga_step(order, step, reason):
        return
    try:
        refund = payments.refund_request(payment_id=order.payment_id, amount=None, reason=reason, actor=actor)
    except payments.RefundRefused as exc:
        # Refunded already (say by an operator): nothing is left to give back.
        SagaStep.objects.filter(order=order, step=step).update(detail=f"{reason}; not refunded: {exc}"[:4000])
    else:
        SagaStep.objects.filter(order=order, step=step).update(detail=f"{reason}; refund {refund.refund_id}")


def _cancel(
    order: Order,
    *,
    reason: str,
    message: str,
    actor: str,
    notices: list[CustomerNotice] | None = None,
) -> None:
    order.reason = reason
    order.reason_message = message
    order.reservation_expires_at = None
    _transition(order, OrderStatus.CANCELLED, actor=actor, reason=reason)
    _notify_customer(
        order, template=ORDER_CANCELLED, occasion="cancelled", context={"reason": reason}, notices=notices
    )
    _first_saga_step(order, "customer_notified_cancelled")


def _book_shipment(order: Order) -> None:
    """The simulated carrier: a tracking number at once; operators say when it ships and arrives."""
    order.carrier = CARRIER
    order.tracking_number = f"SIM{uuid.uuid4().hex[:12].upper()}"
    bulk.update(order, ["carrier", "tracking_number"])
    _first_saga_step(order, "shipment_booked", f"{CARRIER} {order.tracking_number}")


def _orders_of_payments(events: Sequence[Envelope]) -> dict[str, Order]:
    """The orders (locked, in orderId order, lines at hand) whose reserved paymentId the payment
    events carry, by event id; an event of no order's payment is left out.

    A payment naming an order in its metadata under any other id is an ordinary payment: it
    moves nothing (the order asked for one payment, by an id only the platform derives).
    """
    named: dict[str, tuple[str, str]] = {}
    for event in events:
        payment_id = str(event.data.get("paymentId", ""))
        order_id = (event.data.get("metadata") or {}).get("orderId")
        if not isinstance(order_id, str):
            continue
        if not payment_id.startswith(ORDER_PAYMENT_PREFIX):
            logger.info("payment %s names order %s but is not its payment: ignored", payment_id, order_id)
            continue
        named[event.id] = (payment_id, order_id)
    wanted = sorted({order_id for _, order_id in named.values()})
    locked = Order.objects.select_for_update().filter(order_id__in=wanted).order_by("order_id")
    orders = {order.order_id: order for order in locked.prefetch_related("lines")}
    found: dict[str, Order] = {}
    for event_id, (payment_id, order_id) in named.items():
        order = orders.get(order_id)
        if order is not None and order.payment_id != payment_id:
            logger.warning(
                "payment %s names order %s, whose payment is %s: ignored",
                *(payment_id, order_id, order.payment_id),
            )
        elif order is not None:
            found[event_id] = order
    return found


def _payment_differences(order: Order, data: dict[str, Any]) -> dict[str, dict[str, str]]:
    """What the payment says that the order did not ask for: {field: {expected, received}}.

    The order asked for its total in its currency, for its user and merchant; a payment under the
    order's id that says anything else is not the payment the order requested. (The event was
    validated by its schema on the way in; what cannot be read here counts as different.)
    """
    currency = str(data.get("currency", ""))
    try:
        amount: Decimal | None = parse_amount(data.get("amount"))
    except MoneyError:
        amount = None
    asked: dict[str, tuple[object, str]] = {
        "amount": (order.total, format_money(order.total, order.currency)),
        "currency": (order.currency, order.currency),
        "userId": (order.user_id, order.user_id),
        "merchantId": (order.merchant_id, order.merchant_id),
    }
    received: dict[str, tuple[object, str]] = {
        "amount": (amount, str(data.get("amount"))),
        "currency": (currency, currency),
        "userId": (data.get("userId"), str(data.get("userId"))),
        "merchantId": (data.get("merchantId"), str(data.get("merchantId"))),
    }
    return {
        name: {"expected": asked[name][1], "received": received[name][1]}
        for name in asked
        if asked[name][0] != received[name][0]
    }


def _refuse_foreign_payment(order: Order, *, event: Envelope, differences: dict[str, dict[str, str]]) -> None:
    """A payment under the order's own id whose facts differ: the order does not move, and
    auditors get a `reconciliation_mismatch` alert (once per event) to find out how it came."""
    logger.warning(
        "payment %s of order %s differs from what the order asked for %s: the order stays %s",
        order.payment_id,
        order.order_id,
        differences,
        order.status,
    )
    compliance_alert_raise(
        rule=ComplianceRuleName.RECONCILIATION_MISMATCH.value,
        severity=Severity.HIGH.value,
        subject=f"order:{order.order_id}",
        details={
            "check": "order_payment",
            "orderId": order.order_id,
            "paymentId": order.payment_id,
            "eventType": event.type,
            "orderStatus": order.status,
            "differences": differences,
        },
        dedupe_key=f"{ComplianceRuleName.RECONCILIATION_MISMATCH.value}:order-payment:{event.id}",
        source_event_id=event.id,
        correlation_id=event.correlation_id or "",
    )


def orders_settle_payments(*, events: Sequence[Envelope]) -> list[Order]:
    """payments.payment-processed or -failed for orders, one or a batch, in one transaction: each
    order is confirmed, or released and cancelled. Returns the orders whose payment the events were
    (leaving out an order whose payment's facts differ from what it asked for).

    Only the payment the order requested moves it: its reserved paymentId, the order's total and
    currency, its user and merchant. A capture that finds the order already cancelled (timed out,
    or cancelled by its customer while the payment was under way) is refunded.
    """
    return run_again_after_race(lambda: _settle_all(events), what=f"order payments of {len(events)}")


def _settle_all(events: Sequence[Envelope]) -> list[Order]:
    settled: list[Order] = []
    late: list[Order] = []
    foreign: list[tuple[Order, Envelope, dict[str, dict[str, str]]]] = []
    with transaction.atomic():
        with bulk.deferred_writes():
            orders = _orders_of_payments(events)
            claimed = inbox.claim_many(
                consumer=PAYMENT_OUTCOME_CONSUMER, events=[e for e in events if e.id in orders]
            )
            distinct = {order.pk: order for order in orders.values()}.values()
            reserved = [order for order in distinct if order.status == OrderStatus.RESERVED]
            held = _holdings(reserved, ReservationStatus.HELD)
            notices: list[CustomerNotice] = []
            for event in events:
                order = orders.get(event.id)
                if order is None:
                    continue
                if event.id not in claimed:
                    settled.append(order)  # a redelivery: the order as it is
                    continue
                if differences := _payment_differences(order, event.data):
                    foreign.append((order, event, differences))
                    continue
                settled.append(order)
                captured = event.type == topics.PAYMENT_PROCESSED.name
                if captured and order.status == OrderStatus.RESERVED:
                    _confirm(order, held[order.pk], notices)
                elif captured and order.status == OrderStatus.CANCELLED:
                    late.append(order)
                elif not captured and order.status == OrderStatus.RESERVED:
                    reason = str(event.data.get("reason") or "payment_failed")
                    _first_saga_step(order, "payment_failed", reason)
                    _release(order, held[order.pk], reason=reason)
                    message = str(event.data.get("message") or "")
                    _cancel(order, reason=reason, message=message, actor=SAGA_ACTOR, notices=notices)
            notification_services.customer_notify_many(notices)
        # Outside the deferred writes, which a savepoint rolled back in another domain's service
        # would not undo: the refund of a late capture, and the alert of a foreign payment.
        for order in late:
            why = f"order {order.order_id} was cancelled ({order.reason}) before its payment was captured"
            _refund(order, step="late_capture_refunded", reason=why, actor=SAGA_ACTOR)
        for order, event, differences in foreign:
            _refuse_foreign_payment(order, event=event, differences=differences)
    return settled


def _confirm(order: Order, held: list[Reservation], notices: list[CustomerNotice]) -> None:
    """The order's payment was captured: its stock leaves, it is paid, confirmed and booked."""
    _first_saga_step(order, "payment_captured", order.payment_id)
    _commit(order, held)
    order.reservation_expires_at = None
    _transition(order, OrderStatus.PAID, actor=SAGA_ACTOR, reason=f"payment {order.payment_id} captured")
    _transition(order, OrderStatus.CONFIRMED, actor=SAGA_ACTOR)
    _book_shipment(order)
    _notify_customer(
        order,
        template=ORDER_CONFIRMED,
        occasion="confirmed",
        context={"carrier": order.carrier, "trackingNumber": order.tracking_number},
        notices=notices,
    )
    _first_saga_step(order, "customer_notified_confirmed")


def _expire_one() -> Order | None:
    """Cancel one order whose reservation is due; None when there is none left (or all are taken)."""
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(skip_locked=True)
            .filter(status=OrderStatus.RESERVED, reservation_expires_at__lte=timezone.now())
            .order_by("reservation_expires_at")
            .first()
        )
        if order is None:
            return None
        ttl = settings.ORDERS_RESERVATION_TTL_S
        _first_saga_step(order, "reservation_expired", f"no payment answer within {ttl}s")
        held = _holdings([order], ReservationStatus.HELD)[order.pk]
        _release(order, held, reason=CancelReason.PAYMENT_TIMEOUT)
        _cancel(
            order,
            reason=CancelReason.PAYMENT_TIMEOUT,
            message=f"the payment did not answer within {ttl} seconds",
            actor=SAGA_ACTOR,
        )
        return order


def orders_expire_reservations() -> int:
    """The beat task's body: release and cancel every reservation past its time, one order per
    transaction, claimed with FOR UPDATE SKIP LOCKED so that concurrent runs never take the same."""
    expired = 0
    while expired < EXPIRE_MAX_PER_RUN and _expire_one() is not None:
        expired += 1
    return expired


# --- operators and customers ------------------------------------------------------------------------


@transaction.atomic
def order_cancel(*, order_id: str, actor: str) -> Order:
    """Cancel before shipping: a reservation is released; a paid order is restocked and refunded."""
    order = Order.objects.select_for_update().get(order_id=order_id)
    if order.status not in CANCELLABLE:
        raise OrderNotCancellable(f"order {order_id} is {order.status}; it can no longer be cancelled")
    if order.status == OrderStatus.CONFIRMED:
        _restock(order)
        _refund(order, step="payment_refunded", reason=f"order {order_id} cancelled", actor=actor)
    else:
        _release(order, _holdings([order], ReservationStatus.HELD)[order.pk], reason=CancelReason.BY_CUSTOMER)
    _cancel(order, reason=CancelReason.BY_CUSTOMER, message=f"cancelled by {actor}", actor=actor)
    return order


@transaction.atomic
def order_mark_shipped(*, order_id: str, actor: str) -> Order:
    order = Order.objects.select_for_update().get(order_id=order_id)
    _transition(order, OrderStatus.SHIPPED, actor=actor, reason=f"{order.carrier} {order.tracking_number}")
    _first_saga_step(order, "shipped", f"{order.carrier} {order.tracking_number}")
    _notify_customer(
        order,
        template=ORDER_SHIPPED,
        occasion="shipped",
        context={"carrier": order.carrier, "trackingNumber": order.tracking_number},
    )
    return order


@transaction.atomic
def order_mark_delivered(*, order_id: str, actor: str) -> Order:
    order = Order.objects.select_for_update().get(order_id=order_id)
    _transition(order, OrderStatus.DELIVERED, actor=actor)
    _first_saga_step(order, "delivered", f"{order.carrier} {order.tracking_number}")
    return order


@transaction.atomic
def product_set(
    *, product_id: str, name: str, price: Decimal, currency: str, available: int, actor: str
) -> tuple[Product, bool]:
    """Create or update a product and set how many units are free to sell (reserved ones stay held)."""
    if available < 0:
        raise ProductInvalid(f"available must be zero or more, got {available}")
    try:
        price = check_precision(price, parse_currency(currency))
    except MoneyError as exc:
        raise ProductInvalid(str(exc)) from None
    if price < 0:
        raise ProductInvalid(f"price must not be negative, got {price:f}")
    product = Product.objects.select_for_update().filter(product_id=product_id).first()
    created = product is None
    if product is None:
        product = Product(product_id=product_id, on_hand=0, reserved=0)
    before = product.available
    product.name, product.price, product.currency = name, price, currency
    product.on_hand = product.reserved + available
    product.save()
    change = available - before
    if change or created:
        outbox.record_event(
            topic=topics.INVENTORY_STOCK_UPDATED,
            subject=product.product_id,
            data=stock_updated_event(product, change=change, reason=StockReason.ADJUSTED).model_dump(),
        )
    outbox.record_event(
        topic=topics.AUDIT_ORDER_EVENTS,
        subject=product.product_id,
        data=audit_record(
            action="product.created" if created else "product.updated",
            subject_type="product",
            subject_id=product.product_id,
            actor=actor,
            details={
                "name": name,
                "price": format_money(price, currency),
                "currency": currency,
                "available": product.available,
                "reserved": product.reserved,
                "change": change,
            },
        ),
    )
    return product, created


# --- users.* (identity events) -------------------------------------------------------------------------


@transaction.atomic
def user_welcome(*, event: Envelope, registered: UserRegistered) -> bool:
    """Ask notifications for the welcome email of a new user, once per registration."""
    if not inbox.claim(consumer=WELCOME_CONSUMER, event=event):
        return False
    request = welcome_notification_request(registered, channel="email", recipient=registered.email)
    outbox.record_event(
        topic=topics.NOTIFICATION_REQUESTED,
        subject=request.notificationId,
        correlation_id=event.correlation_id or event.id,
        data=request,
    )
    return True


@transaction.atomic
def user_event_audit(*, event: Envelope) -> bool:
    """Write a registration or a login to the audit log (the user is the actor), once per event."""
    if not inbox.claim(consumer=USER_AUDIT_CONSUMER, event=event):
        return False
    registered = event.type == topics.USER_REGISTERED.name
    user: UserRegistered | UserLogin = (
        UserRegistered.model_validate(event.data) if registered else UserLogin.model_validate(event.data)
    )
    outbox.record_event(
        topic=topics.AUDIT_USER_EVENTS,
        subject=user.userId,
        correlation_id=event.correlation_id or event.id,
        data=audit_record(
            action=USER_REGISTERED_ACTION if registered else USER_LOGIN_ACTION,
            subject_type="user",
            subject_id=user.userId,
            actor=username_actor(user.userId),
            # The user is the actor of its own registration or login; the integration that
            # reported it (`kafka:<topic>` unless the platform signed it) is named beside.
            details={
                **user.model_dump(exclude_none=True, exclude={"userId"}),
                "sourceEventId": event.id,
                **({"reportedBy": event.actor} if event.actor else {}),
            },
        ),
    )
    return True
