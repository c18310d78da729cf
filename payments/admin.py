"""Admin for payments: filters, search, state history, refunds and saga steps inline; money is
read-only; actions refund or retry through the services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from payments import services
from payments.models import Payment, PaymentTransition, Refund, SagaStep, Settlement


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class PaymentTransitionInline(ReadOnlyInline):
    model = PaymentTransition
    fields = readonly_fields = ("created_at", "from_status", "to_status", "actor", "reason")


class RefundInline(ReadOnlyInline):
    model = Refund
    fields = readonly_fields = ("refund_id", "amount", "status", "reason", "requested_by", "created_at")


class SagaStepInline(ReadOnlyInline):
    model = SagaStep
    fields = readonly_fields = ("created_at", "step", "status", "detail")


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = (
        "payment_id",
        "user_id",
        "merchant_id",
        "amount",
        "currency",
        "status",
        "failure_reason",
        "created_at",
    )
    list_filter = ("status", "currency", "failure_reason", "merchant_id")
    search_fields = ("payment_id", "user_id", "merchant_id", "gateway_reference")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Payment._meta.fields]
    inlines = [PaymentTransitionInline, RefundInline, SagaStepInline]
    actions = ["refund_in_full", "retry_gateway_failure"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Payment | None = None) -> bool:
        return False

    @admin.action(description="Refund what is left of the selected payments")
    def refund_in_full(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        for payment in queryset:
            try:
                services.refund_request(
                    payment_id=payment.payment_id,
                    amount=None,
                    reason="admin refund",
                    actor=f"user:{request.user.get_username()}",
                )
            except services.RefundRefused as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(request, f"Refund of {payment.payment_id} requested.", messages.SUCCESS)

    @admin.action(description="Retry payments that failed with gateway_unavailable")
    def retry_gateway_failure(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        for payment in queryset:
            try:
                services.payment_retry(
                    payment_id=payment.payment_id, actor=f"user:{request.user.get_username()}"
                )
            except services.IllegalTransition as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(request, f"Retrying {payment.payment_id}.", messages.SUCCESS)


@admin.register(Settlement)
class SettlementAdmin(admin.ModelAdmin):
    list_display = (
        "settlement_id",
        "merchant_id",
        "currency",
        "gross_amount",
        "refunded_amount",
        "net_amount",
        "payment_count",
        "created_at",
    )
    list_filter = ("currency", "merchant_id")
    readonly_fields = [f.name for f in Settlement._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Settlement | None = None) -> bool:
        return False
