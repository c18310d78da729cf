"""Payments API: request (idempotent), list, detail, refund. Views only translate HTTP."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from pydantic import ValidationError
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.response import Response

from bridge.codec import loads
from kafka_platform.idempotency import HEADER, idempotent
from kafka_platform.money import MoneyError, parse_amount
from payments import selectors, services
from payments.api.serializers import PaymentDetailSerializer, PaymentSerializer, RefundSerializer
from payments.events import PaymentRequested
from payments.models import Payment


def _json_body(request: Request) -> dict:
    """The body parsed with numbers as Decimal (DRF's parser would make money a float)."""
    try:
        body = loads(request.body or b"{}")
    except ValueError as exc:
        raise ParseError(f"JSON parse error: {exc}") from None
    if not isinstance(body, dict):
        raise ParseError("the body must be a JSON object")
    return body


def _errors(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(map(str, e["loc"])) or "body", "message": e["msg"]} for e in exc.errors()]


@extend_schema_view(
    retrieve=extend_schema(parameters=[OpenApiParameter("payment_id", str, OpenApiParameter.PATH)]),
    refund=extend_schema(parameters=[OpenApiParameter("payment_id", str, OpenApiParameter.PATH)]),
)
class PaymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    lookup_field = "payment_id"
    queryset = Payment.objects.none()  # for the schema; get_queryset decides what a user sees

    def get_serializer_class(self) -> type:
        return PaymentDetailSerializer if self.action == "retrieve" else PaymentSerializer

    def get_queryset(self) -> QuerySet[Payment]:
        payments = selectors.payments_visible_to(self.request.user)
        params = self.request.query_params
        for param, field in (
            ("status", "status"),
            ("user", "user_id"),
            ("merchant", "merchant_id"),
            ("currency", "currency"),
        ):
            if params.get(param):
                payments = payments.filter(**{field: params[param]})
        for param, lookup in (("created_after", "created_at__gte"), ("created_before", "created_at__lt")):
            if params.get(param):
                try:
                    payments = payments.filter(**{lookup: datetime.fromisoformat(params[param])})
                except ValueError:
                    raise ParseError(f"{param} must be an ISO 8601 time") from None
        if self.action == "retrieve":
            payments = payments.prefetch_related("transitions", "refunds")
        return payments.order_by("-created_at", "-id")

    def create(self, request: Request) -> Response:
        return idempotent(request, scope="payments.create", handler=lambda: self._create(request))

    def _create(self, request: Request) -> Response:
        body = _json_body(request)
        body.setdefault("paymentId", f"pay_{uuid.uuid4().hex[:24]}")
        try:
            payment_request = PaymentRequested.model_validate(body)
        except ValidationError as exc:
            return Response({"detail": "invalid payment request", "errors": _errors(exc)}, status=400)
        try:
            payment = services.payment_request_create(
                client=request.user,
                request=payment_request,
                correlation_id=request.headers.get("X-Correlation-Id") or str(uuid.uuid4()),
            )
        except IntegrityError:
            return Response({"detail": f"payment {payment_request.paymentId} already exists"}, status=409)
        location = reverse("payment-detail", kwargs={"payment_id": payment.payment_id})
        return Response(
            PaymentSerializer(payment).data, status=status.HTTP_202_ACCEPTED, headers={"Location": location}
        )

    @action(detail=True, methods=["post"])
    def refund(self, request: Request, payment_id: str) -> Response:
        get_object_or_404(self.get_queryset(), payment_id=payment_id)
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
                return Response({"detail": str(exc)}, status=400)
        try:
            refund = services.refund_request(
                payment_id=payment_id,
                amount=amount,
                reason=str(body.get("reason", ""))[:255],
                actor=f"user:{request.user.username}",
            )
        except services.RefundRefused as exc:
            return Response({"detail": str(exc)}, status=422)
        return Response(RefundSerializer(refund).data, status=status.HTTP_202_ACCEPTED)
