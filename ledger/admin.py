"""Ledger admin: accounts with their balances, transactions with their entries, reconciliations.

Everything is read-only; the only writes are actions that call services: freeze/unfreeze accounts
and post the reversal of a transaction (the way a posted transaction is corrected). Amounts come
with their currency, times to the second, metadata folded.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from core import ids
from core.actors import user_actor
from core.admin_base import ReadOnlyAdmin, ReadOnlyInline, money
from core.admin_display import InlinesWithRowsAdmin, at_second, breakable, json_shown
from ledger import services
from ledger.events import money_string
from ledger.kinds import Direction
from ledger.models import Account, Balance, ClientAccount, Entry, Reconciliation, Transaction
from ledger.postings import LedgerRefused


class BalanceInline(ReadOnlyInline):
    model = Balance
    balance_shown = money("balance", label="balance")
    updated = at_second("updated_at", label="updated")
    fields = readonly_fields = ("currency", "balance_shown", "version", "updated")


def _actor(request: HttpRequest) -> str:
    return user_actor(request.user)


@admin.register(Account)
class AccountAdmin(InlinesWithRowsAdmin, ReadOnlyAdmin):
    created = at_second("created_at", label="created")
    updated = at_second("updated_at", label="updated")
    list_display = ("id", "balances_shown", "kind", "frozen", "created")
    list_filter = ("kind", "frozen", "allow_negative")
    search_fields = ("id",)
    fields = readonly_fields = (
        "id",
        "balances_shown",
        "kind",
        "frozen",
        "allow_negative",
        "created",
        "updated",
    )
    inlines = [BalanceInline]
    actions = ["freeze", "unfreeze"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Account]:
        return super().get_queryset(request).prefetch_related("balances")

    @admin.display(description="balances")
    def balances_shown(self, account: Account) -> str:
        return ", ".join(
            f"{money_string(b.balance, b.currency)} {b.currency}"
            for b in sorted(account.balances.all(), key=lambda b: b.currency)
        )

    def has_freeze_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger.freeze_account")

    @admin.action(description="Freeze selected accounts (refuse every posting)", permissions=["freeze"])
    def freeze(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for account in queryset:
            services.account_freeze(account_id=account.pk, actor=_actor(request))
        self.message_user(request, f"Froze {queryset.count()} accounts.", messages.SUCCESS)

    @admin.action(description="Unfreeze selected accounts", permissions=["freeze"])
    def unfreeze(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for account in queryset:
            services.account_unfreeze(account_id=account.pk, actor=_actor(request))
        self.message_user(request, f"Unfroze {queryset.count()} accounts.", messages.SUCCESS)


class EntryInline(ReadOnlyInline):
    model = Entry
    amount_shown = money("amount", label="amount")
    balance_after_shown = money("balance_after", label="balance after")
    fields = readonly_fields = (
        "account",
        "direction",
        "amount_shown",
        "currency",
        "balance_after_shown",
        "version",
    )


@admin.register(Transaction)
class TransactionAdmin(InlinesWithRowsAdmin, ReadOnlyAdmin):
    posted = at_second("posted_at", label="posted")
    metadata_shown = json_shown("metadata", label="metadata")
    list_display = ("transaction", "amount", "kind", "posted", "description")
    list_filter = ("kind",)
    search_fields = ("transaction_id", "description", "correlation_id", "entries__account__id")
    date_hierarchy = "posted_at"
    fields = readonly_fields = (
        "transaction_id",
        "amount",
        "kind",
        "posted",
        "description",
        "actor",
        "reverses",
        "correlation_id",
        "metadata_shown",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Transaction]:
        return super().get_queryset(request).prefetch_related("entries")

    @admin.display(description="transaction id", ordering="transaction_id")
    def transaction(self, txn: Transaction) -> SafeString:
        return breakable(txn.transaction_id)

    @admin.display(description="amount")
    def amount(self, txn: Transaction) -> str:
        """What moved: the debit legs' sum in each currency (the credits balance them)."""
        moved: dict[str, Decimal] = {}
        for entry in txn.entries.all():
            if entry.direction == Direction.DEBIT:
                moved[entry.currency] = moved.get(entry.currency, Decimal(0)) + entry.amount
        return ", ".join(
            f"{money_string(total, currency)}\u00a0{currency}" for currency, total in sorted(moved.items())
        )

    inlines = [EntryInline]
    actions = ["reverse_transactions"]

    def has_reverse_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger.reverse_transaction")

    @admin.action(
        description="Reverse selected transactions (post the reversing transactions)", permissions=["reverse"]
    )
    def reverse_transactions(self, request: HttpRequest, queryset: QuerySet[Transaction]) -> None:
        for txn in queryset:
            try:
                result = services.transaction_reverse(transaction_id=txn.pk, actor=_actor(request))
            except LedgerRefused as refused:
                self.message_user(request, f"{txn.pk} not reversed: {refused}", messages.ERROR)
                continue
            if result.created:
                self.message_user(request, f"{txn.pk} reversed by {result.transaction}.", messages.SUCCESS)
            else:
                self.message_user(request, f"{txn.pk} was already reversed.", messages.WARNING)


@admin.register(Reconciliation)
class ReconciliationAdmin(ReadOnlyAdmin):
    started = at_second("started_at", label="started")
    finished = at_second("finished_at", label="finished")
    mismatches_shown = json_shown("mismatches", label="mismatches")
    imbalances_shown = json_shown("imbalances", label="imbalances")
    list_display = ("started", "ok", "balances_checked", "alert_id")
    fields = readonly_fields = (
        "started",
        "finished",
        "ok",
        "balances_checked",
        "alert_id",
        "mismatches_shown",
        "imbalances_shown",
    )

    @admin.display(boolean=True)
    def ok(self, run: Reconciliation) -> bool:
        return run.ok


class ClientAccountForm(forms.ModelForm):
    class Meta:
        model = ClientAccount
        fields = ("account_id", "client")

    def clean_account_id(self) -> str:
        # The same grammar as the API's: an id with a newline, a zero-width space or a look-alike
        # letter would be an account nobody can name again.
        try:
            return ids.check_account_id(self.cleaned_data["account_id"])
        except ids.InvalidId as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(ClientAccount)
class ClientAccountAdmin(admin.ModelAdmin):
    """Operators assign ledger accounts to API clients; each change is an audit record."""

    form = ClientAccountForm

    assigned = at_second("assigned_at", label="assigned")
    list_display = ("account_id", "client", "assigned_by", "assigned")
    search_fields = ("account_id", "client__username")
    readonly_fields = ("assigned_by", "assigned")

    def save_model(self, request: HttpRequest, obj: ClientAccount, form: Any, change: bool) -> None:
        if change and "account_id" in form.changed_data:
            services.client_account_unassign(account_id=form.initial["account_id"], actor=_actor(request))
        services.client_account_assign(account_id=obj.account_id, client=obj.client, actor=_actor(request))

    def delete_model(self, request: HttpRequest, obj: ClientAccount) -> None:
        services.client_account_unassign(account_id=obj.account_id, actor=_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ClientAccount]) -> None:
        for assignment in queryset:
            self.delete_model(request, assignment)
