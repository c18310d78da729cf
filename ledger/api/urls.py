"""Ledger API routes, under /api/v1/ledger/."""

from __future__ import annotations

from django.urls import path

from ledger.api import views

urlpatterns = [
    path("balances/<str:account_id>/", views.BalanceView.as_view(), name="ledger-balances"),
    path(
        "accounts/<str:account_id>/entries/",
        views.AccountEntriesView.as_view(),
        name="ledger-account-entries",
    ),
    path("transactions/", views.TransactionListView.as_view(), name="ledger-transactions"),
    path(
        "transactions/<str:transaction_id>/",
        views.TransactionDetailView.as_view(),
        name="ledger-transaction-detail",
    ),
]
