"""pipeline/run/control.py: which stop sets which flag, what each logs and prints, and when the
deadline's timers fire, as tables (no API: the flags are the whole of it)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from pipeline.run.control import STOP_GRACE_S, Control, internal_error_line
from pipeline.run.deadline import Deadline, parse_deadline
from pipeline.run.events import RunEvents
from pipeline.run.progress import Counters
from pipeline.store.faults import StorageFault


class Log:
    def __init__(self):
        self.lines: list[tuple[str, dict]] = []

    def event(self, kind, **fields):
        self.lines.append((kind, fields))


def control(in_air: int = 0):
    log, calls = Log(), []
    made = Control(RunEvents(log, Counters()), on_submits_stopped=lambda: calls.append("slots"),
                   on_hard_stop=lambda: calls.append("finish"), submits_in_air=lambda: in_air)
    return made, log, calls


STOPS = [  # (what is called) -> submits_stopped, hard_stopped, callbacks, stop_reason
    ("stop_submitting", True, False, ["slots"], "why"),
    ("hard_stop", True, True, ["slots", "finish"], "why"),
]


@pytest.mark.parametrize("method, submits, hard, calls_made, reason", STOPS)
def test_stops(method, submits, hard, calls_made, reason):
    made, log, calls = control()
    getattr(made, method)("why")
    getattr(made, method)("a later reason")
    assert (made.submits_stopped, made.hard_stopped, made.stopped(), made.ended_short) == (submits, hard, hard, True)
    assert made.stop_reason == reason and calls[:len(calls_made)] == calls_made
    assert log.lines == [("stop_submitting", {"reason": "why"})]  # said once


async def test_an_interrupt_with_nothing_in_the_air_stops_at_once(capsys):
    made, log, _ = control(in_air=0)
    made.interrupt("SIGINT")
    assert capsys.readouterr().out == "\nSIGINT: no new submits; saving and stopping (interrupt again to quit at once)\n"
    assert made.hard_stopped and made.stop_reason == "interrupted (SIGINT)"


async def test_an_interrupt_gives_submits_in_the_air_a_grace_period():
    made, _, _ = control(in_air=2)
    made.interrupt("SIGTERM")
    assert made.submits_stopped and not made.hard_stopped
    await asyncio.sleep(STOP_GRACE_S + 0.1)
    assert made.hard_stopped


def test_a_storage_fault_stops_the_run_with_its_own_line():
    made, log, _ = control()
    made.note_internal_error("k", StorageFault("disk full at x"), "checkpoint")
    assert made.hard_stopped and made.internal_error == made.stop_reason == "disk full at x"
    assert log.lines[0] == ("storage_failed", {"where": "checkpoint", "error": "disk full at x"})


def test_a_bug_is_noted_once_with_its_traceback_and_does_not_stop_the_run():
    made, log, _ = control()
    made.note_internal_error("k", KeyError("x"), "task")
    made.note_internal_error("k", ValueError("y"), "track")
    assert not made.hard_stopped and made.internal_error == internal_error_line("task", KeyError("x"))
    assert made.internal_error.startswith("internal error in task: KeyError") and made.ended_short
    assert [kind for kind, _ in log.lines] == ["internal_error", "internal_error"]
    assert log.lines[0][1]["error"] == "KeyError: 'x'" and "KeyError" in log.lines[0][1]["traceback"]


DEADLINES = [  # (deadline, has work) -> timers armed
    (None, True, 0),
    ("6h", False, 0),
    ("6h", True, 2),
]


@pytest.mark.parametrize("deadline, has_work, timers", DEADLINES)
async def test_deadline_timers(deadline, has_work, timers):
    made, _, _ = control()
    armed = made.arm_deadline(parse_deadline(deadline) if deadline else None, lambda: has_work)
    assert len(armed) == timers
    for timer in armed:
        timer.cancel()


async def test_a_passed_deadline_stops_submits_then_the_run():
    made, _, _ = control()
    deadline = Deadline("now", datetime.now().astimezone() - timedelta(seconds=1))
    made.arm_deadline(deadline, lambda: True)
    await asyncio.sleep(0.05)
    assert made.hard_stopped and made.stop_reason == deadline.reached_reason()
