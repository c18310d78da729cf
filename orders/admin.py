"""Admin for orders and the catalog: an order's lines, status history, reservations and saga steps
inline; actions cancel, ship and deliver through the services; products and their stock are set
through the same service as the API's PUT."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.actors import user_actor
from core.admin_base import ReadOnlyInline
from core.money import MoneyError, check_precision, parse_currency
from orders import services
from orders.models import Order, OrderLine, OrderTransition, Product, Reservation, SagaStep


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = readonly_fields = ("product_id", "quantity", "unit_price")


class OrderTransitionInline(ReadOnlyInline):
    model = OrderTransition
    fields = readonly_fields = ("created_at", "from_status", "to_status", "actor", "reason")


class ReservationInline(ReadOnlyInline):
    model = Reservation
    fields = readonly_fields = ("product", "quantity", "status", "created_at", "updated_at")


class SagaStepInline(ReadOnlyInline):
    model = SagaStep
    fields = readonly_fields = ("created_at", "step", "detail")


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("order_id", "user_id", "total", "currency", "status", "reason", "created_at")
    list_filter = ("status", "reason", "currency")
    search_fields = ("order_id", "user_id", "payment_id", "tracking_number")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Order._meta.fields]
    inlines = [OrderLineInline, OrderTransitionInline, ReservationInline, SagaStepInline]
    actions = ["cancel_orders", "mark_shipped", "mark_delivered"]

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
    list_display = ("product_id", "name", "price", "currency", "on_hand", "reserved", "available")
    search_fields = ("product_id", "name")
    readonly_fields = ("on_hand", "reserved", "updated_at")

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
