"""Orders and inventory API: place (idempotent), list, detail, cancel, ship, deliver; the catalog
and operators' PUT of a product and its stock. Views only translate HTTP."""

from __future__ import annotations

import uuid
from typing import Any

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
from core.idempotency import idempotent
from core.ids import ConflictingDuplicate
from core.problems import Problem
from orders import selectors, services
from orders.api.serializers import (
    OrderDetailSerializer,
    OrderSerializer,
    ProductInputSerializer,
    ProductSerializer,
)
from orders.events import OrderRequested
from orders.models import Order, Product

ORDER_ID = OpenApiParameter("order_id", str, OpenApiParameter.PATH)
PRODUCT_ID = OpenApiParameter("product_id", str, OpenApiParameter.PATH)


def _json_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object, numbers as Decimal (core.parsers), never a float."""
    body = request.data if request.body else {}
    if not isinstance(body, dict):
        raise Problem(400, "The body must be a JSON object.", code="validation_error")
    return dict(body)


class OrderFilterSerializer(serializers.Serializer):
    status = serializers.CharField(required=False)
    user = serializers.CharField(required=False)


@extend_schema_view(
    retrieve=extend_schema(parameters=[ORDER_ID]),
    cancel=extend_schema(parameters=[ORDER_ID], request=None, responses={200: OrderDetailSerializer}),
    ship=extend_schema(parameters=[ORDER_ID], request=None, responses={200: OrderDetailSerializer}),
    deliver=extend_schema(parameters=[ORDER_ID], request=None, responses={200: OrderDetailSerializer}),
)
class OrderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    lookup_field = "order_id"
    lookup_value_regex = "[^/]+"
    queryset = Order.objects.none()  # for the schema; get_queryset decides what a user sees

    def get_serializer_class(self) -> type:
        return OrderSerializer if self.action in ("list", "create") else OrderDetailSerializer

    def get_queryset(self) -> QuerySet[Order]:
        if self.action == "list":
            filters = OrderFilterSerializer(data=self.request.query_params)
            filters.is_valid(raise_exception=True)
            return selectors.order_list(
                user=self.request.user,
                status=filters.validated_data.get("status"),
                user_id=filters.validated_data.get("user"),
            )
        return selectors.order_list(user=self.request.user, detail=True)

    @extend_schema(request=OrderRequested, responses={202: OrderSerializer})
    def create(self, request: Request) -> Response:
        try:
            return idempotent(request, scope="orders.create", handler=lambda: self._create(request))
        except ConflictingDuplicate as conflict:
            # Raised here, after the request's transaction rolled back, so the alert stays.
            conflicting_duplicate_alert(conflict=conflict, source=f"api:{user_actor(request.user)}")
            raise api_fields.conflicting_duplicate(conflict, field="orderId") from None

    def _create(self, request: Request) -> Response:
        body = _json_body(request)
        body.setdefault("orderId", f"ord_{uuid.uuid4().hex[:24]}")
        body.setdefault("userId", request.user.get_username())
        # A pydantic ValidationError is answered 400 with its `errors` by the API's one error edge.
        order_request = OrderRequested.model_validate(body)
        api_fields.client_chosen_id(order_request.orderId, field="orderId")
        try:
            order = services.order_request_create(
                client=request.user,
                request=order_request,
                correlation_id=request.headers.get("X-Correlation-Id") or str(uuid.uuid4()),
            )
        except IntegrityError:
            existing = Order.objects.filter(order_id=order_request.orderId).first()
            if existing is None or existing.client_id is None or existing.client_id != request.user.pk:
                # Another client's id (or one taken from Kafka): one answer that says not whose.
                raise api_fields.id_unavailable(field="orderId") from None
            order = existing
            conflict = services.request_conflict(order, order_request)
            if conflict is not None:
                raise conflict from None
            # The client's own order asked for again: that order, nothing published again.
        location = reverse("order-detail", kwargs={"order_id": order.order_id})
        return Response(
            OrderSerializer(order).data, status=status.HTTP_202_ACCEPTED, headers={"Location": location}
        )

    def _visible(self, request: Request, order_id: str) -> Order:
        return get_object_or_404(selectors.order_list(user=request.user), order_id=order_id)

    def _answer(self, order: Order) -> Response:
        fresh = selectors.order_list(user=self.request.user, detail=True).get(pk=order.pk)
        return Response(OrderDetailSerializer(fresh).data)

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, order_id: str) -> Response:
        """Cancel before shipping: the reservation is released, or the payment refunded and restocked."""
        order = self._visible(request, order_id)
        if not selectors.may_cancel(user=request.user, order=order):
            raise PermissionDenied("Cancelling this order needs the orders.change_order permission.")
        try:
            order = services.order_cancel(order_id=order_id, actor=user_actor(request.user))
        except services.OrderNotCancellable as exc:
            raise Problem(409, str(exc), code="order_not_cancellable") from None
        return self._answer(order)

    def _fulfil(self, request: Request, order_id: str, service: Any) -> Response:
        self._visible(request, order_id)
        if not selectors.may_fulfil(user=request.user):
            raise PermissionDenied("Shipping orders needs the orders.change_order permission.")
        try:
            order = service(order_id=order_id, actor=user_actor(request.user))
        except services.IllegalTransition as exc:
            raise Problem(409, str(exc), code="illegal_transition") from None
        return self._answer(order)

    @action(detail=True, methods=["post"])
    def ship(self, request: Request, order_id: str) -> Response:
        """Operators: the carrier has the parcel (the customer is told, `order_shipped`)."""
        return self._fulfil(request, order_id, services.order_mark_shipped)

    @action(detail=True, methods=["post"])
    def deliver(self, request: Request, order_id: str) -> Response:
        """Operators: the carrier delivered it."""
        return self._fulfil(request, order_id, services.order_mark_delivered)


@extend_schema_view(
    retrieve=extend_schema(parameters=[PRODUCT_ID]),
    update=extend_schema(
        parameters=[PRODUCT_ID],
        request=ProductInputSerializer,
        responses={200: ProductSerializer, 201: ProductSerializer},
    ),
)
class ProductViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The catalog: readable by every authenticated user; PUT (operators) sets a product and its stock."""

    lookup_field = "product_id"
    lookup_value_regex = "[^/]+"
    serializer_class = ProductSerializer
    http_method_names = ["get", "put", "head", "options"]

    def get_queryset(self) -> QuerySet[Product]:
        return selectors.product_list()

    def update(self, request: Request, product_id: str) -> Response:
        if not selectors.may_set_products(user=request.user):
            raise PermissionDenied("Setting products needs the orders.change_product permission.")
        given = ProductInputSerializer(data=_json_body(request))
        given.is_valid(raise_exception=True)
        try:
            product, created = services.product_set(
                product_id=product_id,
                actor=user_actor(request.user),
                **given.validated_data,
            )
        except services.ProductInvalid as exc:
            raise Problem(400, str(exc), code="validation_error") from None
        return Response(
            ProductSerializer(product).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )
