"""Admin for payments: list, filters, search and the state history inline; money is read-only."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from payments.models import Payment, PaymentTransition


class PaymentTransitionInline(admin.TabularInline):
    model = PaymentTransition
    extra = 0
    can_delete = False
    readonly_fields = ("created_at", "from_status", "to_status", "actor", "reason")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("payment_id", "user_id", "merchant_id", "amount", "currency", "status", "created_at")
    list_filter = ("status", "currency", "failure_reason")
    search_fields = ("payment_id", "user_id", "merchant_id", "gateway_reference")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Payment._meta.fields]
    inlines = [PaymentTransitionInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
