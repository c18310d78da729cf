"""Ledger use cases: post a transaction once, refuse one, reverse one, freeze accounts, reconcile.

Posting (one transaction or a batch of them, `transactions_post`) is one database transaction of a
few statements: claim the events, look for the transactionIds, lock the touched balance rows in one
stable order (`SELECT ... FOR UPDATE ORDER BY account, currency`), check accounts and funds, insert
the transactions and their entries (the entry trigger moves each balance and bumps its version),
and record the outgoing events. Concurrent postings to the same accounts queue on those row locks
instead of losing updates; a deadlock or serialization failure (possible with locks taken outside
this code) runs the transaction again with jitter (core.races).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection
from django.db import transaction as db_transaction
from django.db.models import Q
from django.utils import timezone

from audit.events import audit_record
from audit.services import ComplianceRuleName, Severity, compliance_alert_raise
from bridge import inbox, outbox, topics
from bridge.codec import Envelope
from core import bulk, metrics
from core.actors import user_actor
from core.ids import ConflictingDuplicate
from core.logs import safe_error
from core.races import run_again_after_race, sqlstate
from ledger import postings
from ledger.events import (
    TransactionRequested,
    balance_updated_event,
    money_string,
    transaction_failed_event,
)
from ledger.kinds import AccountKind
from ledger.models import Account, Balance, ClientAccount, Entry, Reconciliation, Transaction
from ledger.postings import InsufficientFunds, InvalidAccount, LedgerRefused, Leg, Posting

logger = logging.getLogger(__name__)

INBOX_CONSUMER = "ledger"
WORKER_ACTOR = "system:ledger-worker"
RECONCILIATION_ACTOR = "system:ledger-reconciliation"
IMBALANCE_RULE = ComplianceRuleName.LEDGER_IMBALANCE.value
IMBALANCE_SEVERITY = Severity.CRITICAL.value
BALANCE_CHECK_CONSTRAINT = "ledger_balance_non_negative_unless_allowed"


@dataclass(frozen=True)
class PostResult:
    """What posting did: `created` False means the transactionId or the event was seen before."""

    transaction: Transaction | None
    created: bool


def _audit(
    *,
    action: str,
    subject_type: str,
    subject_id: str,
    actor: str,
    details: dict[str, Any],
    correlation_id: str | None,
) -> None:
    outbox.record_event(
        topic=topics.AUDIT_LEDGER_EVENTS,
        subject=subject_id,
        correlation_id=correlation_id,
        data=audit_record(
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            actor=actor,
            details=details,
        ),
    )


def _lock_balances(*postings: Posting) -> dict[tuple[str, str], Balance]:
    """The postings' existing balance rows, locked in (account, currency) order."""
    wanted = Q()
    for leg in (leg for posting in postings for leg in posting.legs):
        wanted |= Q(account_id=leg.account_id, currency=leg.currency)
    rows = (
        Balance.objects.select_for_update(of=("self",))
        .select_related("account")
        .filter(wanted)
        .order_by("account_id", "currency")
    )
    return {(row.account_id, row.currency): row for row in rows}


def _accounts(account_ids: Iterable[str], balances: dict[tuple[str, str], Balance]) -> dict[str, Account]:
    """Every account named; an account is created on first use with its prefix's kind."""
    accounts = {row.account_id: row.account for row in balances.values()}
    missing = sorted({account_id for account_id in account_ids if account_id not in accounts})
    if missing:
        accounts.update(Account.objects.in_bulk(missing))
        new = [account_id for account_id in missing if account_id not in accounts]
        if new:
            Account.objects.bulk_create(
                [_new_account(account_id) for account_id in new], ignore_conflicts=True
            )
            accounts.update(Account.objects.in_bulk(new))
    return accounts


def _new_account(account_id: str) -> Account:
    kind = postings.account_kind(account_id)
    return Account(id=account_id, kind=kind, allow_negative=kind == AccountKind.ASSET)


def _check_accounts(posting: Posting, accounts: dict[str, Account]) -> None:
    for account_id in posting.account_ids:
        if accounts[account_id].frozen:
            raise InvalidAccount(f"account {account_id} is frozen")


def _check_funds(
    posting: Posting, accounts: dict[str, Account], current: Mapping[tuple[str, str], Decimal]
) -> None:
    """Refuse a posting that would take an account below zero; `current` holds the balances
    before it (a missing one is zero)."""
    for leg in posting.legs:
        account = accounts[leg.account_id]
        if account.allow_negative:
            continue
        before = current.get((leg.account_id, leg.currency), Decimal(0))
        if before + leg.change_for(account.kind) < 0:
            raise InsufficientFunds(
                f"{leg.account_id} holds {money_string(before, leg.currency)} {leg.currency}; "
                f"the posting takes {money_string(leg.amount, leg.currency)}"
            )


def _transaction_row(posting: Posting, *, actor: str, correlation_id: str | None) -> Transaction:
    return Transaction(
        transaction_id=posting.transaction_id,
        kind=posting.kind,
        description=posting.description,
        metadata=posting.metadata,
        reverses_id=posting.reverses,
        actor=actor,
        correlation_id=correlation_id or "",
    )


def _entry_rows(posting: Posting) -> list[Entry]:
    return [
        Entry(
            transaction_id=posting.transaction_id,
            account_id=leg.account_id,
            currency=leg.currency,
            direction=leg.direction,
            amount=leg.amount,
        )
        for leg in posting.legs
    ]


def _announce_posted(
    posting: Posting, entries: list[Entry], *, actor: str, correlation_id: str | None
) -> None:
    """A posted transaction's balance-updated events (one per entry) and its audit record."""
    for entry in entries:  # one per (account, currency): checked() refuses repeats
        outbox.record_event(
            topic=topics.LEDGER_BALANCE_UPDATED,
            subject=entry.account_id,
            correlation_id=correlation_id,
            data=balance_updated_event(
                account_id=entry.account_id,
                currency=entry.currency,
                balance=entry.balance_after,
                transaction_id=posting.transaction_id,
                version=entry.version,
            ),
        )
    _audit(
        action="transaction.posted",
        subject_type="transaction",
        subject_id=posting.transaction_id,
        actor=actor,
        correlation_id=correlation_id,
        details={
            "kind": posting.kind,
            "description": posting.description,
            "entries": [
                {
                    "account": leg.account_id,
                    "direction": leg.direction,
                    "amount": money_string(leg.amount, leg.currency),
                    "currency": leg.currency,
                }
                for leg in posting.legs
            ],
            "metadata": posting.metadata,
            "reverses": posting.reverses,
        },
    )


def _stored_legs(transaction_ids: Iterable[str]) -> dict[str, list[Leg]]:
    legs: dict[str, list[Leg]] = {}
    for entry in Entry.objects.filter(transaction_id__in=list(transaction_ids)):
        legs.setdefault(entry.transaction_id, []).append(
            Leg(entry.account_id, entry.currency, entry.direction, entry.amount)
        )
    return legs


def _refuse_conflict(existing: Transaction, posting: Posting, legs: list[Leg] | None = None) -> None:
    """ConflictingDuplicate when `posting` is not what `existing` posted: an id seen before with
    other money in it is never taken for the first (the platform's `refund:<id>` behind a
    client's 0.01 transfer of that name), and never posted a second time either."""
    if legs is None:
        legs = _stored_legs([existing.pk]).get(existing.pk, [])
    conflict = postings.conflict_with(posting, kind=existing.kind, legs=legs)
    if conflict is not None:
        raise conflict


def transaction_check_duplicate(*, posting: Posting) -> None:
    """ConflictingDuplicate when a transaction is stored under `posting`'s id with other content."""
    existing = Transaction.objects.filter(pk=posting.transaction_id).first()
    if existing is not None:
        _refuse_conflict(existing, posting)


@dataclass(frozen=True)
class PostRequest:
    """One posting asked for: how to build it (it may be refused), who asks, and the event asking
    (claimed once; None for a direct call, which the caller makes once)."""

    transaction_id: str
    build: Callable[[], Posting]
    actor: str
    correlation_id: str | None
    event: Envelope | None = None


def transactions_post(requests: list[PostRequest], *, announce_refusals: bool = True) -> list[str]:
    """Post `requests` in one database transaction of their own, in order: what became of each,
    "posted", "duplicate" (its event or its transactionId seen before) or the reason it was refused.

    The one way the ledger posts, for a batch of events as for a single posting: the events are
    claimed in one insert, the balance rows of all postings locked in one ordered sweep (`SELECT ...
    FOR UPDATE ORDER BY account, currency`), each posting checked against the balances the ones
    before it left, and the transactions and their entries inserted with one statement each (the
    entry trigger moves each balance, row by row, in order). A refusal is announced
    (`transaction_refuse`), or with `announce_refusals` False raised (LedgerRefused) and nothing is
    written. A transactionId stored with other content raises ConflictingDuplicate.

    A lost race (deadlock, serialization failure, the same transactionId posted concurrently) runs
    the transaction again (core.races), StillContended when it keeps losing. The balance table's
    overdraft guard, which the checks should have foreseen, refuses a single posting as
    InsufficientFunds; it fails a batch of several, whose postings the caller then runs alone.
    """

    def post() -> list[str]:
        # Outbox rows are the last writes of a posting or refusal, so none is collected inside a
        # savepoint that then rolls back (the condition core.bulk sets).
        with db_transaction.atomic(), bulk.deferred_writes():
            return _post_all(requests, announce_refusals=announce_refusals)

    try:
        return run_again_after_race(post, what=f"ledger posting of {len(requests)}")
    except IntegrityError as exc:
        _, constraint = sqlstate(exc)
        if constraint != BALANCE_CHECK_CONSTRAINT or len(requests) != 1:
            raise
        refused = InsufficientFunds(f"the database refused the overdraft: {safe_error(exc)}")
        if not announce_refusals:
            raise refused from exc
        [request] = requests
        transaction_refuse(
            transaction_id=request.transaction_id,
            refused=refused,
            actor=request.actor,
            correlation_id=request.correlation_id,
            event=request.event,
        )
        return [refused.reason]


def transaction_post(*, posting: Posting, actor: str, correlation_id: str | None = None) -> PostResult:
    """Post `posting` once per transactionId (`transactions_post` for one); raises LedgerRefused."""
    [outcome] = transactions_post(
        [PostRequest(posting.transaction_id, lambda: posting, actor, correlation_id)], announce_refusals=False
    )
    stored = Transaction.objects.filter(pk=posting.transaction_id).first()
    return PostResult(stored, created=outcome == "posted")


def _post_all(requests: list[PostRequest], *, announce_refusals: bool) -> list[str]:
    """`transactions_post` inside its transaction."""
    claimed = inbox.claim_many(consumer=INBOX_CONSUMER, events=[r.event for r in requests if r.event])
    stored = Transaction.objects.in_bulk([r.transaction_id for r in requests])
    stored_legs = _stored_legs(stored)
    taken = set(stored)
    # The postings of this batch by id: a second request of the batch for the same id is compared
    # with the first one, as it would be with the stored transaction when run alone.
    batch_postings: dict[str, Posting] = {}
    outcomes: dict[int, str] = {}
    refused: list[tuple[int, LedgerRefused]] = []
    wanted: list[tuple[int, Posting]] = []
    for i, request in enumerate(requests):
        first_delivery = request.event is None or request.event.id in claimed
        if request.event is not None:
            claimed.discard(request.event.id)  # the same event twice in a batch: the second is a redelivery
        try:
            posting = postings.checked(request.build())
        except LedgerRefused as exc:
            if first_delivery and request.transaction_id in taken:
                raise ConflictingDuplicate(
                    kind="transaction",
                    object_id=request.transaction_id,
                    differences={"refused": f"{exc.reason}: {exc}"},
                ) from exc
            if first_delivery:
                refused.append((i, exc))
            outcomes[i] = exc.reason
            continue
        if first_delivery and posting.transaction_id in stored:
            _refuse_conflict(
                stored[posting.transaction_id], posting, stored_legs.get(posting.transaction_id, [])
            )
        elif first_delivery and posting.transaction_id in batch_postings:
            earlier = batch_postings[posting.transaction_id]
            conflict = postings.conflict_with(posting, kind=earlier.kind, legs=earlier.legs)
            if conflict is not None:
                raise conflict
        if not first_delivery or posting.transaction_id in taken:
            outcomes[i] = "duplicate"
            continue
        taken.add(posting.transaction_id)
        batch_postings[posting.transaction_id] = posting
        wanted.append((i, posting))

    balances = _lock_balances(*(posting for _, posting in wanted)) if wanted else {}
    # Accounts used for the first time are checked as new ones and created only for the postings
    # accepted: a refused posting leaves no account behind, as it does alone (its savepoint).
    named = {a for _, posting in wanted for a in posting.account_ids}
    known = {row.account_id: row.account for row in balances.values()}
    known.update(Account.objects.in_bulk([a for a in named if a not in known]))
    accounts = {a: known.get(a) or _new_account(a) for a in named}
    current = {key: row.balance for key, row in balances.items()}
    accepted: list[tuple[int, Posting]] = []
    for i, posting in wanted:
        try:
            _check_accounts(posting, accounts)
            _check_funds(posting, accounts, current)
        except LedgerRefused as exc:
            refused.append((i, exc))
            outcomes[i] = exc.reason
            continue
        for leg in posting.legs:
            key = (leg.account_id, leg.currency)
            current[key] = current.get(key, Decimal(0)) + leg.change_for(accounts[leg.account_id].kind)
        accepted.append((i, posting))
        outcomes[i] = "posted"

    if accepted:
        new = sorted({a for _, posting in accepted for a in posting.account_ids if a not in known})
        Account.objects.bulk_create([accounts[a] for a in new], ignore_conflicts=True)
        Transaction.objects.bulk_create(
            [
                _transaction_row(posting, actor=requests[i].actor, correlation_id=requests[i].correlation_id)
                for i, posting in accepted
            ]
        )
        entries = iter(
            Entry.objects.bulk_create([e for _, posting in accepted for e in _entry_rows(posting)])
        )
        for i, posting in accepted:
            own = [next(entries) for _ in posting.legs]
            _announce_posted(posting, own, actor=requests[i].actor, correlation_id=requests[i].correlation_id)
        count = sum(len(posting.legs) for _, posting in accepted)
        db_transaction.on_commit(lambda: metrics.LEDGER_ENTRIES.inc(count))
    for i, refusal in sorted(refused, key=lambda item: item[0]):
        if not announce_refusals:
            raise refusal
        request = requests[i]
        transaction_refuse(
            transaction_id=request.transaction_id,
            refused=refusal,
            actor=request.actor,
            correlation_id=request.correlation_id,
        )
    return [outcomes[i] for i in range(len(requests))]


@db_transaction.atomic
def transaction_refuse(
    *,
    transaction_id: str,
    refused: LedgerRefused,
    actor: str,
    correlation_id: str | None = None,
    event: Envelope | None = None,
) -> bool:
    """Announce a refused posting (ledger.transaction-failed + audit) once; False if it was not.

    Not announced: a redelivered event. A transactionId that is already posted raises
    ConflictingDuplicate: the posted request was valid, so this one asks for something else.
    """
    if event is not None and not inbox.claim(consumer=INBOX_CONSUMER, event=event):
        return False
    if Transaction.objects.filter(pk=transaction_id).exists():
        # The posted one was valid and this one is refused: the same id with other content.
        raise ConflictingDuplicate(
            kind="transaction",
            object_id=transaction_id,
            differences={"refused": f"{refused.reason}: {refused}"},
        )
    outbox.record_event(
        topic=topics.LEDGER_TRANSACTION_FAILED,
        subject=transaction_id,
        correlation_id=correlation_id,
        data=transaction_failed_event(
            transaction_id=transaction_id, reason=refused.reason, message=str(refused)
        ),
    )
    _audit(
        action="transaction.refused",
        subject_type="transaction",
        subject_id=transaction_id,
        actor=actor,
        correlation_id=correlation_id,
        details={"reason": refused.reason, "message": str(refused)},
    )
    return True


def transaction_reverse(*, transaction_id: str, actor: str, reason: str = "") -> PostResult:
    """Post the reversal of a posted transaction (`reversal:<id>`, so at most once); LedgerRefused."""
    original = Transaction.objects.prefetch_related("entries").get(pk=transaction_id)
    legs = [Leg(e.account_id, e.currency, e.direction, e.amount) for e in original.entries.all()]
    posting = postings.reversal_of(transaction_id=original.pk, legs=legs, reason=reason)
    return transaction_post(posting=posting, actor=actor, correlation_id=original.correlation_id or None)


@db_transaction.atomic
def transaction_request(
    *, request: TransactionRequested, actor: str | None = None, correlation_id: str | None = None
) -> None:
    """Publish a ledger.transaction-requested (through the outbox) for the ledger worker to post.

    `actor` rides along as the event's `actor` attribute: the worker records the requester, not
    itself, in the audit log.
    """
    outbox.record_event(
        topic=topics.LEDGER_TRANSACTION_REQUESTED,
        subject=request.transactionId,
        correlation_id=correlation_id,
        actor=actor,
        data=request,
    )


@db_transaction.atomic
def client_account_assign(*, account_id: str, client: Any, actor: str) -> ClientAccount:
    """Assign a ledger account to an API client (it may then read it and transfer from it)."""
    assignment, _ = ClientAccount.objects.update_or_create(
        account_id=account_id, defaults={"client": client, "assigned_by": actor}
    )
    _audit(
        action="account.assigned",
        subject_type="account",
        subject_id=account_id,
        actor=actor,
        correlation_id=None,
        details={"client": user_actor(client)},
    )
    return assignment


@db_transaction.atomic
def client_account_unassign(*, account_id: str, actor: str) -> None:
    """Take a ledger account away from the client it was assigned to."""
    assignment = ClientAccount.objects.filter(account_id=account_id).select_related("client").first()
    if assignment is None:
        return
    assignment.delete()
    _audit(
        action="account.unassigned",
        subject_type="account",
        subject_id=account_id,
        actor=actor,
        correlation_id=None,
        details={"client": user_actor(assignment.client)},
    )


def _set_frozen(*, account_id: str, frozen: bool, actor: str, reason: str) -> Account:
    with db_transaction.atomic():
        Account.objects.bulk_create([_new_account(account_id)], ignore_conflicts=True)
        account = Account.objects.select_for_update().get(pk=account_id)
        if account.frozen == frozen:
            return account
        account.frozen = frozen
        account.save(update_fields=["frozen", "updated_at"])
        _audit(
            action="account.frozen" if frozen else "account.unfrozen",
            subject_type="account",
            subject_id=account_id,
            actor=actor,
            correlation_id=None,
            details={"reason": reason or None},
        )
        return account


def account_freeze(*, account_id: str, actor: str, reason: str = "") -> Account:
    """Freeze an account (creating it if unused): every posting touching it is refused."""
    return _set_frozen(account_id=account_id, frozen=True, actor=actor, reason=reason)


def account_unfreeze(*, account_id: str, actor: str, reason: str = "") -> Account:
    return _set_frozen(account_id=account_id, frozen=False, actor=actor, reason=reason)


# --- reconciliation ---------------------------------------------------------------------------

_MISMATCHES_SQL = """
WITH computed AS (
    SELECT e.account_id, e.currency, COUNT(*) AS version,
           SUM(CASE WHEN (a.kind = 'liability') = (e.direction = 'credit') THEN e.amount ELSE -e.amount END)
               AS balance
    FROM ledger_entry e JOIN ledger_account a ON a.id = e.account_id
    GROUP BY e.account_id, e.currency
)
SELECT COALESCE(b.account_id, c.account_id), COALESCE(b.currency, c.currency),
       COALESCE(b.balance, 0), COALESCE(b.version, 0), COALESCE(c.balance, 0), COALESCE(c.version, 0)
FROM ledger_balance b
FULL OUTER JOIN computed c ON c.account_id = b.account_id AND c.currency = b.currency
WHERE COALESCE(b.balance, 0) <> COALESCE(c.balance, 0) OR COALESCE(b.version, 0) <> COALESCE(c.version, 0)
ORDER BY 1, 2
"""
# Per currency: what is owed (liabilities) must equal what is held (assets), and entries net to 0.
_CURRENCY_TOTALS_SQL = """
SELECT b.currency, COUNT(*),
       COALESCE(SUM(b.balance) FILTER (WHERE a.kind = 'liability'), 0),
       COALESCE(SUM(b.balance) FILTER (WHERE a.kind = 'asset'), 0)
FROM ledger_balance b JOIN ledger_account a ON a.id = b.account_id
GROUP BY b.currency ORDER BY b.currency
"""
_ENTRY_TOTALS_SQL = """
SELECT currency, SUM(CASE WHEN direction = 'debit' THEN amount ELSE -amount END)
FROM ledger_entry GROUP BY currency ORDER BY currency
"""


@dataclass(frozen=True)
class _Findings:
    balances_checked: int
    mismatches: list[dict[str, Any]]
    imbalances: list[dict[str, Any]]
    liabilities: dict[str, Decimal]


def _find_discrepancies() -> _Findings:
    with db_transaction.atomic(), connection.cursor() as cursor:
        # One snapshot for all three reads: postings committing meanwhile cannot look like drift.
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cursor.execute(_MISMATCHES_SQL)
        mismatches = [
            {
                "accountId": account_id,
                "currency": currency,
                "balance": money_string(balance, currency),
                "expected": money_string(expected, currency),
                "version": int(version),
                "expectedVersion": int(expected_version),
            }
            for account_id, currency, balance, version, expected, expected_version in cursor.fetchall()
        ]
        cursor.execute(_CURRENCY_TOTALS_SQL)
        totals = cursor.fetchall()
        cursor.execute(_ENTRY_TOTALS_SQL)
        entry_totals = cursor.fetchall()
    imbalances = [
        {"currency": currency, "source": "balances", "imbalance": money_string(owed - held, currency)}
        for currency, _, owed, held in totals
        if owed != held
    ] + [
        {"currency": currency, "source": "entries", "imbalance": money_string(net, currency)}
        for currency, net in entry_totals
        if net != 0
    ]
    return _Findings(
        balances_checked=sum(count for _, count, _, _ in totals),
        mismatches=mismatches,
        imbalances=imbalances,
        liabilities={currency: owed for currency, _, owed, _ in totals},
    )


def balances_reconcile() -> Reconciliation:
    """Recompute every balance from the entries and check each currency sums to zero.

    A discrepancy raises a `ledger_imbalance` compliance alert (through audit's
    `compliance_alert_raise`, plus the ledger's own audit record), once per distinct set of
    discrepancies: a run that finds the same ones again is recorded without a new alert.
    """
    started_at = timezone.now()
    findings = _find_discrepancies()
    for currency, owed in findings.liabilities.items():
        metrics.LEDGER_BALANCE.labels(currency=currency).set(float(owed))
    with db_transaction.atomic():
        previous = Reconciliation.objects.select_for_update().first()
        run = Reconciliation(
            started_at=started_at,
            finished_at=timezone.now(),
            balances_checked=findings.balances_checked,
            mismatches=findings.mismatches,
            imbalances=findings.imbalances,
        )
        already_alerted = (
            previous is not None
            and previous.mismatches == findings.mismatches
            and previous.imbalances == findings.imbalances
        )
        run.save()
        if not run.ok and not already_alerted:
            _raise_imbalance_alert(run)
    if not run.ok:
        logger.error("ledger reconciliation found discrepancies: %s %s", run.mismatches, run.imbalances)
    return run


def _raise_imbalance_alert(run: Reconciliation) -> None:
    """Raise `ledger_imbalance` through audit, the alerts' owner: an alert operators can
    acknowledge and resolve, published by audit (with its status) to audit.compliance-alerts."""
    details = {
        "reconciliationId": run.pk,
        "balancesChecked": run.balances_checked,
        "mismatches": run.mismatches,
        "imbalances": run.imbalances,
    }
    alert = compliance_alert_raise(
        rule=IMBALANCE_RULE,
        severity=IMBALANCE_SEVERITY,
        subject="ledger",
        details=details,
        dedupe_key=f"{IMBALANCE_RULE}:reconciliation:{run.pk}",
    )
    assert alert is not None  # one key per reconciliation run: never seen before
    run.alert_id = str(alert.alert_id)
    run.save(update_fields=["alert_id"])
    _audit(
        action="ledger.imbalance_detected",
        subject_type="reconciliation",
        subject_id=str(run.pk),
        actor=RECONCILIATION_ACTOR,
        correlation_id=run.alert_id,
        details={"alertId": run.alert_id, **details},
    )
