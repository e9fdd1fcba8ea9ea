"""`--metrics-file PATH`: the last run in Prometheus text format, for node_exporter's textfile collector.

Written atomically at the end of every run (the collector may read at any moment), so a team can
alert when the nightly batch did not succeed, e.g. `time() - videobatch_last_success_timestamp_seconds
> 26 * 3600` or `videobatch_last_run_exit_code != 0`. Success means exit code 0. The last success
survives runs that fail: it is the later of the previous file's value and the ledger's runs table;
0 when no run has ever succeeded, so that alert fires for a batch that never worked.

Every series carries `ledger="<path>"`, so several batches can write files into one collector folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.store.atomic import write_text_atomic
from pipeline.reports.summary import BatchSummary
from pipeline.run.outcome import EXIT_OK
from pipeline.store.runs import RunsCorrupt, read_runs

LAST_SUCCESS = "videobatch_last_success_timestamp_seconds"
_PREVIOUS_SUCCESS = re.compile(rf"^{LAST_SUCCESS}(?:{{[^}}]*}})?\s+([0-9.eE+-]+)\s*$", re.MULTILINE)


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float | int) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def previous_success(path: Path) -> float:
    """The last success the metrics file at `path` recorded (0 if none, or no readable file)."""
    try:
        found = _PREVIOUS_SUCCESS.findall(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return 0.0
    values = []
    for text in found:
        try:
            values.append(float(text))
        except ValueError:
            pass
    return max(values, default=0.0)


def last_success_in_runs(ledger_path: Path) -> float:
    """The end of the last run with exit code 0 in the runs table beside the ledger (0 if none)."""
    try:
        runs = read_runs(ledger_path)
    except RunsCorrupt:  # unreadable (read_runs says so for any error): the previous metrics file still knows
        return 0.0
    ok = runs.filter(runs["exit_code"] == EXIT_OK)["ended_at"].drop_nulls()
    return ok.max().timestamp() if ok.len() else 0.0


def render(summary: BatchSummary, last_success: float) -> str:
    ledger = {"ledger": str(Path(summary.paths["ledger"]).resolve())}
    lines: list[str] = []

    def metric(name: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            text = ",".join(f'{key}="{_label(val)}"' for key, val in {**ledger, **labels}.items())
            lines.append(f"{name}{{{text}}} {_number(value)}")

    def one(name: str, help_text: str, value: float) -> None:
        metric(name, help_text, [({}, value)])

    if summary.exit_code == EXIT_OK:
        last_success = max(last_success, summary.ended_at.timestamp())
    one("videobatch_last_run_start_timestamp_seconds", "When the last run started (Unix time).",
        summary.started_at.timestamp())
    one("videobatch_last_run_end_timestamp_seconds", "When the last run ended (Unix time).",
        summary.ended_at.timestamp())
    one("videobatch_last_run_exit_code",
        "Exit code of the last run: 0 all downloaded, 1 failed rows, 2 bad input or configuration, 3 stopped early, 4 API unreachable.",
        summary.exit_code)
    one(LAST_SUCCESS, "When a run last ended with exit code 0 (Unix time; 0 if never).", last_success)
    one("videobatch_last_run_credits_charged", "Credits the API charged for the last run's jobs (net of refunds).",
        summary.credits.get("charged", 0))
    one("videobatch_last_run_credits_estimated", "Credits of the attempts the last run started, at list price.",
        summary.credits.get("estimated", 0))
    one("videobatch_ledger_credits_charged", "Credits charged for every job in the ledger to date.",
        summary.ledger["credits"]["charged"])
    metric("videobatch_last_run_rows", "The last run's manifest rows by outcome.",
           [({"outcome": outcome}, n) for outcome, n in summary.rows.items()])
    metric("videobatch_ledger_rows", "Jobs in the ledger by status.",
           [({"status": status}, n) for status, n in summary.ledger["by_status"].items()])
    one("videobatch_last_run_requests", "API requests the last run made.", summary.requests.get("total", 0))
    one("videobatch_last_run_rate_limited_requests", "429 answers the last run received.",
        summary.requests.get("rate_limited", 0))
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, summary: BatchSummary) -> None:
    state_dir = summary.paths.get("state_dir")  # a remote ledger's local files
    ledger_path = Path(state_dir) / "ledger" if state_dir else Path(summary.paths["ledger"])
    known = max(previous_success(path), last_success_in_runs(ledger_path))
    write_text_atomic(Path(path), render(summary, known))

