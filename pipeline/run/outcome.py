"""What a run comes to: its exit code, the scheduler's contract (README, "Exit codes")."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit code of `run` and `plan` (an int to the shell, to JSON and to the runs table)."""

    OK = 0
    FAILED_ROWS = 1
    BAD_INPUT = 2
    STOPPED = 3


EXIT_OK, EXIT_FAILED_ROWS, EXIT_BAD_INPUT, EXIT_STOPPED = ExitCode
EXIT_MEANINGS = {
    EXIT_OK: "every row is downloaded",
    EXIT_FAILED_ROWS: "finished, with failed or rejected rows",
    EXIT_BAD_INPUT: "bad manifest or arguments: nothing was submitted",
    EXIT_STOPPED: "stopped early: run the same command again to continue",
}


def exit_meaning(code: int | None) -> str | None:
    return EXIT_MEANINGS.get(code) if code is not None else None
