"""Ledger API shapes: money as the currency's decimal string, camelCase like the events."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ledger.events import money_string
from ledger.kinds import TransactionKind
from ledger.models import Entry, Transaction


class BalancesSerializer(serializers.Serializer):
    """`{"accountId": ..., "balances": {"USD": "70.00"}}`: balances as decimal strings, per currency."""

    accountId = serializers.CharField()  # noqa: N815 - the wire name
    balances = serializers.DictField(child=serializers.CharField())


class StatementEntrySerializer(serializers.ModelSerializer):
    """One line of an account's statement, with the balance it left in its currency."""

    transactionId = serializers.CharField(source="transaction_id")  # noqa: N815
    kind = serializers.CharField(source="transaction.kind")
    description = serializers.CharField(source="transaction.description")
    postedAt = serializers.DateTimeField(source="transaction.posted_at")  # noqa: N815
    amount = serializers.SerializerMethodField()
    balance = serializers.SerializerMethodField()

    class Meta:
        model = Entry
        fields = [
            "transactionId",
            "kind",
            "description",
            "postedAt",
            "currency",
            "direction",
            "amount",
            "balance",
            "version",
        ]

    def get_amount(self, entry: Entry) -> str:
        return money_string(entry.amount, entry.currency)

    def get_balance(self, entry: Entry) -> str:
        return money_string(entry.balance_after, entry.currency)


class EntrySerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account_id")
    amount = serializers.SerializerMethodField()

    class Meta:
        model = Entry
        fields = ["account", "direction", "amount", "currency"]

    def get_amount(self, entry: Entry) -> str:
        return money_string(entry.amount, entry.currency)


class TransactionSerializer(serializers.ModelSerializer):
    transactionId = serializers.CharField(source="transaction_id")  # noqa: N815
    postedAt = serializers.DateTimeField(source="posted_at")  # noqa: N815
    reverses = serializers.CharField(source="reverses_id", allow_null=True)
    reversedBy = serializers.SerializerMethodField()  # noqa: N815
    entries = EntrySerializer(many=True)

    class Meta:
        model = Transaction
        fields = [
            "transactionId",
            "kind",
            "description",
            "metadata",
            "postedAt",
            "reverses",
            "reversedBy",
            "entries",
        ]

    def get_reversedBy(self, txn: Transaction) -> str | None:  # noqa: N802
        reversal = getattr(txn, "reversed_by", None)
        return reversal.pk if reversal is not None else None


class TransactionFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=TransactionKind.choices, required=False)
    account = serializers.CharField(required=False)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class StatementFilterSerializer(serializers.Serializer):
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class TransactionRequestSerializer(serializers.Serializer):
    """For the OpenAPI document; the body is validated by the event schema (ledger.events)."""

    transactionId = serializers.CharField(required=False, help_text="Generated when absent.")  # noqa: N815
    kind = serializers.ChoiceField(choices=["topup", "withdrawal", "transfer", "refund", "journal"])
    amount = serializers.CharField(required=False)
    currency = serializers.CharField(required=False)
    fromAccount = serializers.CharField(required=False)  # noqa: N815
    toAccount = serializers.CharField(required=False)  # noqa: N815
    entries = serializers.ListField(child=serializers.DictField(), required=False)
    description = serializers.CharField(required=False)
    metadata = serializers.DictField(required=False)


class TransactionAcceptedSerializer(serializers.Serializer):
    transactionId = serializers.CharField()  # noqa: N815
    status = serializers.CharField()


def query_params(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """Validated filter parameters (400 on bad ones)."""
    params = serializer_class(data=data)
    params.is_valid(raise_exception=True)
    return dict(params.validated_data)
