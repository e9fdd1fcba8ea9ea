"""pipeline/reports/next_step.py: the one next command each exit code of `run` and `plan` gives, as a
table; the commands run as printed are the scenarios' (tests/scenarios/test_first_hour.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.redact import register_secret
from pipeline.reports.next_step import after_plan, after_run, command_line, ledger_option

RUN = ["run", "m y.yaml", "--ledger", "l/ledger.parquet"]
SAME = "videobatch run 'm y.yaml' --ledger l/ledger.parquet"


@pytest.mark.parametrize("code, failed, rejected, lines", [
    (0, 0, 0, ["next: videobatch review --ledger l/ledger.parquet   (look at the clips: approve, reject or "
               "regenerate each)"]),
    (1, 2, 1, ["2 failed: run again with --retry-failed", f"next: {SAME} --retry-failed"]),
    (1, 0, 3, ["3 rejected by the API, which never takes them as they are: edit those rows in the manifest "
               "(the reasons are above), then run again", f"next: {SAME}"]),
    (2, 0, 0, [f"next: fix what is named above, then the same command again: {SAME}"]),
    (3, 5, 0, [f"next: the same command again, to continue where this one stopped: {SAME}"]),
    (4, 0, 0, ["next: check the API's address and this machine's network (above), then the same command "
               f"again: {SAME}"]),
])
def test_each_exit_code_of_a_run_says_the_one_next_command(code, failed, rejected, lines):
    assert after_run(RUN, code, failed=failed, rejected=rejected, ledger="l/ledger.parquet", emulated=False) == lines


@pytest.mark.parametrize("cap, left, line", [
    (["--max-credits", "40"], (65, False), f"next: {SAME} --max-credits 65"),
    (["--max-credits=40", "--retry-failed"], (20, True), f"next: {SAME} --retry-failed --max-credits 20"),
    (["--max-credits", "30"], (20, True), f"next: {SAME} --max-credits 20 --retry-failed"),
])
def test_a_run_the_budget_ended_short_names_the_cap_that_makes_the_rows_left_out(cap, left, line):
    lines = after_run(RUN + cap, 3, failed=0, rejected=0, ledger="l/ledger.parquet", emulated=False, budget_left=left)
    assert lines == [f"{line}   (the rows --max-credits left out)"]
    # Stopped for another reason (a deadline, Ctrl-C: budget_left is then None): the same command.
    assert after_run(RUN + cap, 3, failed=0, rejected=0, ledger=None, emulated=False) == [
        f"next: the same command again, to continue where this one stopped: {SAME} {' '.join(cap)}"]


def test_a_plan_that_priced_its_rows_gives_the_run_it_priced():
    assert after_plan(["plan", "m.yaml", "--all", "--emulate"], 0) == ["next: videobatch run m.yaml --emulate"]
    assert after_plan(["plan", "m.yaml"], 4)[0].endswith("then the same command again: videobatch plan m.yaml")


def test_a_plan_without_a_key_says_to_set_one_before_the_run():
    # The run it priced would refuse to start (exit 2, no key): the key comes first, in the same line.
    assert after_plan(["plan", "m.yaml", "--all"], 0, key_missing=True) == [
        "next: put your key in .env (echo 'APIFRAME_API_KEY=...' >> .env), then: videobatch run m.yaml"]


@pytest.mark.parametrize("argv, options, line", [
    (["run", "m.yaml", "--retry-failed"], {"add": ("--retry-failed",)}, "videobatch run m.yaml --retry-failed"),
    (["run", "m.yaml", "--notify", "https://hooks.slack.com/services/T0/B0/s3cr3t"], {},
     "videobatch run m.yaml --notify <URL>"),
    (["run", "m.yaml", "--notify=https://hooks.slack.com/services/T0/B0/s3cr3t"], {},
     "videobatch run m.yaml --notify=<URL>"),
    (["run", "m.yaml", "--noti", "https://x/s3cr3t"], {}, "videobatch run m.yaml --notify <URL>"),  # argparse's prefix
    (["export", "--approved", "d", "--run", "r1"], {"drop_option": "--run", "add": ("--run", "all")},
     "videobatch export --approved d --run all"),
    (["export", "--run=r1", "--approved", "d"], {"drop_option": "--run", "add": ("--run", "all")},
     "videobatch export --approved d --run all"),
])
def test_the_command_line_is_the_users_own_without_a_secret(argv, options, line):
    assert command_line(argv, **options) == line


def test_a_registered_secret_is_never_echoed_whatever_flag_carries_it():
    register_secret("afk_typed_on_the_command_line_123")
    assert "afk_typed" not in command_line(["run", "m.yaml", "--webhook-url", "http://h/afk_typed_on_the_command_line_123"])


def test_a_ledger_is_named_the_shortest_way_a_reading_command_takes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ledger_option(Path("outputs/ledger.parquet"), emulated=False) == ""
    assert ledger_option(tmp_path / "outputs/emulator/ledger.parquet", emulated=False) == "--emulate"
    assert ledger_option(tmp_path / "night/ledger.parquet", emulated=False) == "--ledger night/ledger.parquet"
    assert ledger_option(None, emulated=True) == "--emulate"
    outside = tmp_path.parent / "elsewhere" / "ledger.parquet"
    assert ledger_option(outside, emulated=False) == f"--ledger {outside}"
