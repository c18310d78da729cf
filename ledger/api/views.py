"""Ledger API: balances, statements, transactions; POST asks for a posting (202, via Kafka)."""

from __future__ import annotations

import uuid
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.conflicts import conflicting_duplicate_alert
from core import api_fields
from core.actors import user_actor
from core.idempotency import idempotent
from core.ids import ConflictingDuplicate
from core.openapi import IDEMPOTENCY_KEY, READ_PROBLEMS, WRITE_PROBLEMS, problems
from core.problems import Problem
from ledger import postings, selectors, services
from ledger.api import serializers as s
from ledger.events import TransactionRequested, money_string
from ledger.postings import LedgerRefused

IDEMPOTENCY_SCOPE = "ledger.transactions"


def _visible_balances(request: Request, account_id: str) -> dict:
    """The account's balances if the requester may read them; 404 alike for others' and unknown."""
    balances = None
    if selectors.account_visible_to(user=request.user, account_id=account_id):
        balances = selectors.account_balances(account_id=account_id)
    if balances is None:
        raise NotFound(f"no ledger account {account_id!r}")
    return balances


class BalanceView(APIView):
    @extend_schema(responses={200: s.BalancesSerializer, **problems(401, 404)})
    def get(self, request: Request, account_id: str) -> Response:
        balances = _visible_balances(request, account_id)
        return Response(
            {
                "accountId": account_id,
                "balances": {
                    currency: money_string(amount, currency) for currency, amount in balances.items()
                },
            }
        )


@extend_schema_view(
    get=extend_schema(
        parameters=[s.StatementFilterSerializer],
        responses={200: s.StatementEntrySerializer(many=True), **problems(*READ_PROBLEMS)},
    )
)
class AccountEntriesView(generics.ListAPIView):
    """An account's statement: its entries in posting order with the running balance."""

    serializer_class = s.StatementEntrySerializer

    def get_queryset(self) -> Any:
        params = s.query_params(s.StatementFilterSerializer, self.request.query_params)
        return selectors.account_statement(account_id=self.kwargs["account_id"], **params)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        _visible_balances(request, kwargs["account_id"])
        return super().list(request, *args, **kwargs)


def _check_may_post(user: Any, request: TransactionRequested) -> None:
    """Operators post anything; a client only a `transfer` from an account assigned to it."""
    if user.has_perm(selectors.POST_ANY_PERMISSION):
        return
    if request.kind != "transfer" or request.fromAccount not in selectors.accounts_of(user):
        raise PermissionDenied("A client may only request a transfer from a ledger account assigned to it.")


@extend_schema_view(
    get=extend_schema(
        parameters=[s.TransactionFilterSerializer],
        responses={200: s.TransactionSerializer(many=True), **problems(400, 401)},
    )
)
class TransactionListView(generics.ListAPIView):
    serializer_class = s.TransactionSerializer

    def get_queryset(self) -> Any:
        params = s.query_params(s.TransactionFilterSerializer, self.request.query_params)
        params["account_id"] = params.pop("account", None)
        return selectors.transactions_visible_to(self.request.user, selectors.transaction_list(**params))

    @extend_schema(
        request=s.TransactionRequestSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={202: s.TransactionAcceptedSerializer, **problems(*WRITE_PROBLEMS)},
    )
    def post(self, request: Request) -> Response:
        """Ask for a posting: published as ledger.transaction-requested; the outcome is an event."""
        try:
            return idempotent(
                request, scope=IDEMPOTENCY_SCOPE, handler=lambda: self._request_posting(request)
            )
        except ConflictingDuplicate as conflict:
            # Raised here, after the request's transaction rolled back, so the alert stays.
            conflicting_duplicate_alert(conflict=conflict, source=f"api:{user_actor(request.user)}")
            raise api_fields.conflicting_duplicate(conflict, field="transactionId") from None

    def _request_posting(self, request: Request) -> Response:
        body = request.data  # numbers parsed as Decimals (core.parsers)
        if not isinstance(body, dict):
            raise Problem(400, "The body must be a JSON object.", code="validation_error")
        body = {"transactionId": f"txn_{uuid.uuid4().hex}", **body}
        # A pydantic ValidationError is answered 400 with its `errors` by the API's one error edge.
        transaction_request = TransactionRequested.model_validate(body)
        api_fields.client_chosen_id(transaction_request.transactionId, field="transactionId")
        _check_may_post(request.user, transaction_request)
        try:
            posting = postings.checked(postings.from_request(transaction_request))
        except LedgerRefused as refused:
            raise Problem(400, str(refused), code=refused.reason, reason=refused.reason) from None
        # An id already posted: the same posting again is accepted (posted once); another one is
        # a conflicting duplicate, answered now rather than dead-lettered later. Whose the posted
        # one is stays unsaid: the answer is the same for any other content.
        services.transaction_check_duplicate(posting=posting)
        services.transaction_request(request=transaction_request, actor=user_actor(request.user))
        transaction_id = transaction_request.transactionId
        return Response(
            {"transactionId": transaction_id, "status": "requested"},
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": reverse("ledger-transaction-detail", args=[transaction_id])},
        )


@extend_schema_view(get=extend_schema(responses={200: s.TransactionSerializer, **problems(401, 404)}))
class TransactionDetailView(generics.RetrieveAPIView):
    serializer_class = s.TransactionSerializer
    lookup_field = "transaction_id"

    def get_queryset(self) -> Any:
        return selectors.transactions_visible_to(self.request.user, selectors.transaction_list())
