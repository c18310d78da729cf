"""Admin for payments: filters, search, state history, refunds and saga steps inline; money is
read-only; actions refund or retry through the services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.actors import user_actor
from core.admin_base import ActionsOnlyAdmin, ReadOnlyAdmin, ReadOnlyInline, money
from payments import services
from payments.models import LedgerReconciliation, Payment, PaymentTransition, Refund, SagaStep, Settlement


class PaymentTransitionInline(ReadOnlyInline):
    model = PaymentTransition
    fields = readonly_fields = ("created_at", "from_status", "to_status", "actor", "reason")


class RefundInline(ReadOnlyInline):
    model = Refund
    amount_shown = money("amount", label="amount")
    fields = readonly_fields = ("refund_id", "amount_shown", "status", "reason", "requested_by", "created_at")


class SagaStepInline(ReadOnlyInline):
    model = SagaStep
    fields = readonly_fields = ("created_at", "step", "status", "detail")


@admin.register(Payment)
class PaymentAdmin(ActionsOnlyAdmin):
    amount_shown = money("amount", label="amount")
    refunded_shown = money("refunded_amount", label="refunded")
    list_display = (
        "payment_id",
        "user_id",
        "merchant_id",
        "amount_shown",
        "currency",
        "status",
        "failure_reason",
        "created_at",
    )
    list_filter = ("status", "currency", "failure_reason", "merchant_id")
    search_fields = ("payment_id", "user_id", "merchant_id", "gateway_reference")
    date_hierarchy = "created_at"
    exclude = ("amount", "refunded_amount")
    shown_fields = ("amount_shown", "refunded_shown")
    inlines = [PaymentTransitionInline, RefundInline, SagaStepInline]
    actions = ["refund_in_full", "retry_gateway_failure"]

    def has_refund_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.refund_payment")

    @admin.action(description="Refund what is left of the selected payments", permissions=["refund"])
    def refund_in_full(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        for payment in queryset:
            try:
                services.refund_request(
                    payment_id=payment.payment_id,
                    amount=None,
                    reason="admin refund",
                    actor=user_actor(request.user),
                )
            except (services.RefundRefused, services.RefundInvalid) as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(request, f"Refund of {payment.payment_id} requested.", messages.SUCCESS)

    @admin.action(description="Retry payments that failed with gateway_unavailable", permissions=["change"])
    def retry_gateway_failure(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        for payment in queryset:
            try:
                services.payment_retry(payment_id=payment.payment_id, actor=user_actor(request.user))
            except services.IllegalTransition as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(request, f"Retrying {payment.payment_id}.", messages.SUCCESS)


@admin.register(Settlement)
class SettlementAdmin(ActionsOnlyAdmin):
    gross = money("gross_amount", label="gross")
    refunded = money("refunded_amount", label="refunded")
    net = money("net_amount", label="net")
    list_display = (
        "settlement_id",
        "merchant_id",
        "currency",
        "gross",
        "refunded",
        "net",
        "payment_count",
        "created_at",
    )
    list_filter = ("currency", "merchant_id")
    exclude = ("gross_amount", "refunded_amount", "net_amount")
    shown_fields = ("gross", "refunded", "net")


@admin.register(LedgerReconciliation)
class LedgerReconciliationAdmin(ReadOnlyAdmin):
    """Each comparison of payments and refunds with the ledger; the differences it found."""

    list_display = (
        "started_at",
        "ok",
        "differences_found",
        "new_differences",
        "payments_checked",
        "alert_id",
    )
    readonly_fields = [f.name for f in LedgerReconciliation._meta.fields]

    @admin.display(boolean=True)
    def ok(self, run: LedgerReconciliation) -> bool:
        return run.ok

    @admin.display(description="differences")
    def differences_found(self, run: LedgerReconciliation) -> int:
        return len(run.differences)
