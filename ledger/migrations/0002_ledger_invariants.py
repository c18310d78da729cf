"""The ledger's invariants, kept by PostgreSQL whatever writes to it (django-hordak style).

- A transaction's entries sum to zero per currency (debits = credits), checked at commit by a
  DEFERRABLE INITIALLY DEFERRED constraint trigger, so legs may be inserted one at a time.
- A transaction has entries (same kind of trigger on the transaction row).
- Entries and transactions are immutable: UPDATE and DELETE are refused; corrections are
  reversing transactions.
- Balances follow entries: inserting an entry applies it to its (account, currency) balance row,
  creating the row on first use, bumping `version` by one and recording the resulting balance and
  version on the entry. Any other INSERT, UPDATE or DELETE of a balance row is refused.
- A balance below zero needs the account's may-go-negative flag: a check constraint on the balance
  row (migration 0001), whose copy of the flag the entry trigger refreshes on every change.
"""
from __future__ import annotations

from django.db import migrations

CREATE = """
CREATE FUNCTION ledger_apply_entry() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    acct_kind text;
    acct_may_go_negative boolean;
    normal_change numeric;
BEGIN
    SELECT kind, allow_negative INTO acct_kind, acct_may_go_negative
      FROM ledger_account WHERE id = NEW.account_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger account % does not exist', NEW.account_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    -- Normal sign: credits raise a liability, debits raise an asset.
    normal_change := CASE WHEN (acct_kind = 'liability') = (NEW.direction = 'credit')
                          THEN NEW.amount ELSE -NEW.amount END;
    LOOP
        UPDATE ledger_balance
           SET balance = balance + normal_change,
               version = version + 1,
               allow_negative = acct_may_go_negative,
               updated_at = now()
         WHERE account_id = NEW.account_id AND currency = NEW.currency
        RETURNING balance, version INTO NEW.balance_after, NEW.version;
        EXIT WHEN FOUND;
        -- First use of this currency: a zero row (a concurrent first use may win; then update it).
        INSERT INTO ledger_balance (account_id, currency, balance, version, allow_negative, updated_at)
        VALUES (NEW.account_id, NEW.currency, 0, 0, acct_may_go_negative, now())
        ON CONFLICT (account_id, currency) DO NOTHING;
    END LOOP;
    RETURN NEW;
END $$;

CREATE TRIGGER ledger_entry_apply
BEFORE INSERT ON ledger_entry
FOR EACH ROW EXECUTE FUNCTION ledger_apply_entry();

CREATE FUNCTION ledger_guard_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Depth 1 is a statement on ledger_balance itself; the entry trigger's statements are depth 2.
    IF TG_OP = 'DELETE' OR pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'ledger balances change only by posting entries: % refused', TG_OP
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER ledger_balance_guard
BEFORE INSERT OR UPDATE OR DELETE ON ledger_balance
FOR EACH ROW EXECUTE FUNCTION ledger_guard_balance();

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are immutable: % refused; post a reversing transaction instead',
        TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER ledger_entry_immutable
BEFORE UPDATE OR DELETE ON ledger_entry
FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER ledger_transaction_immutable
BEFORE UPDATE OR DELETE ON ledger_transaction
FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    off record;
BEGIN
    SELECT currency, SUM(CASE WHEN direction = 'debit' THEN amount ELSE -amount END) AS net INTO off
      FROM ledger_entry
     WHERE transaction_id = NEW.transaction_id
     GROUP BY currency
    HAVING SUM(CASE WHEN direction = 'debit' THEN amount ELSE -amount END) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance in %: debits - credits = %',
            NEW.transaction_id, off.currency, off.net
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_balanced';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_entries_balanced
AFTER INSERT ON ledger_entry
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

CREATE FUNCTION ledger_check_has_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_entry WHERE transaction_id = NEW.transaction_id) THEN
        RAISE EXCEPTION 'ledger transaction % has no entries', NEW.transaction_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_has_entries';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_transaction_has_entries
AFTER INSERT ON ledger_transaction
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION ledger_check_has_entries();
"""

DROP = """
DROP TRIGGER IF EXISTS ledger_transaction_has_entries ON ledger_transaction;
DROP FUNCTION IF EXISTS ledger_check_has_entries();
DROP TRIGGER IF EXISTS ledger_entries_balanced ON ledger_entry;
DROP FUNCTION IF EXISTS ledger_check_balanced();
DROP TRIGGER IF EXISTS ledger_transaction_immutable ON ledger_transaction;
DROP TRIGGER IF EXISTS ledger_entry_immutable ON ledger_entry;
DROP FUNCTION IF EXISTS ledger_refuse_change();
DROP TRIGGER IF EXISTS ledger_balance_guard ON ledger_balance;
DROP FUNCTION IF EXISTS ledger_guard_balance();
DROP TRIGGER IF EXISTS ledger_entry_apply ON ledger_entry;
DROP FUNCTION IF EXISTS ledger_apply_entry();
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]
    operations = [migrations.RunSQL(CREATE, DROP)]
