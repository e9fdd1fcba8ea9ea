"""pipeline/run/runlog.py: one JSON object per event, buffered until flushed, secrets redacted,
nothing written after close."""

from __future__ import annotations

import json

from pipeline.redact import register_secret
from pipeline.run.runlog import RunLog


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_events_are_json_lines_flushed_on_demand_and_on_close(tmp_path):
    path = tmp_path / "logs" / "r1.jsonl"
    log = RunLog(path)  # makes its folder
    log.event("submit", job_key="a", attempt=1)
    assert path.read_text() == ""  # buffered: one write for many events
    log.flush()
    assert [(e["event"], e["job_key"], e["attempt"]) for e in lines(path)] == [("submit", "a", 1)]
    log.event("download", job_key="a", path=tmp_path)  # not JSON by itself: written as text
    log.close()
    log.event("late", job_key="a")  # after close: dropped, never raises
    assert [e["event"] for e in lines(path)] == ["submit", "download"]
    assert lines(path)[1]["path"] == str(tmp_path) and lines(path)[0]["ts"].endswith("+00:00")


def test_a_registered_secret_never_reaches_the_log(tmp_path):
    register_secret("afk_secret_value_123456")
    log = RunLog(tmp_path / "r.jsonl")
    log.event("retry", reason="401 for key afk_secret_value_123456")
    log.close()
    assert "afk_secret_value_123456" not in (tmp_path / "r.jsonl").read_text()
