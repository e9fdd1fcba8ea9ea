"""pipeline/run/spending.py: --max-credits and --deadline against each new attempt, as a table:
every attempt that fits is reserved, one that does not is left out (named) and the next may
still fit; a deadline that refuses stops every new attempt."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from pipeline.plan.budget import LeftOut
from pipeline.run.deadline import Deadline
from pipeline.run.spending import Refusal, Spending

# cap, attempts in order (job_key, credits, retry?) -> started after, left out
FILL = [
    (None, [("a", 15, False), ("b", 10**6, False)], 10**6 + 15, []),
    (40, [("a", 10, False), ("b", 15, False), ("c", 25, False), ("d", 10, False)], 35, [LeftOut("c", 25)]),
    (30, [("a", 10, False), ("b", 10, False), ("a", 10, True), ("b", 10, True)], 30, [LeftOut("b", 10, True)]),
    (30, [("a", 15, False), ("b", 15, False)], 30, []),  # exactly the cap: it fits
    (0, [("a", 10, False)], 0, [LeftOut("a", 10)]),
]


@pytest.mark.parametrize("limit, attempts, started, left", FILL)
def test_every_attempt_that_still_fits_is_reserved_and_the_others_are_left_out(limit, attempts, started, left):
    spending = Spending(limit)
    refusals = [spending.admit(key, cost, 6, {}, retry=retry) for key, cost, retry in attempts]
    assert spending.started == started <= (limit if limit is not None else started)
    assert spending.budget.left == left
    assert all(r is None or r.stops is False for r in refusals)  # the budget never stops the run
    assert sum(r is not None for r in refusals) == len(left)


def test_a_refusal_says_the_cap_the_cost_and_what_was_started():
    spending = Spending(40)
    spending.admit("a", 30, 6, {})
    assert spending.admit("b", 15, 10, {}) == Refusal(
        "budget: --max-credits 40: its 15 credits did not fit (30 credits of attempts started)", stops=False)
    assert spending.admit("a", 30, 6, {}, retry=True).reason.startswith("budget: --max-credits 40: its retry's 30")
    assert spending.left_out_line() == ("--max-credits 40: 2 rows left out (45 credits): b, a (its retry); "
                                        "run again with --max-credits 45 --retry-failed to make them")
    assert Spending(40).left_out_line() is None and Spending().left_out_line() is None


def test_a_passed_deadline_stops_before_the_budget_is_touched():
    passed = Deadline("07:00", datetime.now().astimezone() - timedelta(minutes=1))
    spending = Spending(100, passed)
    assert spending.admit("a", 15, 6, {}) == Refusal(passed.submit_stop_reason(6, {}), stops=True)
    assert spending.started == 0 and spending.budget.left == []
    assert Spending(None, Deadline("later", datetime.now().astimezone() + timedelta(hours=6))).admit("a", 15, 6, {}) is None
