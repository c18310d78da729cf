"""Admin for payments: filters, search, state history, refunds and saga steps inline; money is
read-only; actions refund or retry through the services.

A payment's page starts with what an operator looks for (status, amount, customer, times to the
second); the request and the references follow, the request folded."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from core.actors import user_actor
from core.admin_base import ActionsOnlyAdmin, ReadOnlyAdmin, ReadOnlyInline, money
from core.admin_display import InlinesWithRowsAdmin, amount_in, at_second, breakable, json_shown
from payments import services
from payments.models import LedgerReconciliation, Payment, PaymentTransition, Refund, SagaStep, Settlement


class PaymentTransitionInline(ReadOnlyInline):
    model = PaymentTransition
    at = at_second("created_at", label="at")
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "reason")


class RefundInline(ReadOnlyInline):
    model = Refund
    amount_shown = money("amount", label="amount")
    created = at_second("created_at", label="requested")
    completed = at_second("completed_at", label="completed")
    fields = readonly_fields = (
        "refund_id",
        "amount_shown",
        "status",
        "reason",
        "requested_by",
        "created",
        "completed",
    )


class SagaStepInline(ReadOnlyInline):
    model = SagaStep
    at = at_second("created_at", label="at")
    fields = readonly_fields = ("at", "step", "status", "detail")


@admin.register(Payment)
class PaymentAdmin(InlinesWithRowsAdmin, ActionsOnlyAdmin):
    amount_shown = money("amount", label="amount")
    refunded_shown = money("refunded_amount", label="refunded")
    amount_listed = amount_in("amount", label="amount")
    created = at_second("created_at", label="created")
    updated = at_second("updated_at", label="updated")
    processed = at_second("processed_at", label="processed")
    request_shown = json_shown("request", label="request")
    # Five columns that fit beside the filters at 1366 px; the merchant is a filter.
    list_display = ("payment", "amount_listed", "status_listed", "customer", "created")
    list_filter = ("status", "currency", "failure_reason", "merchant_id")
    search_fields = ("payment_id", "user_id", "merchant_id", "gateway_reference")
    date_hierarchy = "created_at"
    exclude = ("amount", "refunded_amount", "request", "created_at", "updated_at", "processed_at")
    shown_fields = (
        "amount_shown",
        "refunded_shown",
        "customer",
        "created",
        "updated",
        "processed",
        "request_shown",
    )
    inlines = [PaymentTransitionInline, RefundInline, SagaStepInline]
    actions = ["refund_in_full", "retry_gateway_failure"]

    def get_fieldsets(self, request: HttpRequest, obj: Payment | None = None) -> Any:
        first = ("payment_id", "status", "amount_shown", "currency", "refunded_shown", "customer")
        times = ("created", "processed", "updated")
        failure = ("failure_reason", "failure_message")
        references = ("merchant_id", "gateway_reference", "correlation_id", "settlement", "client")
        fieldsets: list[tuple[str | None, dict[str, Any]]] = [
            (None, {"fields": first + times}),
        ]
        if obj is not None and (obj.failure_reason or obj.failure_message):
            fieldsets.append(("Failure", {"fields": failure}))
        fieldsets.append(("Request and references", {"fields": ("request_shown", *references)}))
        return fieldsets

    @admin.display(description="payment id", ordering="payment_id")
    def payment(self, payment: Payment) -> SafeString:
        return breakable(payment.payment_id)

    @admin.display(description="status", ordering="status")
    def status_listed(self, payment: Payment) -> str:
        status = payment.get_status_display()
        return f"{status}: {payment.failure_reason}" if payment.failure_reason else status

    @admin.display(description="customer", ordering="user_id")
    def customer(self, payment: Payment) -> str:
        return payment.user_id

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
    net_listed = amount_in("net_amount", label="net")
    created = at_second("created_at", label="created")
    list_display = ("settlement_id", "merchant_id", "net_listed", "gross", "refunded", "payments", "created")
    list_filter = ("currency", "merchant_id")
    fields = (
        "settlement_id",
        "merchant_id",
        "net",
        "currency",
        "gross",
        "refunded",
        "payment_count",
        "created",
    )
    exclude = ("gross_amount", "refunded_amount", "net_amount", "created_at")
    shown_fields = ("gross", "refunded", "net", "created")

    @admin.display(description="payments", ordering="payment_count")
    def payments(self, settlement: Settlement) -> int:
        return settlement.payment_count


@admin.register(LedgerReconciliation)
class LedgerReconciliationAdmin(ReadOnlyAdmin):
    """Each comparison of payments and refunds with the ledger; the differences it found."""

    started = at_second("started_at", label="started")
    finished = at_second("finished_at", label="finished")
    differences_shown = json_shown("differences", label="differences")
    list_display = ("started", "ok", "differences_found", "new_differences", "payments_checked", "alert_id")
    fields = readonly_fields = (
        "started",
        "finished",
        "ok",
        "differences_found",
        "new_differences",
        "alert_id",
        "payments_checked",
        "refunds_checked",
        "postings_checked",
        "differences_shown",
    )

    @admin.display(boolean=True)
    def ok(self, run: LedgerReconciliation) -> bool:
        return run.ok

    @admin.display(description="differences")
    def differences_found(self, run: LedgerReconciliation) -> int:
        return len(run.differences)


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    """Refunds on their own, to be found by their id (each also shows on its payment's page)."""

    amount_listed = amount_in("amount", label="amount")
    created = at_second("created_at", label="requested")
    completed = at_second("completed_at", label="completed")
    list_display = ("refund_id", "amount_listed", "status", "payment", "created")
    list_filter = ("status",)
    list_select_related = ("payment",)
    search_fields = ("refund_id", "payment__payment_id", "gateway_reference")
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "refund_id",
        "status",
        "amount_listed",
        "payment",
        "reason",
        "requested_by",
        "created",
        "completed",
        "gateway_reference",
        "failure_message",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Refund]:
        return super().get_queryset(request).select_related("payment")
