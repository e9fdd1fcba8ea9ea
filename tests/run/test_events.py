"""pipeline/run/events.py: each thing the runner reports becomes its run-log line (written by a
real RunLog) and moves the counters it should, and nothing else."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from pipeline.run.events import RunEvents
from pipeline.run.progress import Counters
from pipeline.run.runlog import RunLog
from pipeline.run.work import Recorded, Work

WORK = Work("scene-1", {"duration": 6, "credits_estimated": 10}, Recorded(attempts=2, job_id="job-1", credits_charged=15,
                                                 idempotency_key="vb-scene-1-a2-0123"))

REPORTS = [  # (call, args) -> (event, fields it has, counters moved)
    ("submit", (WORK, True), "submit", {"attempt": 2, "idempotency_key": "vb-scene-1-a2-0123", "resume": True}, {}),
    ("submitted", (WORK, "job-1", None), "submitted", {"job_id": "job-1", "attempt": 2}, {"submitted": 1}),
    ("reused_job", (WORK, "job-0", "scene-1@abc"), "reused_job", {"paid_by": "scene-1@abc"}, {}),
    ("completed", (WORK, True), "status", {"status": "COMPLETED", "credits": 15}, {"finished": 1}),
    ("completed", (WORK, False), "status", {"status": "COMPLETED"}, {}),  # a fresh URL after a CDN 404
    ("status_failed", (WORK, "moderated"), "status", {"status": "FAILED", "error": "moderated"}, {}),
    ("retry_generate", (WORK, "FAILED"), "retry", {"what": "generate", "next_attempt": 3}, {}),
    ("downloaded", (WORK, "v/scene-1.mp4", 10, "ab"), "download", {"path": "v/scene-1.mp4", "bytes": 10},
     {"downloaded": 1}),
    ("failed", (WORK, "rejected"), "error", {"reason": "rejected"}, {"finished": 1, "failed": 1}),
    ("left", (WORK, "timed out"), "error", {"job_id": "job-1", "unfinished": True}, {}),
    ("uncertain", (WORK, "reread", "timeout"), "uncertain", {"step": "reread", "count": 0}, {}),
    ("old_intent", (WORK, "resubmit", "not listed"), "old_intent", {"step": "resubmit"}, {}),
    ("stop_submitting", ("budget",), "stop_submitting", {"reason": "budget"}, {}),
    ("left_out", (WORK, False), "left_out", {"credits": 10, "retry": False}, {"left_out": 1}),
    ("left_out", (WORK, True), "left_out", {"credits": 10, "retry": True}, {}),  # its row counts as failed
    ("new_version", ("scene-1", "scene-1@abc"), "new_version", {"archived_as": "scene-1@abc"}, {}),
]


@pytest.mark.parametrize("call, args, kind, fields, moved", REPORTS, ids=[f"{r[0]}-{r[2]}" for r in REPORTS])
def test_each_report_is_one_line_and_its_counters(tmp_path, call, args, kind, fields, moved):
    log = RunLog(tmp_path / "run.jsonl")
    counters = Counters()
    getattr(RunEvents(log, counters), call)(*args)
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["event"] == kind
    assert {name: lines[0][name] for name in fields} == fields
    assert {k: v for k, v in asdict(counters).items() if v and k != "first_download_at"} == moved
    assert (counters.first_download_at is not None) == (call == "downloaded")  # the downloads' pace starts


def test_charges_are_counted_net_of_what_was_recorded_before():
    counters = Counters()
    events = RunEvents(None, counters)  # counting writes no line
    events.charged(0, 15)
    events.charged(15, 10)  # a refund
    events.charged(10, None)
    assert counters.credits_charged == 0
    events.planned(7, 105)
    assert (counters.planned, counters.credits_planned) == (7, 105)
