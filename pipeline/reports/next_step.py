"""Decides the one next command a finished `run` or `plan` tells its user, by exit code.

Built from the user's own command line (the same manifest and flags, --emulate kept), so it can be
run as printed; a secret is never echoed: a --notify URL becomes a placeholder, and every word
goes through redact(). Pure: (argv, exit code, what failed, which ledger) in, lines out.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from pipeline.config import EMULATED_OUT, LEDGER_NAME, REAL_OUT
from pipeline.redact import redact
from pipeline.run.outcome import EXIT_BAD_INPUT, EXIT_FAILED_ROWS, EXIT_OK, EXIT_STOPPED, EXIT_UNREACHABLE

PROGRAM = "videobatch"
SECRET_OPTION = "--notify"  # its URL is a secret (reports/notify.py): never printed
SECRET_PLACEHOLDER = "<URL>"
RETRY_FAILED = "--retry-failed"
MAX_CREDITS = "--max-credits"


def _is_secret_option(name: str) -> bool:
    # argparse takes any unambiguous prefix of an option (--noti): it is the same secret.
    return len(name) > len("--no") and SECRET_OPTION.startswith(name)


def command_line(argv: list[str], *, command: str | None = None, add: tuple[str, ...] = (),
                 drop: tuple[str, ...] = (), drop_option: str | None = None) -> str:
    """`videobatch` and `argv` (the words after it) as a shell line, the command word replaced by
    `command`, the flags `drop` and the option `drop_option` (with its value) left out, and `add`
    appended when missing; secrets as placeholders."""
    words: list[str] = []
    after = None  # what becomes of the next word: the value of a secret option, or of `drop_option`
    for word in argv[1:]:
        if after is not None:
            words += [after] if after else []
            after = None
            continue
        name, equals, _ = word.partition("=")
        if name == drop_option:
            after = None if equals else ""
        elif name.startswith("--") and _is_secret_option(name):
            words.append(f"{SECRET_OPTION}={SECRET_PLACEHOLDER}" if equals else SECRET_OPTION)
            after = None if equals else SECRET_PLACEHOLDER
        elif word not in drop:
            words.append(shlex.quote(redact(word)))
    words += [flag for flag in add if flag not in words]
    return " ".join([PROGRAM, command or (argv[0] if argv else ""), *words])


def ledger_option(ledger: str | Path | None, emulated: bool, state_dir: str | None = None) -> str:
    """How a reading command names this ledger: nothing for the default, --emulate for the
    emulator's, else --ledger PATH (relative to here when it lies below)."""
    if ledger is None:
        return "--emulate" if emulated else ""
    if "://" in str(ledger):  # a remote ledger: its URL, and the state folder unless the default one
        return " ".join(filter(None, [f"--ledger {shlex.quote(str(ledger))}",
                                      f"--state-dir {shlex.quote(str(state_dir))}" if state_dir else ""]))
    path = Path(ledger).absolute()
    if path == (REAL_OUT / LEDGER_NAME).absolute():
        return ""
    if path == (EMULATED_OUT / LEDGER_NAME).absolute():
        return "--emulate"
    shown = os.path.relpath(path)
    return f"--ledger {shlex.quote(str(path) if shown.startswith('..') else shown)}"


def after_run(argv: list[str], exit_code: int, *, failed: int, rejected: int, ledger: str | None,
              emulated: bool, budget_left: tuple[int, bool] | None = None, state_dir: str | None = None) -> list[str]:
    """The last lines of `run`: `failed` rows FAILED (a new attempt may be given), `rejected` REJECTED
    (final); `budget_left`: (credits, a retry among them) of the rows --max-credits left out, when
    that alone ended the run short."""
    same = command_line(argv)
    if exit_code == EXIT_STOPPED and budget_left:
        credits, retry = budget_left
        flags = f" {MAX_CREDITS} {credits}" + (f" {RETRY_FAILED}" if retry and RETRY_FAILED not in argv else "")
        return [f"next: {command_line(argv, drop_option=MAX_CREDITS)}{flags}   (the rows {MAX_CREDITS} left out)"]
    if exit_code == EXIT_OK:
        review = " ".join(filter(None, [PROGRAM, "review", ledger_option(ledger, emulated, state_dir)]))
        return [f"next: {review}   (look at the clips: approve, reject or regenerate each)"]
    if exit_code == EXIT_FAILED_ROWS and failed:
        return [f"{failed} failed: run again with {RETRY_FAILED}",
                f"next: {command_line(argv, add=(RETRY_FAILED,))}"]
    if exit_code == EXIT_FAILED_ROWS:
        return [f"{rejected} rejected by the API, which never takes them as they are: edit those rows in the "
                "manifest (the reasons are above), then run again", f"next: {same}"]
    return _again(exit_code, same)


def after_plan(argv: list[str], exit_code: int, *, key_missing: bool = False) -> list[str]:
    """The last line of `plan`: the run it priced (the same flags; --all only lists), or what to fix.
    `key_missing`: no APIFRAME_API_KEY, so that run would refuse to start until one is set."""
    if exit_code == EXIT_OK:
        run = command_line(argv, command="run", drop=("--all",))
        if key_missing:
            return [f"next: put your key in .env (echo 'APIFRAME_API_KEY=...' >> .env), then: {run}"]
        return [f"next: {run}"]
    return _again(exit_code, command_line(argv))


def _again(exit_code: int, same: str) -> list[str]:
    if exit_code == EXIT_BAD_INPUT:
        return [f"next: fix what is named above, then the same command again: {same}"]
    if exit_code == EXIT_UNREACHABLE:
        return [f"next: check the API's address and this machine's network (above), then the same command "
                f"again: {same}"]
    if exit_code == EXIT_STOPPED:
        return [f"next: the same command again, to continue where this one stopped: {same}"]
    return []
