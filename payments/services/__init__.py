"""Payment use cases: intake, charge, refunds, settlement and the compensating saga.

A request is accepted once per paymentId; the charge uses the paymentId as the gateway's
idempotency key, so a retry after a timeout (or a redelivered task after a crash) can never
capture twice. Every status change is recorded, audited and announced through the outbox in
the same transaction as the change. Ledger postings and customer notifications that follow from
a payment are events too (`ledger.transaction-requested`, `notifications.notification-requested`),
so every domain stays the owner of its own tables.

One module per use case: `intake` (intake and charge), `refunds`, `settlement`, `saga` (the
compensating saga) and `reconciliation` (payments against the ledger); `transitions` holds the
building blocks they share (guarded, recorded transitions, the audit record, the outcome events,
the ledger and notification requests) and imports none of them. Callers import from
`payments.services`, which exports the public API. A test that replaces a name patches it where
it is looked up: `payments.services.intake.get_gateway`, not `payments.services.get_gateway`.
"""

from __future__ import annotations

from payments.services.intake import (
    BatchOutcome,
    PaymentIdTaken,
    payment_abandon,
    payment_charge,
    payment_give_up,
    payment_request_create,
    payment_retry,
    payments_process_batch,
)
from payments.services.reconciliation import latest_reconciliation, payments_reconcile
from payments.services.refunds import (
    RefundInvalid,
    RefundRefused,
    refund_fail,
    refund_process,
    refund_request,
)
from payments.services.saga import payment_compensate
from payments.services.settlement import settlement_run
from payments.services.transitions import (
    INBOX_CONSUMER,
    REFUNDABLE,
    WORKER_ACTOR,
    IllegalTransition,
    PaymentRefused,
)

__all__ = [
    "BatchOutcome",
    "INBOX_CONSUMER",
    "IllegalTransition",
    "PaymentIdTaken",
    "PaymentRefused",
    "REFUNDABLE",
    "RefundInvalid",
    "RefundRefused",
    "WORKER_ACTOR",
    "latest_reconciliation",
    "payment_abandon",
    "payment_charge",
    "payment_compensate",
    "payment_give_up",
    "payment_request_create",
    "payment_retry",
    "payments_process_batch",
    "payments_reconcile",
    "refund_fail",
    "refund_process",
    "refund_request",
    "settlement_run",
]
