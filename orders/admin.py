"""Admin for orders and the catalog: an order's lines, status history, reservations and saga steps
inline; actions cancel, ship and deliver through the services; products and their stock are set
through the same service as the API's PUT.

An order's page is view-only (the actions change orders) and starts with its status, total and
customer; related tables show only when the order has rows in them."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from core.actors import user_actor
from core.admin_base import ReadOnlyInline, money
from core.admin_display import (
    ChangedByActionsAdmin,
    InlinesWithRowsAdmin,
    amount_in,
    at_second,
    breakable,
    json_shown,
)
from core.money import MoneyError, check_precision, format_money, parse_currency
from orders import services
from orders.models import Order, OrderLine, OrderTransition, Product, Reservation, SagaStep


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = readonly_fields = ("product_id", "quantity", "unit_price_shown")

    @admin.display(description="unit price")
    def unit_price_shown(self, line: OrderLine) -> str:
        return format_money(line.unit_price, line.order.currency)


class OrderTransitionInline(ReadOnlyInline):
    model = OrderTransition
    at = at_second("created_at", label="at")
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "reason")


class ReservationInline(ReadOnlyInline):
    model = Reservation
    created = at_second("created_at", label="created")
    updated = at_second("updated_at", label="updated")
    fields = readonly_fields = ("product", "quantity", "status", "created", "updated")


class SagaStepInline(ReadOnlyInline):
    model = SagaStep
    at = at_second("created_at", label="at")
    fields = readonly_fields = ("at", "step", "detail")


@admin.register(Order)
class OrderAdmin(InlinesWithRowsAdmin, ChangedByActionsAdmin):
    total_listed = amount_in("total", label="total")
    total_shown = money("total", label="total")
    subtotal_shown = money("subtotal", label="subtotal")
    tax_shown = money("tax", label="tax")
    shipping_shown = money("shipping", label="shipping")
    created = at_second("created_at", label="created")
    updated = at_second("updated_at", label="updated")
    reservation_expires = at_second("reservation_expires_at", label="reservation expires")
    request_shown = json_shown("request", label="request")
    # Five columns that fit beside the filters at 1366 px.
    list_display = ("order", "total_listed", "status_listed", "customer", "created")
    list_filter = ("status", "reason", "currency")
    search_fields = ("order_id", "user_id", "payment_id", "tracking_number")
    date_hierarchy = "created_at"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "order_id",
                    "status",
                    "total_shown",
                    "currency",
                    "customer",
                    "created",
                    "updated",
                    "reason",
                    "reason_message",
                )
            },
        ),
        ("Amounts", {"fields": ("subtotal_shown", "tax_shown", "shipping_shown")}),
        ("Shipping", {"fields": ("carrier", "tracking_number", "reservation_expires")}),
        (
            "Request and references",
            {"fields": ("request_shown", "payment_id", "merchant_id", "correlation_id", "client")},
        ),
    )
    readonly_fields = flatten_fieldsets(fieldsets)
    inlines = [OrderLineInline, OrderTransitionInline, ReservationInline, SagaStepInline]
    actions = ["cancel_orders", "mark_shipped", "mark_delivered"]

    @admin.display(description="order id", ordering="order_id")
    def order(self, order: Order) -> SafeString:
        return breakable(order.order_id)

    @admin.display(description="status", ordering="status")
    def status_listed(self, order: Order) -> str:
        status = order.get_status_display()
        return f"{status}: {order.reason}" if order.reason else status

    @admin.display(description="customer", ordering="user_id")
    def customer(self, order: Order) -> str:
        return order.user_id

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    def _each(self, request: HttpRequest, queryset: QuerySet[Order], service: Any, done: str) -> None:
        for order in queryset:
            try:
                service(order_id=order.order_id, actor=user_actor(request.user))
            except (services.IllegalTransition, services.OrderNotCancellable) as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(request, f"{order.order_id} {done}.", messages.SUCCESS)

    @admin.action(
        description="Cancel the selected orders (refund and restock what was paid)", permissions=["change"]
    )
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(request, queryset, services.order_cancel, "cancelled")

    @admin.action(description="Mark the selected orders shipped", permissions=["change"])
    def mark_shipped(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(request, queryset, services.order_mark_shipped, "shipped")

    @admin.action(description="Mark the selected orders delivered", permissions=["change"])
    def mark_delivered(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(request, queryset, services.order_mark_delivered, "delivered")


class ProductForm(forms.ModelForm):
    available = forms.IntegerField(min_value=0, help_text="Units free to sell; reserved units stay held.")

    class Meta:
        model = Product
        fields = ("product_id", "name", "price", "currency")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["available"].initial = self.instance.available

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        price, currency = cleaned.get("price"), cleaned.get("currency")
        if price is not None and currency:
            try:
                cleaned["price"] = check_precision(price, parse_currency(currency))
            except MoneyError as exc:
                raise forms.ValidationError(str(exc)) from None
        return cleaned


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm
    price_listed = amount_in("price", label="price")
    updated = at_second("updated_at", label="updated")
    list_display = ("product_id", "name", "price_listed", "on_hand", "reserved", "available")
    search_fields = ("product_id", "name")
    readonly_fields = ("on_hand", "reserved", "updated")

    def get_readonly_fields(self, request: HttpRequest, obj: Product | None = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "product_id") if obj else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Product | None = None) -> bool:
        return False  # orders refer to their products

    def save_model(self, request: HttpRequest, obj: Product, form: ProductForm, change: bool) -> None:
        product, _ = services.product_set(
            product_id=obj.product_id,
            name=obj.name,
            price=obj.price,
            currency=obj.currency,
            available=form.cleaned_data["available"],
            actor=user_actor(request.user),
        )
        obj.pk = product.pk
        obj.refresh_from_db()
