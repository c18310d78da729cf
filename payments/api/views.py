"""Payments API: request (idempotent), list, detail, refund. Views only translate HTTP."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import IntegrityError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from audit.conflicts import conflicting_duplicate_alert
from core import api_fields
from core.actors import user_actor
from core.idempotency import HEADER, idempotent
from core.ids import ConflictingDuplicate
from core.money import MoneyError, parse_amount
from core.openapi import IDEMPOTENCY_KEY, OPTIONAL_IDEMPOTENCY_KEY, WRITE_PROBLEMS, problems
from core.problems import Problem
from payments import selectors, services
from payments.api.serializers import PaymentDetailSerializer, PaymentSerializer, RefundSerializer
from payments.events import PaymentRequested
from payments.models import Payment


def _json_body(request: Request) -> dict:
    """The body as a JSON object, numbers as Decimal (core.parsers), never a float."""
    body = request.data if request.body else {}
    if not isinstance(body, dict):
        raise Problem(400, "The body must be a JSON object.", code="validation_error")
    return dict(body)


class PaymentFilterSerializer(serializers.Serializer):
    status = serializers.CharField(required=False)
    user = serializers.CharField(required=False)
    merchant = serializers.CharField(required=False)
    currency = serializers.CharField(required=False)
    createdAfter = serializers.DateTimeField(required=False)  # noqa: N815 - the wire name
    createdBefore = serializers.DateTimeField(required=False)  # noqa: N815


class RefundRequestSerializer(serializers.Serializer):
    """For the OpenAPI document: the body is read with numbers as decimals."""

    amount = serializers.CharField(
        required=False, help_text="A decimal string or number; absent means all that is left to refund."
    )
    reason = serializers.CharField(required=False, max_length=255)


PAYMENT_ID = OpenApiParameter("payment_id", str, OpenApiParameter.PATH)


@extend_schema_view(
    list=extend_schema(
        parameters=[PaymentFilterSerializer], responses={200: PaymentSerializer, **problems(400, 401)}
    ),
    retrieve=extend_schema(
        parameters=[PAYMENT_ID], responses={200: PaymentDetailSerializer, **problems(401, 404)}
    ),
    create=extend_schema(
        request=PaymentRequested,
        parameters=[IDEMPOTENCY_KEY],
        responses={202: PaymentSerializer, **problems(*WRITE_PROBLEMS)},
        description="Request a payment: 202 with `Location`; the outcome follows as its status changes.",
    ),
    refund=extend_schema(
        request=RefundRequestSerializer,
        parameters=[PAYMENT_ID, OPTIONAL_IDEMPOTENCY_KEY],
        responses={202: RefundSerializer, **problems(*WRITE_PROBLEMS, 404)},
    ),
)
class PaymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    lookup_field = "payment_id"
    queryset = Payment.objects.none()  # for the schema; get_queryset decides what a user sees

    def get_serializer_class(self) -> type:
        return PaymentDetailSerializer if self.action == "retrieve" else PaymentSerializer

    def get_queryset(self) -> QuerySet[Payment]:
        if self.action == "list":
            filters = PaymentFilterSerializer(data=self.request.query_params)
            filters.is_valid(raise_exception=True)
            params = filters.validated_data
            payments = selectors.payment_list(
                user=self.request.user,
                status=params.get("status"),
                user_id=params.get("user"),
                merchant_id=params.get("merchant"),
                currency=params.get("currency"),
                created_after=params.get("createdAfter"),
                created_before=params.get("createdBefore"),
            )
        else:
            payments = selectors.payment_list(user=self.request.user)
        if self.action == "retrieve":
            payments = payments.prefetch_related("transitions", "refunds")
        return payments

    def create(self, request: Request) -> Response:
        try:
            return idempotent(request, scope="payments.create", handler=lambda: self._create(request))
        except ConflictingDuplicate as conflict:
            # Raised here, after the request's transaction rolled back, so the alert stays.
            conflicting_duplicate_alert(conflict=conflict, source=f"api:{user_actor(request.user)}")
            raise api_fields.conflicting_duplicate(conflict, field="paymentId") from None

    def _create(self, request: Request) -> Response:
        body = _json_body(request)
        body.setdefault("paymentId", f"pay_{uuid.uuid4().hex[:24]}")
        # A pydantic ValidationError is answered 400 with its `errors` by the API's one error edge.
        payment_request = PaymentRequested.model_validate(body)
        api_fields.client_chosen_id(payment_request.paymentId, field="paymentId")
        try:
            payment, _ = services.payment_request_create(
                client=request.user,
                request=payment_request,
                correlation_id=request.headers.get("X-Correlation-Id") or str(uuid.uuid4()),
            )
        except (services.PaymentIdTaken, IntegrityError):
            # Another client's id, or a concurrent first request for it: one answer that does
            # not tell which, nor whose.
            raise api_fields.id_unavailable(field="paymentId") from None
        location = reverse("payment-detail", kwargs={"payment_id": payment.payment_id})
        return Response(
            PaymentSerializer(payment).data, status=status.HTTP_202_ACCEPTED, headers={"Location": location}
        )

    @action(detail=True, methods=["post"])
    def refund(self, request: Request, payment_id: str) -> Response:
        payment = get_object_or_404(selectors.payment_list(user=request.user), payment_id=payment_id)
        if not selectors.may_refund(user=request.user, payment=payment):
            raise PermissionDenied("Refunding this payment needs the payments.refund_payment permission.")
        if request.headers.get(HEADER):
            return idempotent(
                request, scope="payments.refund", handler=lambda: self._refund(request, payment_id)
            )
        return self._refund(request, payment_id)

    def _refund(self, request: Request, payment_id: str) -> Response:
        body = _json_body(request)
        amount: Decimal | None = None
        if body.get("amount") is not None:
            try:
                amount = parse_amount(body["amount"])
            except MoneyError as exc:
                raise Problem(400, str(exc), code="validation_error", errors={"amount": [str(exc)]}) from None
        try:
            refund = services.refund_request(
                payment_id=payment_id,
                amount=amount,
                reason=str(body.get("reason", ""))[:255],
                actor=user_actor(request.user),
            )
        except services.RefundInvalid as exc:
            raise Problem(400, str(exc), code="validation_error", errors={"amount": [str(exc)]}) from None
        except services.RefundRefused as exc:
            raise Problem(422, str(exc), code="refund_refused") from None
        return Response(RefundSerializer(refund).data, status=status.HTTP_202_ACCEPTED)
