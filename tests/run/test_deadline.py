"""`--deadline`: its three spellings, the judgement before a submit, and a run it cuts short that the
next run finishes with exactly one job per row (the real command against the emulator)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from pipeline.run.deadline import DeadlineError, parse_deadline
from tests.harness import Receiver, cli_env, jobs_per_key, ledger, run_args, run_cli, write_manifest

NOW = datetime(2026, 11, 24, 22, 30).astimezone()  # local time, like a cron job's clock


@pytest.mark.parametrize("given, expected", [
    ("07:00", (NOW + timedelta(days=1)).replace(hour=7, minute=0)),  # already past today: tomorrow
    ("23:15:30", NOW.replace(hour=23, minute=15, second=30)),
    ("6h", NOW + timedelta(hours=6)),
    ("90m", NOW + timedelta(minutes=90)),
    ("1h30m", NOW + timedelta(minutes=90)),
    ("45s", NOW + timedelta(seconds=45)),
    ("2026-11-25T06:45", datetime(2026, 11, 25, 6, 45).astimezone()),
    ("2026-11-25T05:00:00Z", datetime.fromisoformat("2026-11-25T05:00:00+00:00")),
])
def test_deadline_spellings(given, expected):
    deadline = parse_deadline(given, now=NOW)
    assert deadline.at == expected and deadline.given == given
    assert deadline.at.tzinfo is not None


@pytest.mark.parametrize("given, says", [
    ("25:00", "not a clock time"), ("soon", "not understood"), ("0m", "longer than zero"),
    ("2026-11-24T21:00", "already passed"), ("-5h", "not understood"),
    # Past what a datetime holds: bad input said in one line, never an OverflowError.
    ("99999999h", "out of range"), ("99999999999999999999999s", "out of range"),
    ("+10000-01-01T00:00", "not understood"),
])
def test_bad_deadlines_say_what_to_write(given, says):
    with pytest.raises(DeadlineError, match=says):
        parse_deadline(given, now=NOW)


def test_a_job_is_started_only_if_the_slowest_seen_of_its_length_fits():
    deadline = parse_deadline("10m", now=NOW)
    at = lambda minutes_left: deadline.at - timedelta(minutes=minutes_left)  # noqa: E731
    observed = {6: (40.0, 70.0), 10: (80.0, 200.0)}
    assert deadline.allows(6, observed, now=at(2))  # 70 s fits in 120 s
    assert not deadline.allows(10, observed, now=at(2))  # 200 s does not
    assert not deadline.allows(15, observed, now=at(3))  # never seen: at least as slow as a 10 s clip
    assert deadline.allows(15, {}, now=at(1))  # nothing seen yet: only the deadline itself stops it
    assert not deadline.allows(6, {}, now=at(-1))


def test_a_run_stops_submitting_when_the_next_job_could_not_finish(emulator_thread, tmp_path):
    # 15 s clips take 6 s here and go first (longest first); one at a time. After the first has
    # finished (t ~ 6.5 s) 4.5 s are left: a job that took 6 s cannot make it, so none is started
    # (well before submits stop anyway, 2 s ahead of the deadline).
    emu = emulator_thread(time_scale=0.1, generation_seconds={6: (10.0, 10.0), 15: (60.0, 60.0)})
    manifest = write_manifest(tmp_path / "m.yaml", [{"prompt": f"long {i}", "duration": 15} for i in range(2)]
                              + [{"prompt": f"short {i}", "duration": 6} for i in range(2)])
    env = cli_env(emu.base_url)
    cut = run_cli(*run_args(manifest, tmp_path, "--concurrency", "1", "--deadline", "11s",
                            "--summary-json", str(tmp_path / "summary.json")), env=env, cwd=tmp_path)
    assert cut.returncode == 3, cut.stdout + cut.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "a new 15 s clip could not finish before --deadline 11s" in summary["stop_reason"]
    assert summary["deadline"]["given"] == "11s" and summary["deadline"]["stopped_run"] is True
    assert datetime.fromisoformat(summary["ended_at"]) < datetime.fromisoformat(summary["deadline"]["at"])
    assert len(emu.stats()["jobs"]) == 1
    assert summary["rows"] == {"planned": 4, "skipped": 0, "submitted": 1, "downloaded": 1, "failed": 0,
                               "unfinished": 3, "expired": 0}
    assert all(row["reason"].startswith("not submitted: deadline") for row in summary["unfinished"])

    emu.configure(time_scale=0.0)
    rest = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert set(ledger(tmp_path)["status"]) == {"DOWNLOADED"}
    assert all(len(jobs) == 1 for jobs in jobs_per_key(emu.stats()).values())


def test_a_deadline_cuts_a_run_and_the_next_run_finishes_it_without_a_second_job(emulator_thread, tmp_path):
    # Every clip takes 6 s; three go at once (submits stop 2 s before the deadline), then the 4 s
    # deadline arrives with all three still generating and three rows never submitted.
    emu = emulator_thread(time_scale=0.1, generation_seconds={6: (60.0, 60.0)})
    manifest = write_manifest(tmp_path / "m.yaml", [{"prompt": f"harbour {i}", "duration": 6} for i in range(6)])
    env = cli_env(emu.base_url)
    with Receiver() as receiver:
        cut = run_cli(*run_args(manifest, tmp_path, "--concurrency", "3", "--deadline", "4s",
                                "--summary-json", "-", "--notify", receiver.url()), env=env, cwd=tmp_path)
        assert cut.returncode == 3, cut.stdout + cut.stderr
        summary = json.loads(cut.stdout)  # standard output is the JSON alone
        assert "--deadline 4s" in summary["stop_reason"] and "reached" in summary["stop_reason"]
        assert "exit code 3: deadline: --deadline 4s" in cut.stderr
        assert [message["exit_code"] for message in receiver.received] == [3]
        assert "--deadline 4s" in receiver.received[0]["text"]

    rows = ledger(tmp_path)
    assert len(emu.stats()["jobs"]) == 3
    assert rows.height == 3  # the rows never submitted have no ledger row yet
    assert rows["job_id"].null_count() == 0 and rows["status"].is_in(["SUBMITTED", "PROCESSING"]).all()
    assert summary["rows"]["unfinished"] == 6 and summary["rows"]["downloaded"] == 0
    reasons = sorted(row["reason"].split(":")[0].split(" as job")[0] for row in summary["unfinished"])
    assert reasons == ["not submitted"] * 3 + ["still generating"] * 3

    emu.configure(time_scale=0.0)  # new jobs are instant; the three in flight keep their 6 s
    rest = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    rows = ledger(tmp_path)
    assert rows.height == 6 and set(rows["status"]) == {"DOWNLOADED"}
    per_key = jobs_per_key(emu.stats())
    assert set(per_key) == set(rows["job_key"]) and all(len(jobs) == 1 for jobs in per_key.values()), per_key
    assert rows["credits_charged"].sum() == emu.stats()["credits"]["charged"] == 60

