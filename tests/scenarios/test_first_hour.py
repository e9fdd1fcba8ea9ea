"""A content team's first hour, through the real command against the real emulator: the ledger the
demo wrote is found by the next command, an API that is not there or a refused key is said at once
with the right exit code, every ending says the one next command (and it works as printed), export
says what its --run leaves out, and status counts wanted rows and earlier versions apart.

Covers: pipeline/reports/next_step.py pipeline/cli.py pipeline/run/account.py pipeline/api/client.py pipeline/review/export.py pipeline/reports/status.py
"""

from __future__ import annotations

import json
import shlex

import pytest

from tests.harness import (TEST_KEY, check_books, cli_env, free_port, ledger, prompts, run_args, run_cli,
                           write_manifest)
from tests.review.server_cli import OFFLINE, Review


def _next(output: str) -> list[str]:
    """The command a `next:` line gives, as words after `videobatch` (the harness runs `python -m pipeline`)."""
    lines = [line for line in output.splitlines() if line.startswith("next: ")]
    assert len(lines) == 1, output
    words = shlex.split(lines[0].removeprefix("next: ").split("   (", 1)[0].split(": ")[-1])
    assert words[0] == "videobatch", lines[0]
    return words[1:]


# --- failing fast ------------------------------------------------------------------------------


@pytest.mark.parametrize("base_url, why", [
    ("http://127.0.0.1:{port}", "connection refused"),  # the port is picked in the test (xdist collects twice)
    ("http://no-such-host.invalid", "the host name does not resolve"),
])
def test_an_api_that_is_not_there_ends_the_run_with_exit_4_and_nothing_submitted(tmp_path, base_url, why):
    base_url = base_url.format(port=free_port())
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    done = run_cli(*run_args(manifest, tmp_path, "--summary-json", "s.json"), env=cli_env(base_url), cwd=tmp_path)
    assert done.returncode == 4, done.stdout + done.stderr
    assert f"ended with exit code 4: could not connect to the API at {base_url} ({why}; 3 tries): nothing was " \
           "submitted. Check APIFRAME_BASE_URL" in done.stdout
    assert "UNFINISHED" not in done.stdout  # one reason, said once, not once per row
    assert _next(done.stdout) == run_args(manifest, tmp_path, "--summary-json", "s.json")
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["exit_code"], summary["exit_meaning"]) == (4, "the API could not be reached: nothing was submitted")
    assert summary["requests"]["total"] == 3 and summary["rows"]["submitted"] == 0  # GET /v2/me, 3 tries
    assert ledger(tmp_path)["idempotency_key"].is_null().all()  # no intent: no submit ever left

    plan = run_cli("plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), env=cli_env(base_url),
                   cwd=tmp_path)
    assert plan.returncode == 4 and "could not connect to the API" in plan.stderr, plan.stdout + plan.stderr


def test_a_refused_key_is_exit_2_for_run_and_plan_and_never_printed(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    wrong = "afk_wrong_secret_abcdef123456"
    env = cli_env(emu.base_url, key=wrong)
    done = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the API refused the key (401): APIFRAME_API_KEY is wrong, inactive or lacks permission; nothing " \
           "was submitted" in done.stdout
    assert "run the same command again to continue" not in done.stdout
    assert _next(done.stdout) == run_args(manifest, tmp_path)
    plan = run_cli("plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), env=env, cwd=tmp_path)
    assert plan.returncode == 2 and "APIFRAME_API_KEY is wrong" in plan.stderr, plan.stdout + plan.stderr
    assert wrong not in done.stdout + done.stderr + plan.stdout + plan.stderr
    assert emu.stats()["jobs"] == []
    # The same key, set right: the plan that priced the rows checks it and gives the run as its next command.
    plan = run_cli("plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), env=cli_env(emu.base_url),
                   cwd=tmp_path)
    assert plan.returncode == 0 and "covers the plan" in plan.stdout, plan.stdout + plan.stderr
    assert _next(plan.stdout) == ["run", str(manifest), "--ledger", str(tmp_path / "ledger.parquet")]


# --- the next command after a run --------------------------------------------------------------


def test_failed_rows_say_retry_failed_and_the_printed_command_gives_them_a_new_attempt(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    secret = "http://127.0.0.1:9/hooks/T000/s3cr3t-notify-token"
    args = run_args(manifest, tmp_path, "--retries", "0", "--notify", secret, "--notify-retry-delay", "0")
    emu.configure(faults={"fail_generation": 1.0})
    first = run_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "3 failed: run again with --retry-failed" in first.stdout.splitlines()
    # A plain rerun tries nothing (every row FAILED) and says the same.
    again = run_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
    assert again.returncode == 1 and "3 failed: run again with --retry-failed" in again.stdout, again.stdout
    assert len(emu.stats()["jobs"]) == 3
    command = _next(again.stdout)
    assert secret not in again.stdout + again.stderr and "--notify <URL>" in again.stdout
    assert command[-1] == "--retry-failed"
    emu.configure(faults={"fail_generation": 0.0})
    command[command.index("<URL>")] = secret  # the user puts the secret back in
    retried = run_cli(*command, env=cli_env(emu.base_url), cwd=tmp_path)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert _next(retried.stdout) == ["review", "--ledger", "ledger.parquet"]  # relative to where it was run
    check_books(emu.stats(), ledger(tmp_path), in_flight_ok=False, retried=True)


# --- the demo's ledger, found by the next command ------------------------------------------------


def test_the_emulated_ledger_is_read_with_emulate_and_a_missing_ledger_names_it(tmp_path):
    env = cli_env(f"http://127.0.0.1:{free_port()}", key=None)
    nothing = run_cli("status", env=env, cwd=tmp_path)
    assert nothing.returncode == 2 and nothing.stdout == ""
    assert "no ledger at outputs/ledger.parquet (nor the emulator's at outputs/emulator/ledger.parquet): run a " \
           "batch first" in nothing.stderr
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    demo = run_cli("run", str(manifest), "--emulate", "--emulator-time-scale", "0", "--poll-interval", "0.05",
                   env=env, cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert _next(demo.stdout) == ["review", "--emulate"]
    for command in (["status"], ["report"], ["export", "--approved", "dest"]):
        missed = run_cli(*command, env=env, cwd=tmp_path)
        assert missed.returncode == 2, missed.stdout + missed.stderr
        said = missed.stderr.strip()
        assert said.startswith("videobatch: no ledger at outputs/ledger.parquet; the emulator's ledger is at "
                               "outputs/emulator/ledger.parquet (make demo, run --emulate): use --emulate: "), said
        assert shlex.split(said.rsplit(": ", 1)[1]) == ["videobatch", *command, "--emulate"]
        found = run_cli(*command, "--emulate", env=env, cwd=tmp_path)
        assert found.returncode == 0, found.stdout + found.stderr
    status = json.loads(run_cli("status", "--emulate", "--json", env=env, cwd=tmp_path).stdout)
    assert status["rows"] == 2 and status["rows_by_status"]["DOWNLOADED"] == 2
    assert (tmp_path / "outputs/emulator/report.html").exists()
    assert not (tmp_path / "outputs/ledger.parquet").exists()


# --- export's scope, status's counts ------------------------------------------------------------


def test_export_says_how_many_approved_clips_its_run_leaves_out(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    assert run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path).returncode == 0
    early = ["export", "--approved", str(tmp_path / "early"), "--ledger", str(tmp_path / "ledger.parquet")]
    nothing = run_cli(*early, env=OFFLINE, cwd=tmp_path)  # before any review: what to do instead
    assert nothing.returncode == 0 and nothing.stdout.startswith("exported 0 approved clips"), nothing.stdout
    assert nothing.stdout.splitlines()[-1] == (f"next: videobatch review --ledger {tmp_path / 'ledger.parquet'}   "
                                               "(no clip is approved yet: approve them there, then export again)")
    server = Review(tmp_path)
    try:
        csrf = server.csrf()
        for key in ledger(tmp_path)["job_key"]:
            status, answer = server.decide({"job_key": key, "decision": "approve", "note": ""}, csrf=csrf)
            assert status == 200 and answer["saved"], answer
    finally:
        server.stop()
    write_manifest(manifest, prompts(3))  # a later run: one more row, and it becomes the last run
    later = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert later.returncode == 0, later.stdout + later.stderr
    args = ["export", "--approved", str(tmp_path / "dest"), "--ledger", str(tmp_path / "ledger.parquet")]
    done = run_cli(*args, env=OFFLINE, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("exported 0 approved clips of run ")
    hint = [line for line in done.stdout.splitlines() if "more approved" in line]
    assert len(hint) == 1 and hint[0].startswith("  2 more approved in other runs, left out by --run last: add "
                                                 "--run all to export them too: videobatch export "), done.stdout
    everything = run_cli(*shlex.split(hint[0].rsplit(": ", 1)[1])[1:], env=OFFLINE, cwd=tmp_path)
    assert everything.returncode == 0 and everything.stdout.startswith("exported 2 approved clips to "), everything.stdout
    assert "more approved" not in everything.stdout and "next:" not in everything.stdout
    assert len(list((tmp_path / "dest").glob("*.mp4"))) == 2


def test_status_counts_wanted_rows_and_earlier_versions_apart(emulator_thread, tmp_path):
    emu = emulator_thread()
    jobs = [{"id": f"shot-{i}", "prompt": f"harbour {i} at dawn", "duration": 6} for i in range(3)]
    manifest = write_manifest(tmp_path / "m.yaml", jobs)
    assert run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path).returncode == 0
    jobs[0]["prompt"], jobs[1]["prompt"] = "harbour 0 at dusk", "harbour 1 at dusk"  # two rows edited
    write_manifest(manifest, jobs)
    assert run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path).returncode == 0
    assert ledger(tmp_path).height == 5
    text = run_cli("status", "--ledger", str(tmp_path / "ledger.parquet"), env=OFFLINE, cwd=tmp_path)
    assert text.returncode == 0, text.stdout + text.stderr
    assert text.stdout.splitlines()[:4] == ["rows: 3", "  DOWNLOADED 3",
                                            "earlier versions of edited rows, kept with their videos: 2",
                                            "  DOWNLOADED 2"]
    summary = json.loads(run_cli("status", "--ledger", str(tmp_path / "ledger.parquet"), "--json",
                                 env=OFFLINE, cwd=tmp_path).stdout)
    assert (summary["jobs"], summary["rows"], summary["versions"]) == (5, 3, 2)
    assert summary["credits"]["charged"] == ledger(tmp_path)["credits_charged"].sum()  # every paid job counts
    check_books(emu.stats(), ledger(tmp_path), in_flight_ok=False)


def test_the_key_stays_out_of_every_next_command(emulator_thread, tmp_path):
    """The API key never appears, even where a next command is built from the command line."""
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1))
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0 and TEST_KEY not in done.stdout + done.stderr
    assert _next(done.stdout) == ["review", "--ledger", "ledger.parquet"]
