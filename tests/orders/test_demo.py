"""`manage.py send_demo_events --wait` against the running stack: the demo orders' outcomes."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import Stack


def test_the_demo_places_an_order_that_confirms_and_one_that_runs_out_of_stock(live: Stack) -> None:
    out = io.StringIO()
    call_command("send_demo_events", "--wait", "--timeout", "90", stdout=out)
    lines = out.getvalue().splitlines()
    outcomes = [line for line in lines if line.startswith("orders.order-status-updated")]
    assert any(line.endswith("order confirmed") for line in outcomes), out.getvalue()
    assert any(line.endswith("order rejected (out_of_stock)") for line in outcomes), out.getvalue()
    assert not [line for line in lines if line.startswith("no result yet")], out.getvalue()


def test_a_demo_that_waits_in_vain_fails_saying_so(live: Stack) -> None:
    """A script waiting with --wait learns from the exit status that the outcomes never came."""
    out = io.StringIO()
    with pytest.raises(CommandError, match="had no outcome within 0 s"):
        call_command("send_demo_events", "--wait", "--timeout", "0", stdout=out)
    assert "no result yet for" in out.getvalue()
