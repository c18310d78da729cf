"""Queueing notifications: requested ones, a payment's outcome notices, requests for its other notices.

A notification that cannot be sent (no template, bad recipient, disabled endpoint) is stored as
failed and announced at once; any other is handed to a worker once its transaction commits.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from bridge import inbox, outbox, topics
from bridge.codec import Envelope
from core.actors import USER_PREFIX, user_actor
from core.codec import dumps
from core.ids import RESERVED_PREFIXES, ConflictingDuplicate, is_reserved
from notifications import rendering, webhooks
from notifications.events import (
    CLIENT_ID_FIELD,
    ENDPOINT_ID_FIELD,
    NotificationRequested,
    notification_requested_event,
)
from notifications.models import (
    Channel,
    EndpointKind,
    FailureReason,
    Notification,
    NotificationStatus,
    WebhookEndpoint,
    generate_webhook_secret,
)
from notifications.recipients import customer_recipients
from notifications.services.transitions import _audit, _enqueue_on_commit, _fail
from payments import selectors as payment_selectors

INBOX_CONSUMER = "notifications"
PHONE_RE = re.compile(r"^\+?[1-9]\d{6,14}$")

# Template keys of the payment outcomes this domain announces by itself (docs/notifications.md).
PAYMENT_CAPTURED = "payment_captured"
PAYMENT_FAILED = "payment_failed"


class ReservedNotificationId(Exception):
    """A notification id under one of the platform's own prefixes, asked for from outside."""


class NotificationIdTaken(Exception):
    """The notificationId is another client's (the API does not say so)."""


class _Refused(Exception):
    """A notification that is understood but cannot be sent: it is failed at once."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class NotificationSpec:
    notification_id: str
    channel: str
    recipient: str
    template_key: str = ""
    locale: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    body: str | None = None
    endpoint: WebhookEndpoint | None = None
    correlation_id: str = ""
    source_event_id: str = ""
    # The API client it belongs to (None: nobody's, it came through Kafka) and who asked for it.
    owner_id: int | None = None
    requested_by: str = ""


def _check_recipient(channel: str, recipient: str) -> None:
    if channel == Channel.EMAIL:
        try:
            validate_email(recipient)
        except ValidationError as exc:
            raise _Refused(FailureReason.INVALID_RECIPIENT, f"{recipient!r} is not an email address") from exc
    elif channel == Channel.SMS and not PHONE_RE.match(recipient):
        raise _Refused(FailureReason.INVALID_RECIPIENT, f"{recipient!r} is not an E.164 phone number")
    elif channel == Channel.PUSH and not recipient.strip():
        raise _Refused(FailureReason.INVALID_RECIPIENT, "empty push token")
    elif channel == Channel.WEBHOOK:
        try:
            webhooks.check_url_form(recipient)
        except webhooks.ForbiddenTarget as exc:
            raise _Refused(FailureReason.INVALID_RECIPIENT, str(exc)) from exc


def _webhook_body(spec: NotificationSpec, created: str) -> str:
    """The Standard Webhooks payload shape: type, timestamp, data."""
    data = dict(spec.context)
    if spec.subject is not None:
        data.setdefault("subject", spec.subject)
    if spec.body is not None:
        data.setdefault("body", spec.body)
    return dumps({"type": spec.template_key or "notification", "timestamp": created, "data": data}).decode()


def _recipient_endpoint(*, owner_id: int | None, url: str) -> WebhookEndpoint:
    """The endpoint row of a URL given as a recipient, one per owner: an owned one signs with a secret
    of that owner's own (it learns it by rotating the secret), so a delivery made for one client never
    verifies with another's secret or the platform's; an ownerless one signs with the platform secret.
    """
    endpoint, _ = WebhookEndpoint.objects.get_or_create(
        kind=EndpointKind.RECIPIENT,
        owner_id=owner_id,
        url=url,
        defaults={"secret": generate_webhook_secret() if owner_id is not None else "", "event_types": []},
    )
    return endpoint


def _prepare(
    notification: Notification,
    spec: NotificationSpec,
    find_template: Callable[..., rendering.Template] = rendering.find_template,
) -> None:
    """Render the message (or build the webhook body); raises _Refused for what cannot be sent."""
    _check_recipient(spec.channel, spec.recipient)
    if spec.channel == Channel.WEBHOOK:
        endpoint = spec.endpoint or _recipient_endpoint(owner_id=spec.owner_id, url=spec.recipient)
        notification.webhook_endpoint = endpoint
        notification.subject = spec.template_key or "notification"
        notification.body = _webhook_body(spec, timezone.now().isoformat().replace("+00:00", "Z"))
        if not endpoint.is_active:
            raise _Refused(FailureReason.ENDPOINT_DISABLED, f"webhook endpoint {endpoint.id} is disabled")
        return
    if spec.template_key:
        try:
            rendered = rendering.render_template(
                find_template(key=spec.template_key, channel=spec.channel, locale=spec.locale), spec.context
            )
        except rendering.TemplateNotFound as exc:
            raise _Refused(FailureReason.TEMPLATE_NOT_FOUND, str(exc)) from exc
        except rendering.TemplateError as exc:
            raise _Refused(FailureReason.TEMPLATE_ERROR, str(exc)) from exc
        notification.subject = rendered.subject[:255]
        notification.body = rendered.body
        notification.html_body = rendered.html_body
        notification.template_locale = rendered.locale
    else:
        notification.subject = (spec.subject or "")[:255]
        notification.body = spec.body or ""


def _new_notification(spec: NotificationSpec) -> Notification:
    return Notification(
        notification_id=spec.notification_id,
        owner_id=spec.owner_id,
        requested_by=spec.requested_by,
        channel=spec.channel,
        recipient=spec.recipient,
        template_key=spec.template_key,
        locale=spec.locale or "",
        context=spec.context,
        status=NotificationStatus.QUEUED,
        correlation_id=spec.correlation_id,
        source_event_id=spec.source_event_id,
    )


def _queue(spec: NotificationSpec) -> Notification | None:
    """`_queue_many` for one: the notification, or None when its id exists already."""
    queued = _queue_many([spec])
    return queued[0] if queued else None


def _queue_many(specs: list[NotificationSpec]) -> list[Notification]:
    """Create the notifications whose ids do not exist yet and hand them to a worker after commit,
    in the caller's transaction, with one read of the ids that exist, one read per template and
    one insert. A notification that cannot be sent (no template, bad recipient, disabled endpoint)
    is stored as failed and announced at once. A notificationId queued concurrently fails the
    transaction with a unique violation (its caller runs it again: core.races)."""
    ids = [spec.notification_id for spec in specs]
    taken = set(
        Notification.objects.filter(notification_id__in=ids).values_list("notification_id", flat=True)
    )
    templates: dict[tuple[str, str, str | None], rendering.Template] = {}

    def find_template(*, key: str, channel: str, locale: str | None) -> rendering.Template:
        if (key, channel, locale) not in templates:
            templates[key, channel, locale] = rendering.find_template(key=key, channel=channel, locale=locale)
        return templates[key, channel, locale]

    queued: list[Notification] = []
    to_insert: list[Notification] = []
    for spec in specs:
        if spec.notification_id in taken:
            continue
        taken.add(spec.notification_id)
        notification = _new_notification(spec)
        try:
            _prepare(notification, spec, find_template)
        except _Refused as refused:
            _fail(notification, reason=refused.reason, detail=str(refused))
        else:
            _enqueue_on_commit(notification)
            to_insert.append(notification)
        queued.append(notification)
    Notification.objects.bulk_create(to_insert)
    return queued


def request_conflict(
    existing: Notification, request: NotificationRequested, *, owner_id: int | None
) -> ConflictingDuplicate | None:
    """What makes `request` another notification than the one stored under its id (whose it is,
    where and how it goes, what it says), or None when it asks for the same."""
    fields = {
        "owner": (existing.owner_id, owner_id),
        "channel": (existing.channel, request.channel),
        "recipient": (existing.recipient, request.recipient),
        "template": (existing.template_key, request.template or ""),
    }
    differences: dict[str, object] = {
        name: "differs" if name in ("owner", "recipient") else f"{stored} -> {new}"
        for name, (stored, new) in fields.items()
        if stored != new
    }
    if not differences:
        return None
    return ConflictingDuplicate(
        kind="notification", object_id=existing.notification_id, differences=differences
    )


@transaction.atomic
def notification_request(*, event: Envelope, request: NotificationRequested) -> Notification | None:
    """Queue a requested notification once per notificationId (and once per event)."""
    if not inbox.claim(consumer=INBOX_CONSUMER, event=event):
        return None
    if not event.signed:
        # `requestedBy` is believed only from the platform (the API sets it): a trusted
        # integration's record is its own request, owned by no client, whatever it claims.
        request = request.model_copy(update={"requestedBy": None})
    owner_id, requested_by = _request_owner(request, signed=event.signed)
    existing = Notification.objects.filter(notification_id=request.notificationId).first()
    if existing is not None:
        conflict = request_conflict(existing, request, owner_id=owner_id)
        if conflict is not None:
            raise conflict
        return None  # the same request again: queued once
    if not event.signed and event.actor:
        requested_by = event.actor
    return _queue(
        NotificationSpec(
            notification_id=request.notificationId,
            endpoint=_registered_endpoint(request, owner_id=owner_id),
            owner_id=owner_id,
            requested_by=requested_by,
            channel=request.channel,
            recipient=request.recipient,
            template_key=request.template or "",
            locale=request.locale,
            context=request.context,
            subject=request.subject,
            body=request.body,
            correlation_id=event.correlation_id or event.id,
            source_event_id=event.id,
        )
    )


def _registered_endpoint(request: NotificationRequested, *, owner_id: int | None) -> WebhookEndpoint | None:
    """The registered endpoint a webhook request names (`endpointId`, set by
    `customer_notify`), when it is active, at that URL, and its owner's own."""
    endpoint_id = (request.model_extra or {}).get(ENDPOINT_ID_FIELD)
    if request.channel != Channel.WEBHOOK or owner_id is None or not endpoint_id:
        return None
    try:
        endpoint_uuid = uuid.UUID(str(endpoint_id))
    except ValueError:
        return None
    return WebhookEndpoint.objects.filter(
        pk=endpoint_uuid, kind=EndpointKind.REGISTERED, owner_id=owner_id, url=request.recipient
    ).first()


def _payment_client(event: Envelope) -> int | None:
    """The API client that requested the payment of an outcome event (its `clientId`, which only
    the platform writes: the outcome topics take signed records only). None: it came through Kafka."""
    client_id = event.data.get("clientId")
    return client_id if isinstance(client_id, int) and event.signed else None


def _request_owner(request: NotificationRequested, *, signed: bool) -> tuple[int | None, str]:
    """Whom a requested notification belongs to, and the actor who asked for it.

    Requested through the API: the requester (`requestedBy`). A customer notice the platform asked
    of itself (`customer_notify`, signed): the client it names (`clientId`). Under `payment:<id>:`
    without one (asked before notices carried it): the payment's client. Otherwise nobody: it came
    through Kafka, whose producers are the platform's service accounts.
    """
    from django.contrib.auth import get_user_model

    if request.requestedBy and request.requestedBy.startswith(USER_PREFIX):
        username = request.requestedBy.removeprefix(USER_PREFIX)
        user_id = get_user_model().objects.filter(username=username).values_list("pk", flat=True).first()
        return user_id, request.requestedBy
    client_id = (request.model_extra or {}).get(CLIENT_ID_FIELD)
    if signed and isinstance(client_id, int) and not isinstance(client_id, bool):
        return client_id, ""
    if request.notificationId.startswith("payment:"):
        payment_id = request.notificationId.split(":", 2)[1]
        return payment_selectors.payment_client_ids([payment_id]).get(payment_id), ""
    return None, ""


def _payment_context(data: dict[str, Any]) -> dict[str, Any]:
    metadata = data.get("metadata") or {}
    context = {
        "paymentId": data["paymentId"],
        "userId": data.get("userId"),
        "merchantId": data.get("merchantId"),
        "amount": data.get("amount"),
        "currency": data.get("currency"),
        "status": data.get("status"),
        "processedAt": data.get("processedAt"),
        "reason": data.get("reason"),
        "message": data.get("message"),
        "orderId": metadata.get("orderId"),
        "description": metadata.get("description"),
    }
    return {k: v for k, v in context.items() if v is not None}


@dataclass(frozen=True)
class _Destination:
    """Where one customer notice goes: `key` ends its notificationId (`email`, `webhook:<id>`)."""

    key: str
    channel: str
    recipient: str
    endpoint: WebhookEndpoint | None = None


def _customer_destinations(
    *,
    customer: Mapping[str, Any] | None,
    owner_id: int | None,
    template_key: str,
    registered: Iterable[WebhookEndpoint] | None = None,
) -> list[_Destination]:
    """The one mapping of a customer to channels, for every occasion (captures, failures, refunds,
    reversals): each address the customer gave (email, phone, push token, webhookUrl), and the
    registered webhook endpoints of the payment's client that want `template_key` (`registered`:
    that client's active ones, when the caller has read them already)."""
    destinations = [
        _Destination(key=channel, channel=channel, recipient=recipient)
        for channel, recipient in customer_recipients(customer)
    ]
    if registered is None:
        registered = _registered_endpoints([owner_id]).get(owner_id, [])
    destinations += [
        _Destination(
            key=f"{Channel.WEBHOOK}:{endpoint.id}",
            channel=Channel.WEBHOOK,
            recipient=endpoint.url,
            endpoint=endpoint,
        )
        for endpoint in registered
        if endpoint.wants(template_key)
    ]
    return destinations


def _registered_endpoints(owner_ids: Iterable[int | None]) -> dict[int | None, list[WebhookEndpoint]]:
    """The active registered webhook endpoints of each owner (None: the platform's own)."""
    wanted = set(owner_ids)
    query = Q(owner_id__in=[o for o in wanted if o is not None])
    if None in wanted:
        query |= Q(owner_id__isnull=True)
    by_owner: dict[int | None, list[WebhookEndpoint]] = {owner: [] for owner in wanted}
    for endpoint in WebhookEndpoint.objects.filter(
        query, kind=EndpointKind.REGISTERED, is_active=True
    ).order_by("created_at", "id"):
        by_owner[endpoint.owner_id].append(endpoint)
    return by_owner


def _outcome_specs(
    event: Envelope, *, owner_id: int | None, registered: list[WebhookEndpoint]
) -> list[NotificationSpec]:
    """The notifications of one payment outcome: one per destination of its customer."""
    data = event.data
    captured = event.type == topics.PAYMENT_PROCESSED.name
    template_key = PAYMENT_CAPTURED if captured else PAYMENT_FAILED
    base_id = f"payment:{data['paymentId']}:{'captured' if captured else 'failed'}"
    customer = data.get("customer") or {}
    context = _payment_context(data)
    return [
        NotificationSpec(
            notification_id=f"{base_id}:{destination.key}",
            channel=destination.channel,
            recipient=destination.recipient,
            endpoint=destination.endpoint,
            owner_id=owner_id,
            template_key=template_key,
            locale=customer.get("locale"),
            context=context,
            correlation_id=event.correlation_id or event.id,
            source_event_id=event.id,
        )
        for destination in _customer_destinations(
            customer=customer, owner_id=owner_id, template_key=template_key, registered=registered
        )
    ]


def payment_outcomes_notify(*, events: Sequence[Envelope]) -> list[Notification]:
    """Notify each payment's customer (email, phone, push token, webhookUrl) and the registered
    webhook endpoints of the payment's client that want it, of a captured or failed payment; one
    event or a batch, in the caller's transaction, with set-based reads and writes: the events
    claimed in one insert, the payments' clients and their endpoints read once, the notifications
    inserted at once."""
    claimed = inbox.claim_many(consumer=INBOX_CONSUMER, events=events)
    fresh = []
    for event in events:
        if event.id in claimed:
            claimed.discard(event.id)  # the same event twice in a batch: the second is a redelivery
            fresh.append(event)
    endpoints = _registered_endpoints(_payment_client(event) for event in fresh)
    specs = []
    for event in fresh:
        owner_id = _payment_client(event)
        specs += _outcome_specs(event, owner_id=owner_id, registered=endpoints.get(owner_id, []))
    return _queue_many(specs)


@dataclass(frozen=True)
class CustomerNotice:
    """One occasion to tell a customer of (`customer_notify`'s arguments)."""

    notification_prefix: str
    client_id: int | None
    customer: Mapping[str, Any] | None
    occasion: str
    template_key: str
    context: dict[str, Any]
    correlation_id: str | None = None


def customer_notify(
    *,
    notification_prefix: str,
    client_id: int | None,
    customer: Mapping[str, Any] | None,
    occasion: str,
    template_key: str,
    context: dict[str, Any],
    correlation_id: str | None = None,
) -> list[str]:
    """Ask, in the caller's transaction, for the notices of one occasion (a payment's refund or
    reversal, an order's confirmation or cancellation) on every channel the customer is told on
    and every registered webhook endpoint of `client_id` that wants `template_key`
    (`_customer_destinations`; None: the platform's own endpoints).

    The requests go out on notifications.notification-requested, ids
    `<notification_prefix><occasion>:<channel or webhook:endpoint>`, carrying `clientId` so this
    domain's consumer queues them as that client's notifications. Returns the ids asked for.
    """
    return customer_notify_many(
        [
            CustomerNotice(
                notification_prefix=notification_prefix,
                client_id=client_id,
                customer=customer,
                occasion=occasion,
                template_key=template_key,
                context=context,
                correlation_id=correlation_id,
            )
        ]
    )


def customer_notify_many(notices: Sequence[CustomerNotice]) -> list[str]:
    """`customer_notify` for many occasions (a batch's), reading the clients' endpoints once."""
    registered = _registered_endpoints(notice.client_id for notice in notices) if notices else {}
    asked = []
    for notice in notices:
        customer = notice.customer or {}
        for destination in _customer_destinations(
            customer=customer,
            owner_id=notice.client_id,
            template_key=notice.template_key,
            registered=registered[notice.client_id],
        ):
            request = notification_requested_event(
                notification_id=f"{notice.notification_prefix}{notice.occasion}:{destination.key}",
                channel=destination.channel,
                recipient=destination.recipient,
                template_key=notice.template_key,
                context=notice.context,
                locale=customer.get("locale") or "en",
                endpoint_id=str(destination.endpoint.id) if destination.endpoint else None,
                client_id=notice.client_id,
            )
            outbox.record_event(
                topic=topics.NOTIFICATION_REQUESTED,
                subject=request.notificationId,
                correlation_id=notice.correlation_id,
                data=request,
            )
            asked.append(request.notificationId)
    return asked


@transaction.atomic
def notification_submit(
    *, request: NotificationRequested, user: Any, correlation_id: str | None = None
) -> NotificationRequested:
    """Publish a notification request for `user` (the API's POST): the consumer queues it like any
    other, as `user`'s notification.

    An id already queued: `user`'s own with the same request is that notification (nothing is
    published again); with another request ConflictingDuplicate; anyone else's NotificationIdTaken.
    """
    if is_reserved(request.notificationId):
        raise ReservedNotificationId(
            f"notification ids under {', '.join(RESERVED_PREFIXES)} are the platform's own"
        )
    existing = Notification.objects.filter(notification_id=request.notificationId).first()
    if existing is not None:
        if existing.owner_id is None or existing.owner_id != user.pk:
            raise NotificationIdTaken(request.notificationId)
        conflict = request_conflict(existing, request, owner_id=user.pk)
        if conflict is not None:
            raise conflict
        return request
    actor = user_actor(user)
    request = request.model_copy(update={"requestedBy": actor})
    outbox.record_event(
        topic=topics.NOTIFICATION_REQUESTED,
        subject=request.notificationId,
        data=request.model_dump(exclude_none=True),
        correlation_id=correlation_id,
    )
    _audit(
        action="notification.requested",
        subject_type="notification",
        subject_id=request.notificationId,
        actor=actor,
        correlation_id=correlation_id or "",
        details={"channel": request.channel, "template": request.template},
    )
    return request
