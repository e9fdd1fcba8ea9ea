"""The two processes a benchmark measures: the emulator, and `videobatch run`, each on its own.

Both are children of the benchmark, so `os.wait4` hands back their own CPU time and peak memory
without sampling, and nothing the benchmark does in between is counted against either.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_KEY = "afk_bench_" + "0" * 16  # the emulator's key; never a real one


@dataclass
class Usage:
    """What a finished child process cost."""

    exit_code: int
    wall_s: float
    cpu_s: float  # user + system
    peak_rss_mb: float


def _wait(proc: subprocess.Popen, started: float) -> Usage:
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
    return Usage(proc.returncode, time.perf_counter() - started, rusage.ru_utime + rusage.ru_stime,
                 rusage.ru_maxrss / 1024)


class EmulatorProcess:
    """`videobatch emulator` in a child process; the first line it prints is its base URL."""

    def __init__(self, *, time_scale: float, rpm: int, rate_window: float, seed: int = 1,
                 dialects: tuple[str, ...] = (), faults: tuple[str, ...] = ()):
        self.args = ["--key", BENCH_KEY, "--credits", str(10**9), "--time-scale", str(time_scale),
                     "--rpm", str(rpm), "--rate-window", str(rate_window), "--seed", str(seed), *faults]
        if dialects:
            self.args += ["--dialect", ",".join(dialects)]
        self.base_url = ""
        self.usage: Usage | None = None
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> EmulatorProcess:
        self._started = time.perf_counter()
        self._proc = subprocess.Popen([sys.executable, "-m", "pipeline", "emulator", *self.args],
                                      stdout=subprocess.PIPE, text=True)
        self.base_url = (self._proc.stdout.readline() or "").strip()
        if not self.base_url.startswith("http://"):
            self._proc.kill()
            raise RuntimeError("the emulator did not start: run `videobatch emulator` by hand to see why")
        return self

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + "/_emulator/stats", timeout=600) as answer:
            return json.load(answer)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
            self.usage = _wait(self._proc, self._started)


@dataclass
class PipelineRun:
    usage: Usage
    events: list[dict[str, Any]] = field(default_factory=list)  # the run's logs/<run_id>.jsonl

    def last(self, kind: str) -> dict[str, Any]:
        return next((e for e in reversed(self.events) if e["event"] == kind), {})

    def span(self, first: str, last: str) -> float | None:
        """Seconds from the first `first` event to the last `last` event."""
        from datetime import datetime

        starts = [e["ts"] for e in self.events if e["event"] == first]
        ends = [e["ts"] for e in self.events if e["event"] == last]
        if not starts or not ends:
            return None
        return (datetime.fromisoformat(max(ends)) - datetime.fromisoformat(min(starts))).total_seconds()


def run_pipeline(manifest: Path, work: Path, base_url: str, *options: str,
                 exit_codes: tuple[int, ...] = (0,)) -> PipelineRun:
    """`videobatch run MANIFEST` with its ledger, videos and output under `work`; an exit code
    outside `exit_codes` is an error."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIFRAME_")}
    env.update(APIFRAME_BASE_URL=base_url, APIFRAME_API_KEY=BENCH_KEY)
    work.mkdir(parents=True, exist_ok=True)
    ledger = work / "ledger.parquet"
    logs_before = set((work / "logs").glob("*.jsonl")) if (work / "logs").exists() else set()
    command = [sys.executable, "-m", "pipeline", "run", str(manifest), "--ledger", str(ledger),
               "--out", str(work), "--progress-interval", "5", *options]
    usage, _ = run_command(command, env, work, exit_codes)
    new_logs = sorted(set((work / "logs").glob("*.jsonl")) - logs_before)
    events = [json.loads(line) for line in new_logs[-1].read_text().splitlines()] if new_logs else []
    return PipelineRun(usage, events)


def run_command(command: list[str], env: dict[str, str], cwd: Path,
                exit_codes: tuple[int, ...] = (0,)) -> tuple[Usage, str]:
    """Any `videobatch` command as a child process: what it cost, and what it printed. An exit code
    outside `exit_codes` is an error."""
    output = cwd / "command-output.txt"
    with open(output, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        usage = _wait(proc, started)
    text = output.read_text()
    if usage.exit_code not in exit_codes:
        raise RuntimeError(f"{' '.join(command[2:4])} exited {usage.exit_code}; its output:\n{text[-3000:]}")
    return usage, text
