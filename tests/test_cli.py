"""`videobatch`'s parser, through the real entry point (`python -m pipeline`, as a scheduler starts it).

Every subcommand takes each option its --help documents, and gets past the parser to its own
answer (here: no manifest or no ledger, exit 2 in one `videobatch:` line); an option it does not
know, or a value of the wrong kind, exits 2 with argparse's usage and one error line, never a
traceback. What the commands then do is the scenarios' (tests/scenarios/).
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import pipeline
from pipeline import cli
from pipeline.cli import build_parser
from pipeline.run.outcome import EXIT_BAD_INPUT
from tests.harness import cli_env, free_port, run_cli

NOWHERE = f"http://127.0.0.1:{free_port()}"  # no API: none of these commands may need one

# Each subcommand with every option its --help documents (and the hidden ones `run` takes), on a
# manifest or ledger that is not there: the command itself refuses, after the parser accepted all.
COMMANDS = {
    "plan": ["plan", "missing.yaml", "--ledger", "l.parquet", "--state-dir", "state", "--retry-failed", "--emulate", "--all",
             "--refs-root", ".", "--take-over", "--max-credits", "40", "--shard", "2/4"],
    "run": ["run", "missing.yaml", "--ledger", "l.parquet", "--state-dir", "state", "--out", "out", "--rpm", "10", "--concurrency", "2",
            "--max-credits", "5", "--retries", "1", "--retry-failed", "--take-over", "--emulate", "--timeout", "5",
            "--job-timeout", "60", "--webhook-listen", "127.0.0.1:0", "--webhook-url", "http://hooks.test/h",
            "--progress-interval", "1", "--deadline", "6h", "--summary-json", "summary.json",
            "--notify", f"{NOWHERE}/hook", "--metrics-file", "run.prom", "--refs-root", ".", "--dialect", "all",
            "--notify-retry-delay", "0", "--poll-interval", "0.1", "--rate-period", "1", "--checkpoint-every", "1",
            "--emulator-time-scale", "0", "--emulator-credits", "5", "--shard", "1/2"],
    "status": ["status", "--ledger", "l.parquet", "--state-dir", "state", "--json", "--emulate"],
    "report": ["report", "--ledger", "l.parquet", "--state-dir", "state", "--html", "r.html", "--run", "all", "--manifest", "m.yaml",
               "--pages", "2", "--emulate"],
    "review": ["review", "--ledger", "l.parquet", "--state-dir", "state", "--run", "last", "--manifest", "m.yaml", "--port", "0",
               "--host", "127.0.0.1", "--reviewer", "someone", "--out", "out", "--emulate"],
    "export": ["export", "--approved", "dest", "--ledger", "l.parquet", "--state-dir", "state", "--run", "r1", "--manifest", "m.yaml",
               "--emulate"],
    "reconcile": ["reconcile", "missing.yaml", "--ledger", "l.parquet", "--state-dir", "state", "--adopt", "--emulate", "--max-pages", "2",
                  "--rpm", "0", "--json", "--refs-root", "."],
}
NO_LEDGER = ("videobatch: no ledger at l.parquet (nor the emulator's at outputs/emulator/ledger.parquet): run a "
             "batch first (videobatch run MANIFEST, or videobatch run MANIFEST --emulate to try one), or pass --ledger PATH")
NO_MANIFEST = "missing.yaml: no such file; check the path"


def _documented(command: str) -> set[str]:
    """The options `videobatch COMMAND --help` lists."""
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    text = subparsers.choices[command].format_help()
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text)) - {"--help"}


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, env=cli_env(NOWHERE), cwd=tmp_path, timeout=60)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_documented_option_is_taken_and_the_command_answers_for_itself(tmp_path, command):
    args = COMMANDS[command]
    assert _documented(command) <= set(args), "an option --help documents is not tried here"
    done = _cli(tmp_path, *args)
    assert done.returncode == EXIT_BAD_INPUT, done.stdout + done.stderr
    assert "usage:" not in done.stderr and "error:" not in done.stderr and "Traceback" not in done.stderr
    if command in ("status", "report", "review", "export"):
        assert done.stderr == NO_LEDGER + "\n" and done.stdout == ""
    elif command == "reconcile":
        assert json.loads(done.stdout)["exit_code"] == EXIT_BAD_INPUT  # --json: the answer for scripts
    else:
        assert NO_MANIFEST in done.stderr
    if command == "run":
        _reached_the_run(tmp_path, done)


def _reached_the_run(tmp_path, done: subprocess.CompletedProcess) -> None:
    """--summary-json, --metrics-file and --notify act even on a run that refused its manifest."""
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["command"], summary["exit_code"], summary["emulated"]) == ("run", EXIT_BAD_INPUT, True)
    assert "videobatch_" in (tmp_path / "run.prom").read_text()
    assert "the notification was not delivered" in done.stderr and "the exit code is the run's" in done.stderr


# A wrong command line, and what its one error line says. The first few go through the real entry
# point; the rest through the same parser in this process (the entry point adds nothing to them).
THROUGH_THE_ENTRY_POINT = [
    (["run", "m.yaml", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "m.yaml", "--rpm", "-1"], "argument --rpm: must be 0 or more, got -1"),
    (["review", "--port", "http"], "argument --port: invalid _non_negative_int value: 'http'"),
    (["emulator", "--port", "x"], "argument --port: invalid int value: 'x'"),
]
IN_PROCESS = [
    ([], "the following arguments are required: command"),
    (["plan"], "the following arguments are required: manifest"),
    (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),  # the entry point names the near one
    (["run", "m.yaml", "--concurrency", "0"], "argument --concurrency: must be a positive whole number, got 0"),
    (["run", "m.yaml", "--job-timeout", "soon"], "argument --job-timeout: must be a number of seconds, got 'soon'"),
    (["run", "m.yaml", "--job-timeout", "0"], "argument --job-timeout: must be more than 0 seconds, got 0"),
    (["run", "m.yaml", "--webhook-listen", "8080"], "argument --webhook-listen: expected HOST:PORT, got '8080'"),
    (["run", "m.yaml", "--dialect", "klingon"], "argument --dialect:"),
    (["status", "--json", "yes"], "unrecognized arguments: yes"),
    (["report", "--pages", "0"], "argument --pages: must be a positive whole number, got 0"),
    (["export"], "the following arguments are required: --approved"),
    (["reconcile", "m.yaml", "--max-pages", "-2"], "argument --max-pages: must be a positive whole number, got -2"),
]


def _one_error_line(stderr: str, says: str) -> None:
    lines = stderr.splitlines()
    assert lines[0].startswith("usage: videobatch") and "Traceback" not in stderr
    errors = [line for line in lines if "error:" in line]
    assert errors == [lines[-1]] and re.match(r"^videobatch( \w+)?: error: ", lines[-1]), stderr
    assert says in lines[-1], lines[-1]


@pytest.mark.parametrize("args, says", THROUGH_THE_ENTRY_POINT)
def test_a_bad_option_exits_2_with_the_usage_and_one_error_line(tmp_path, args, says):
    done = _cli(tmp_path, *args)
    assert done.returncode == 2 and done.stdout == ""
    _one_error_line(done.stderr, says)
    assert list(tmp_path.iterdir()) == []  # nothing ran


@pytest.mark.parametrize("args, says", IN_PROCESS)
def test_the_parser_says_what_is_wrong_in_one_line(capsys, args, says):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(args)
    assert exited.value.code == 2
    _one_error_line(capsys.readouterr().err, says)


def test_help_lists_every_command_and_exits_0(tmp_path):
    done = _cli(tmp_path, "--help")
    assert done.returncode == 0 and done.stderr == ""
    for command in [*COMMANDS, "emulator"]:
        assert re.search(rf"^    {command}\s", done.stdout, re.M), command
    assert "Exit codes: 0 every row downloaded" in done.stdout  # the module's docstring, for people


def test_a_bare_videobatch_prints_the_commands_and_exits_2(tmp_path):
    done = _cli(tmp_path)
    assert done.returncode == EXIT_BAD_INPUT and done.stderr == ""  # a script that lost its command fails
    assert done.stdout.startswith("usage: videobatch")
    for command in [*COMMANDS, "emulator"]:
        assert re.search(rf"^    {command}\s", done.stdout, re.M), command
    assert done.stdout.rstrip().endswith("`videobatch COMMAND --help` lists a command's options.")
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_a_typod_command_names_the_one_it_looks_like_as_the_next_command(tmp_path):
    done = _cli(tmp_path, "reveiw", "--emulate")
    assert done.returncode == EXIT_BAD_INPUT
    assert done.stderr == "videobatch: no command 'reveiw'; did you mean 'review'?\n"
    assert done.stdout == "next: videobatch review --emulate\n"  # the user's own words, the command corrected
    unknown = _cli(tmp_path, "frobnicate")
    assert unknown.returncode == EXIT_BAD_INPUT and "the commands are emulator, export, plan" in unknown.stderr
    assert unknown.stdout.startswith("next: videobatch ")
    assert list(tmp_path.iterdir()) == []  # nothing ran


PROJECT_VERSION = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["version"]


def test_version_prints_the_installed_version_and_exits_0(tmp_path):
    done = _cli(tmp_path, "--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"videobatch {PROJECT_VERSION}\n", "")
    assert PROJECT_VERSION == "0.1.0"


def test_version_from_a_checkout_that_was_never_installed_is_the_sources(monkeypatch):
    assert pipeline.__version__ == PROJECT_VERSION  # one version, in pyproject.toml and the package

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(cli.metadata, "version", not_installed)  # no other way to uninstall in-process
    assert cli.installed_version() == PROJECT_VERSION


@pytest.mark.parametrize("args, expected", [
    (["run", "m.yaml"], {"rpm": 500, "concurrency": 1000, "retries": 2, "timeout": 30.0, "job_timeout": 1800.0,
                         "max_credits": None, "emulate": False, "dialect": (), "progress_interval": 10.0}),
    (["run", "m.yaml", "--webhook-listen", "0.0.0.0:8080", "--rpm", "0"], {"webhook_listen": ("0.0.0.0", 8080),
                                                                           "rpm": 0}),
    (["status"], {"json": False, "ledger": None, "emulate": False}),  # None: the default, or --emulate's
    (["review"], {"port": 8800, "host": None, "run": "last", "ledger": None}),
    (["reconcile", "m.yaml"], {"max_pages": 1000, "rpm": 500, "adopt": False, "ledger": None}),
    (["report", "--run", "r1"], {"run": "r1", "pages": 20}),
])
def test_the_defaults_and_the_values_the_parser_hands_on(args, expected):
    parsed = vars(build_parser().parse_args(args))
    assert {name: (str(parsed[name]) if name == "ledger" and parsed[name] else parsed[name])
            for name in expected} == expected
