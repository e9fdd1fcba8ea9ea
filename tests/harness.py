"""Drive the real `videobatch` command in a child process against an emulator on loopback."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline.manifest.load import load_manifest
from pipeline.manifest.rules import ManifestError
from pipeline.store.archive import base_key
from pipeline.store.ledger import read_ledger

REPO = Path(__file__).resolve().parent.parent
TEST_KEY = "afk_test_key_0123456789"
IDEMPOTENCY_KEY = re.compile(r"^vb-(.+)-a(\d+)-[0-9a-f]{16}$")


def cli_env(base_url: str, key: str | None = TEST_KEY, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIFRAME_")}
    env["APIFRAME_BASE_URL"] = base_url
    if key is not None:
        env["APIFRAME_API_KEY"] = key
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


def run_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def start_cli(*args: str, env: dict[str, str], cwd: Path, stdout=None) -> subprocess.Popen:
    return subprocess.Popen(cli_command(*args), env=env, cwd=cwd, stdout=stdout or subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def run_args(manifest: Path, tmp: Path, *more: str) -> list[str]:
    """`run` with the ledger and videos inside the test's folder, fast polling, no rate limit."""
    return ["run", str(manifest), "--ledger", str(tmp / "ledger.parquet"), "--out", str(tmp / "out"),
            "--rpm", "0", "--poll-interval", "0.05", "--progress-interval", "0.5", *more]


def old_code(tmp: Path, commit: str) -> Path | None:
    """A folder holding the `pipeline` package as it was at `commit` (`git archive`d), or None
    where the repository lacks that commit (a shallow clone): the code a user ran before a change."""
    import io
    import tarfile

    found = subprocess.run(["git", "-C", str(REPO), "archive", commit, "pipeline"], capture_output=True)
    if found.returncode != 0:
        return None
    folder = tmp / f"code-{commit}"
    with tarfile.open(fileobj=io.BytesIO(found.stdout)) as archive:
        archive.extractall(folder, filter="data")
    return folder


def run_old(code: Path, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """`videobatch ARGS` as the code in `code` (old_code) ran it."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env={**env, "PYTHONPATH": str(code)},
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def kill_old_run_mid_batch(code: Path, manifest: Path, folder: Path, emu, jobs: int = 4) -> None:
    """Run the code in `code` (old_code) over `manifest` against `emu` and SIGKILL it once the
    emulator has made `jobs` jobs: a run of an earlier version cut off with submits in the air."""
    import signal

    args = run_args(manifest, folder, "--checkpoint-every", "30")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=folder, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**cli_env(emu.base_url), "PYTHONPATH": str(code)})
    try:
        assert wait_for(lambda: len(emu.stats()["jobs"]) >= jobs, timeout=60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


# The manifest of issue 21 as the issue writes it (its local image under refs/keeper.png).
ISSUE_21 = """\
defaults:
  model: veo-3.1-fast
  duration: 8
  aspect_ratio: "16:9"
jobs:
  - prompt: A lighthouse beam sweeping over a stormy sea at night
    params: {resolution: 1080p, generate_audio: true}
  - prompt: A lighthouse keeper climbing a spiral staircase
    model: kling-3.0
    duration: 5
    params: {mode: pro, negative_prompt: blurry, start_image: refs/keeper.png}
"""


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def manifest_problems(path: Path) -> list[str]:
    """The lines loading the manifest at `path` refuses it with (it must refuse it)."""
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    return str(caught.value).splitlines()


def write_manifest(path: Path, jobs: list[dict], defaults: dict | None = None) -> Path:
    import yaml

    doc = {"jobs": jobs}
    if defaults:
        doc["defaults"] = defaults
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def prompts(n: int, prefix: str = "scene") -> list[dict]:
    durations = (6, 10, 15)
    ratios = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3")
    return [{"prompt": f"{prefix} {i}: a lighthouse keeper paints wave number {i}",
             "duration": durations[i % 3], "aspect_ratio": ratios[i % 7]} for i in range(n)]


def ledger(tmp: Path) -> pl.DataFrame:
    return read_ledger(tmp / "ledger.parquet")


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def jobs_per_key(stats: dict) -> dict[str, list[dict]]:
    """Emulator jobs grouped by the job_key embedded in their Idempotency-Key (vb-<key>-a<n>-<hash>)."""
    grouped: dict[str, list[dict]] = {}
    for job in stats["jobs"]:
        key = job.get("idempotency_key") or ""
        match = IDEMPOTENCY_KEY.match(key)
        grouped.setdefault(match.group(1) if match else key, []).append(job)
    return grouped


def check_books(stats: dict, rows: pl.DataFrame, *, in_flight_ok: bool, retried: bool = False) -> None:
    """The invariants that keep credits safe, judged by the emulator's own records: every row's jobs
    are the emulator's; one job per wanted request (each version of an id, `<id>@<hash>` in the
    ledger, is one; a version edited back to an earlier request within 24 h shares its key and job;
    with `retried`, failed generations made again: exactly one job that did not fail); ledger
    credits equal the net charge; the key never went to the CDN; every list named the model (of
    rows of one model) or none (rows of several: no job of another model is filtered out); every
    downloaded file is the bytes served; and only a job that never finished may be left in flight
    (`in_flight_ok`), none otherwise."""
    per_key = jobs_per_key(stats)
    served = {job["id"]: job for job in stats["jobs"]}
    wanted: dict[str, set[str]] = {}  # id -> the Idempotency-Keys of its versions' current attempts
    holders: dict[str, set[str]] = {}  # job_id -> the ids whose rows record it: one, or a job is counted twice
    for job_key, key, job_id in rows.select("job_key", "idempotency_key", "job_id").iter_rows():
        base = base_key(job_key)
        if job_id is not None:
            holders.setdefault(job_id, set()).add(base)
        if key is None and job_id in served:
            # Adopted by reconcile: the API never shows a job's key, so its job says it; rows of one
            # request (variations) may hold each other's jobs, so it counts for the id it was sent for.
            key = served[job_id]["idempotency_key"]
            base = match.group(1) if (match := IDEMPOTENCY_KEY.match(key or "")) else base
        wanted.setdefault(base, set()).add(key)
    assert {job_id: ids for job_id, ids in holders.items() if len(ids) > 1} == {}
    assert set(per_key) == set(wanted)
    # Each wanted key has exactly one job (with `retried`: one that did not fail), and no other
    # job counts: by key, not by number, so two jobs of one version never pass for two versions.
    kept = {k: sorted(j["idempotency_key"] for j in jobs if not retried or j["status"] != "FAILED")
            for k, jobs in per_key.items()}
    assert {k: keys for k, keys in kept.items() if keys != sorted(wanted[k])} == {}
    assert rows["credits_charged"].sum() == stats["credits"]["charged"] - stats["credits"]["refunded"]
    assert stats["cdn_key_leaks"] == 0
    # Every list names the model when the rows are of one (grok before issue 21), or lists them all.
    models = set(rows["model"].drop_nulls()) or {"grok-imagine-video"}
    assert set(stats["list_models"]) <= (models if len(models) == 1 else {"", *models}), stats["list_models"]
    assert set(rows["status"]) <= ({"DOWNLOADED", "SUBMITTED", "PROCESSING"} if in_flight_ok else {"DOWNLOADED"})
    for row in rows.iter_rows(named=True):
        job = served[row["job_id"]]
        assert job["model"] == (row["model"] or "grok-imagine-video"), (row["job_key"], job["model"])
        if row["status"] == "DOWNLOADED":
            assert hashlib.sha256(Path(row["output_path"]).read_bytes()).hexdigest() == row["sha256"] \
                == job["video_sha256"]
        else:  # left in flight: only a job that never finished may be
            assert job["status"] in ("QUEUED", "PROCESSING"), (row["job_key"], job["status"])


def failed_then_finished(emu, tmp: Path, fail: int = 2, finish: int = 4) -> list[subprocess.CompletedProcess]:
    """Two real runs into one ledger: `fail` rows whose generation always fails (one retry each),
    then the manifest grows by `finish` rows that download. Adding rows leaves the failed ones alone,
    so which rows fail does not depend on the order of the fault draws."""
    failing = prompts(fail, 'storm <b>&amp;</b> "surf"')  # markup in a prompt must reach the page as text
    manifest = write_manifest(tmp / "m.yaml", failing)
    emu.configure(faults={"fail_generation": 1.0})
    first = run_cli(*run_args(manifest, tmp, "--retries", "1"), env=cli_env(emu.base_url), cwd=tmp)
    emu.configure(faults={"fail_generation": 0.0})
    write_manifest(manifest, failing + prompts(finish, "calm"))
    second = run_cli(*run_args(manifest, tmp), env=cli_env(emu.base_url), cwd=tmp)
    return [first, second]


class Receiver:
    """A local aiohttp server on 127.0.0.1 on its own thread that records each POST's JSON body
    and answers with `status` (settable between runs): what a Slack webhook or a scheduler is to --notify."""

    def __init__(self, status: int = 200):
        import asyncio
        import threading

        self.status = status
        self.received: list[dict] = []
        self.paths: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="receiver", daemon=True)
        self._runner = None
        self.port = 0

    async def _handle(self, request):
        from aiohttp import web

        self.paths.append(request.path_qs)
        try:
            self.received.append(await request.json())
        except ValueError:
            self.received.append({"unparsable": await request.text()})
        return web.json_response({"ok": self.status < 300}, status=self.status)

    async def _start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __enter__(self) -> "Receiver":
        import asyncio

        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def url(self, path: str = "/hooks/T000/B000/s3cr3t-token-value") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_repeatedly(args: list[str], *, env: dict[str, str], cwd: Path, rng, kills: int,
                    window: tuple[float, float]) -> int:
    """Start `videobatch` and SIGKILL it after a random moment in `window`, up to `kills` times;
    stops early if a run finishes before the blow. Returns the number of kills."""
    import signal

    done = 0
    while done < kills:
        with open(os.devnull, "w") as sink:
            proc = start_cli(*args, env=env, cwd=cwd, stdout=sink)
            time.sleep(rng.uniform(*window))
            if proc.poll() is not None:  # it finished before we struck: nothing left to kill
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        done += 1
    return done



class SmallDisk:
    """A real tmpfs of `size` mounted at `path` (the tests run as root): a disk that really fills.
    `fill()` takes every free byte with a filler file, `free()` gives them back."""

    def __init__(self, path: Path, size: str = "1m"):
        self.path = path
        self.size = size
        self.filler = path / "filler"

    def __enter__(self) -> "SmallDisk":
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)], check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=True)

    def fill(self) -> None:
        import errno

        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink()
