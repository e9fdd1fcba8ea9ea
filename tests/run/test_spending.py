"""pipeline/run/spending.py: --max-credits and --deadline against each new attempt, as a table."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from pipeline.run.deadline import Deadline
from pipeline.run.spending import Spending

BUDGET = [  # (limit, started, cost) -> admitted?, started after
    (None, 0, 15, True, 15),
    (30, 15, 15, True, 30),
    (30, 20, 15, False, 20),
]


@pytest.mark.parametrize("limit, started, cost, admitted, after", BUDGET)
def test_the_budget_is_reserved_at_once(limit, started, cost, admitted, after):
    spending = Spending(limit, started=started)
    refused = spending.admit(cost, 6, {})
    assert (refused is None, spending.started) == (admitted, after)
    if not admitted:
        assert refused == f"budget: --max-credits {limit} reached ({started} credits of attempts started)"
    assert spending.affords(0) is True


def test_a_passed_deadline_refuses_before_the_budget_is_touched():
    passed = Deadline("07:00", datetime.now().astimezone() - timedelta(minutes=1))
    spending = Spending(None, passed)
    assert spending.admit(15, 6, {}) == passed.submit_stop_reason(6, {}) and spending.started == 0
    assert Spending(None, Deadline("later", datetime.now().astimezone() + timedelta(hours=6))).admit(15, 6, {}) is None
