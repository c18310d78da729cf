"""Ledger API: balances, statements, transactions; POST asks for a posting (202, via Kafka)."""

from __future__ import annotations

import uuid
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from pydantic import ValidationError
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bridge import codec
from kafka_platform.idempotency import idempotent
from ledger import postings, selectors, services
from ledger.api import serializers as s
from ledger.events import TransactionRequested, money_string
from ledger.postings import LedgerRefused

IDEMPOTENCY_SCOPE = "ledger.transactions"


class BalanceView(APIView):
    @extend_schema(responses=s.BalancesSerializer)
    def get(self, request: Request, account_id: str) -> Response:
        balances = selectors.account_balances(account_id=account_id)
        if balances is None:
            raise NotFound(f"no ledger account {account_id!r}")
        return Response(
            {
                "accountId": account_id,
                "balances": {
                    currency: money_string(amount, currency) for currency, amount in balances.items()
                },
            }
        )


class AccountEntriesView(generics.ListAPIView):
    """An account's statement: its entries in posting order with the running balance."""

    serializer_class = s.StatementEntrySerializer

    def get_queryset(self) -> Any:
        params = s.query_params(s.StatementFilterSerializer, self.request.query_params)
        return selectors.account_statement(account_id=self.kwargs["account_id"], **params)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if selectors.account_balances(account_id=kwargs["account_id"]) is None:
            raise NotFound(f"no ledger account {kwargs['account_id']!r}")
        return super().list(request, *args, **kwargs)


def _bad_request(detail: str, **extra: Any) -> Response:
    return Response({"detail": detail, **extra}, status=status.HTTP_400_BAD_REQUEST)


class TransactionListView(generics.ListAPIView):
    serializer_class = s.TransactionSerializer

    def get_queryset(self) -> Any:
        params = s.query_params(s.TransactionFilterSerializer, self.request.query_params)
        params["account_id"] = params.pop("account", None)
        return selectors.transaction_list(**params)

    @extend_schema(request=s.TransactionRequestSerializer, responses={202: s.TransactionAcceptedSerializer})
    def post(self, request: Request) -> Response:
        """Ask for a posting: published as ledger.transaction-requested; the outcome is an event."""
        return idempotent(request, scope=IDEMPOTENCY_SCOPE, handler=lambda: self._request_posting(request))

    def _request_posting(self, request: Request) -> Response:
        try:
            # Parsed here rather than by DRF so that numbers become Decimals, never floats.
            body = codec.loads(request.body)
        except ValueError as exc:
            return _bad_request(f"the body is not JSON: {exc}")
        if not isinstance(body, dict):
            return _bad_request("the body must be a JSON object")
        body.setdefault("transactionId", f"txn_{uuid.uuid4().hex}")
        try:
            transaction_request = TransactionRequested.model_validate(body)
        except ValidationError as exc:
            return _bad_request(
                "invalid transaction request",
                errors=exc.errors(include_url=False, include_context=False, include_input=False),
            )
        try:
            postings.checked(postings.from_request(transaction_request))
        except LedgerRefused as refused:
            return _bad_request(str(refused), reason=refused.reason)
        services.transaction_request(request=transaction_request)
        transaction_id = transaction_request.transactionId
        return Response(
            {"transactionId": transaction_id, "status": "requested"},
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": reverse("ledger-transaction-detail", args=[transaction_id])},
        )


class TransactionDetailView(generics.RetrieveAPIView):
    serializer_class = s.TransactionSerializer
    lookup_field = "transaction_id"

    def get_queryset(self) -> Any:
        return selectors.transaction_list()
