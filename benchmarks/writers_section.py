"""`make bench` section "writers": two machines' runs into one ledger in an object store at once.

Two `videobatch run` processes, each of its own manifest and with its own --state-dir, write into
ONE Delta ledger at s3://BUCKET/ledger on a moto S3 server (a real S3 protocol on loopback, in its
own process), against one emulator; then one writer runs both manifests' rows (one manifest of
them all) into a ledger of its own, alone. Measured in one bench run: wall time (the pair's as a
ratio to the lone writer's), the table's commits per writer, the commit conflicts our merge
retried (the runs' logs, run_end's ledger stats) and the commits delta-rs rebased over another
writer's by itself (a commit whose readVersion is not the version just before it). The books are
checked at the end: one current row per job, every row downloaded, the ledger's credits equal to
the emulator's charges.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.processes import BENCH_KEY, EmulatorProcess
from benchmarks.workloads import rows, write_csv

BUCKET = "vb-bench"
FAKE = "bench-" + "x" * 10  # moto accepts any key; never a real one


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto's S3 server in a child process, with the bench's bucket made."""

    def __enter__(self) -> MotoServer:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self._proc.kill()
                    raise RuntimeError("the moto S3 server did not start: run `python -m moto.server` to see why")
                time.sleep(0.1)
        import boto3  # lazy: a test extra, needed by this part alone

        boto3.client("s3", **self.boto()).create_bucket(Bucket=BUCKET)
        return self

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": FAKE, "AWS_SECRET_ACCESS_KEY": FAKE, "AWS_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": self.url, "AWS_ALLOW_HTTP": "true"}

    def boto(self) -> dict[str, str]:
        return {"endpoint_url": self.url, "aws_access_key_id": FAKE, "aws_secret_access_key": FAKE,
                "region_name": "us-east-1"}

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=30)


def _run(manifest: Path, ledger: str, state: Path, out: Path, env: dict[str, str]) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(manifest), "--ledger", ledger, "--state-dir", str(state),
         "--out", str(out), "--rpm", "0", "--poll-interval", "0.05", "--progress-interval", "5",
         "--checkpoint-every", "1"],
        env=env, cwd=out, stdout=open(out / "output.txt", "w"), stderr=subprocess.STDOUT)


def _wait_all(procs: list[subprocess.Popen], outs: list[Path]) -> None:
    for proc, out in zip(procs, outs):
        if proc.wait() != 0:
            raise RuntimeError(f"videobatch run exited {proc.returncode}; its output:\n"
                               f"{(out / 'output.txt').read_text()[-3000:]}")


def _run_end(state: Path) -> dict[str, Any]:
    ends = [json.loads(line) for log in sorted((state / "logs").glob("*.jsonl"))
            for line in log.read_text().splitlines() if '"run_end"' in line]
    return ends[-1].get("ledger", {}) if ends else {}


def _books(url: str, env: dict[str, str]) -> dict[str, Any]:
    """The table's rows and commits: rows per key, credits, and each writer's commits."""
    import polars as pl
    from deltalake import DeltaTable

    dt = DeltaTable(url, storage_options={k.lower(): v for k, v in env.items()})
    frame = pl.from_arrow(dt.to_pyarrow_table(columns=["job_key", "status", "credits_charged", "batch"]))
    commits: dict[str, int] = {}  # per journal: a checkpoint's commit names its journal (a hash)
    rebased = 0
    for commit in dt.history():
        said = json.loads(commit.get("videobatch") or "{}")
        if said.get("journal"):
            commits[said["journal"]] = commits.get(said["journal"], 0) + 1
        read = commit.get("readVersion")
        if read is not None and read != commit["version"] - 1:
            rebased += 1
    return {"rows": frame.height, "keys": frame["job_key"].n_unique(),
            "downloaded": frame.filter(pl.col("status") == "DOWNLOADED").height,
            "ledger_credits": int(frame["credits_charged"].sum() or 0), "version": dt.version(),
            "commits_by_writer": sorted(commits.values()), "commits": dt.version() + 1, "rebased": rebased,
            "batches": sorted(frame["batch"].unique().to_list())}


def _server_credits(emu: EmulatorProcess) -> tuple[int, int]:
    stats = emu.stats()
    return stats["credits"]["charged"] - stats["credits"]["refunded"], stats.get("jobs_created", 0)


def _side(work: Path, manifests: list[Path], moto: MotoServer, time_scale: float, prefix: str) -> dict[str, Any]:
    """Each manifest's run at once into s3://BUCKET/<prefix>, each with its own state folder."""
    url = f"s3://{BUCKET}/{prefix}"
    with EmulatorProcess(time_scale=time_scale, rpm=0, rate_window=60.0) as emu:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APIFRAME_", "AWS_"))}
        env |= moto.env() | {"APIFRAME_BASE_URL": emu.base_url, "APIFRAME_API_KEY": BENCH_KEY}
        states = [work / f"{prefix}-state-{i}" for i in range(len(manifests))]
        outs = [work / f"{prefix}-out-{i}" for i in range(len(manifests))]
        started = time.perf_counter()
        procs = [_run(m, url, s, o, env) for m, s, o in zip(manifests, states, outs)]
        _wait_all(procs, outs)
        wall = time.perf_counter() - started
        server_credits, _ = _server_credits(emu)
    books = _books(url, moto.env())
    ends = [_run_end(s) for s in states]
    return {"wall_s": wall, "writers": len(manifests), "server_credits": server_credits, **books,
            "conflicts": sum(e.get("conflicts", 0) for e in ends),
            "commits_in_run": sum(e.get("commits", 0) for e in ends)}


def writers(work: Path, *, jobs: int, time_scale: float) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    first, second = rows(jobs, "alpha"), rows(jobs, "beta")
    manifests = [write_csv(work / "alpha.csv", first), write_csv(work / "beta.csv", second)]
    both = write_csv(work / "both.csv", first + second)
    with MotoServer() as moto:
        two = _side(work, manifests, moto, time_scale, "ledger")
        one = _side(work, [both], moto, time_scale, "alone")
    return {"jobs": jobs, "two": two, "one": one, "wall_ratio": two["wall_s"] / one["wall_s"]}


def table_rows(w: dict | None) -> list[tuple[str, str, str]]:
    if not w:
        return []
    two, one = w["two"], w["one"]
    out = [(f"w. two writers, {w['jobs']} jobs each, into one ledger on S3 (moto) / one writer of all "
            f"{2 * w['jobs']}", "", "")]
    out.append(("   wall time: two at once / one alone",
                f"{two['wall_s']:.2f} s / {one['wall_s']:.2f} s = {w['wall_ratio']:.2f}x", ""))
    out.append(("   table commits: all (checkpoints of each writer) / one writer's",
                f"{two['commits']} ({' + '.join(map(str, two['commits_by_writer']))}) / "
                f"{one['commits']} ({' + '.join(map(str, one['commits_by_writer']))})", ""))
    out.append(("   conflicts retried by our merge; commits delta-rs rebased",
                f"{two['conflicts']}, {two['rebased']} / {one['conflicts']}, {one['rebased']}", ""))
    for name, side in (("two", two), ("one", one)):
        ok = (side["rows"] == side["keys"] == side["downloaded"] == 2 * w["jobs"]
              and side["ledger_credits"] == side["server_credits"])
        out.append((f"   books, {'two writers' if name == 'two' else 'one writer'}: rows = keys = downloaded; "
                    "ledger = emulator credits",
                    f"{side['rows']} = {side['keys']} = {side['downloaded']}; "
                    f"{side['ledger_credits']} = {side['server_credits']} cr", "ok" if ok else "MISMATCH"))
    return out
