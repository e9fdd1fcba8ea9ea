"""pipeline/plan/budget.py: first fit under --max-credits, in order, and the line that names what
it left out (before a run: the cap that takes them in; after it: the cap for the next run)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.plan.actions import RESUME, SKIP, SUBMIT, TRACK, Plan
from pipeline.plan.budget import NAMED, Budget, LeftOut, fit

# The case: first-stop made 25 of 40; first fit makes 35.
ROWS = [("a-six", 10), ("b-ten", 15), ("c-fifteen", 25), ("d-six", 10), ("e-ten", 15), ("f-fifteen", 25)]

FITS = [  # cap -> started, left out
    (40, 35, ["c-fifteen", "e-ten", "f-fifteen"]),
    (100, 100, []),
    (9, 0, [key for key, _ in ROWS]),
    (60, 60, ["e-ten", "f-fifteen"]),  # 10 + 15 + 25 + 10: full, nothing after fits
    (None, 100, []),
]


@pytest.mark.parametrize("cap, started, left", FITS)
def test_first_fit_in_order(cap, started, left):
    budget = fit(cap, ROWS)
    assert budget.started == started and [row.job_key for row in budget.left] == left
    assert budget.limit is None or budget.started <= budget.limit


def test_the_line_names_the_rows_and_the_next_step():
    budget = fit(40, ROWS)
    assert budget.line(after_run=False) == ("--max-credits 40: 3 rows left out (65 credits): c-fifteen, e-ten, "
                                            "f-fifteen; raise --max-credits to 100 to include them")
    assert budget.line(after_run=True) == ("--max-credits 40: 3 rows left out (65 credits): c-fifteen, e-ten, "
                                           "f-fifteen; run again with --max-credits 65 to make them")
    assert fit(100, ROWS).line(after_run=True) is None
    one = Budget(5, left=[LeftOut("x", 10, retry=True)])
    assert one.line(after_run=True) == ("--max-credits 5: 1 row left out (10 credits): x (its retry); "
                                        "run again with --max-credits 10 --retry-failed to make them")


def test_a_long_list_is_cut_and_counted():
    many = fit(0, [(f"row-{i}", 10) for i in range(NAMED + 3)])
    line = many.line(after_run=False)
    assert f"{NAMED + 3} rows left out ({10 * (NAMED + 3)} credits)" in line
    assert f"row-{NAMED - 1} and 3 more;" in line and f"row-{NAMED}," not in line


def test_a_plan_fills_its_budget_in_the_order_a_run_submits():
    """Plan.budget: the spending rows only (a row to track or already done costs nothing new), resumed
    intents first (the run settles them first), then manifest order, not longest first."""
    rows = pl.DataFrame({
        "job_key": ["new-15", "done", "new-6", "tracked", "resumed-10", "new-10"],
        "action": [SUBMIT, SKIP, SUBMIT, TRACK, RESUME, SUBMIT],
        "duration": [15, 6, 6, 10, 10, 10],
        "credits_estimated": [25, 10, 10, 15, 15, 15],
    })
    plan = Plan(manifest=Path("m.yaml"), rows=rows)
    assert plan.budget is None and plan.credits_to_spend == 65
    assert plan.submit_order()["job_key"].to_list() == ["resumed-10", "new-15", "new-10", "new-6"]  # longest first
    plan.max_credits = 30
    assert plan.submit_order()["job_key"].to_list() == ["resumed-10", "new-15", "new-6", "new-10"]
    budget = plan.budget
    assert (budget.started, [row.job_key for row in budget.left]) == (25, ["new-15", "new-10"])
    assert plan.credits_to_spend == 25
