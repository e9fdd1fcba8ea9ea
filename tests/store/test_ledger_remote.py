"""A ledger in an object store: `Ledger.open("s3://bucket/ledger", state_dir=...)` against a real
S3 server (moto's, in its own process, on loopback; credentials only from the environment).
It records, checkpoints and reopens with its journal, mark and lock in the state folder; a lost
commit is named; two processes with their own state folders write two manifests' rows into the
same ledger at once and every row is there, one per key.

Covers: pipeline/store/ledger.py pipeline/store/table.py pipeline/store/location.py pipeline/store/state.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import polars as pl
import pytest

from pipeline.store.highwater import read_highwater
from pipeline.store.ledger import Ledger, LedgerCorrupt
from pipeline.store.location import LocationError
from pipeline.store.lock import RunLock
from tests.harness import REPO, free_port, wait_for

BUCKET = "videobatch-books"
URL = f"s3://{BUCKET}/ledger"


@pytest.fixture
def s3(tmp_path, monkeypatch):
    """A moto S3 server in a separate process (never in-process: delta-rs holds the GIL in some
    calls and would deadlock against it), the store's environment set, the bucket made."""
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        assert wait_for(listening, timeout=30), "moto did not start"
        env = {"AWS_ACCESS_KEY_ID": "fake-key-id", "AWS_SECRET_ACCESS_KEY": "fake-secret",
               "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield env, client
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def keys(client, prefix: str) -> list[str]:
    found = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in found)


def test_a_remote_ledger_records_checkpoints_and_reopens_with_its_local_files_in_the_state_dir(s3, tmp_path):
    _, client = s3
    state = tmp_path / "state"
    with Ledger.open(URL, run_id="r1", state_dir=state) as ledger:
        assert ledger.journal_path.parent == state and ledger.lock_path.parent == state
        assert ledger.lock_path.exists()
        for i in range(6):
            ledger.record(f"job-{i}", manifest="manifests/nightly.yaml", status="DOWNLOADED", credits_charged=10 + i)
        ledger.checkpoint()
        assert ledger.journal_path.read_bytes() == b""  # committed to the store, so trimmed
        ledger.record("job-6", manifest="manifests/nightly.yaml", status="SUBMITTED", credits_charged=7)
        ledger.commit_sync()
        pending = ledger.journal_path.read_bytes()
        ledger._journal.close()  # killed before its checkpoint: the line is only in the local journal
        ledger._release_lock()
        ledger._closed = True
    assert pending.count(b"\n") == 1
    assert sorted(p.name for p in state.iterdir()) == ["ledger.highwater.json", "ledger.journal.jsonl", "ledger.lock",
                                                        "ledger.where"]
    objects = keys(client, "ledger/")
    assert "ledger/_delta_log/00000000000000000000.json" in objects
    assert any(k.startswith("ledger/night=") and "/batch=nightly.yaml/" in k for k in objects)
    assert not any("journal" in k or "highwater" in k or k.endswith(".lock") for k in objects)  # local files stay local

    with Ledger.open(URL, run_id="r2", state_dir=state) as again:  # the journal's line replayed, then committed
        assert len(again) == 7 and again.credits_total() == 10 + 11 + 12 + 13 + 14 + 15 + 7
    assert (state / "ledger.journal.jsonl").read_bytes() == b""
    mark = read_highwater(state / "ledger")
    rows = pl.read_delta(URL)  # what any reader of the store sees, with only the environment set
    assert mark.version == max(int(k.rsplit("/", 1)[1][:20]) for k in keys(client, "ledger/_delta_log/")
                               if k.endswith(".json"))
    assert rows.height == rows["job_key"].n_unique() == 7 and int(rows["credits_charged"].sum()) == 82
    # one state folder serves one ledger: another URL given the same folder is refused, in one line
    with pytest.raises(LocationError, match=rf"--state-dir {state} holds the journal of the ledger {URL}, not "):
        Ledger.open(f"s3://{BUCKET}/other-ledger", run_id="r3", state_dir=state)
    # another machine (its own state folder) reads the same books
    other = Ledger.open(URL, readonly=True, state_dir=tmp_path / "elsewhere").frame()
    assert other.sort("job_key").select("job_key", "credits_charged").equals(
        rows.sort("job_key").select("job_key", "credits_charged"))


def test_a_remote_table_rolled_back_or_lost_is_named_by_the_mark_in_the_state_dir(s3, tmp_path):
    _, client = s3
    state = tmp_path / "state"
    for run in range(2):
        with Ledger.open(URL, run_id=f"r{run}", state_dir=state) as ledger:
            ledger.record(f"job-{run}", status="DOWNLOADED", credits_charged=10)
    newest = max(k for k in keys(client, "ledger/_delta_log/") if k.endswith(".json"))
    client.delete_object(Bucket=BUCKET, Key=newest)
    with pytest.raises(LedgerCorrupt, match=rf"the ledger table {URL} is at version \d+, but version \d+ was committed"):
        Ledger.open(URL, run_id="r3", state_dir=state)
    with pytest.raises(LedgerCorrupt, match="lost or rolled back"):
        Ledger.open(URL, readonly=True, state_dir=state)
    for key in keys(client, "ledger/"):  # the whole table gone from the bucket
        client.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(LedgerCorrupt, match=rf"the ledger table {URL} is missing, but version \d+ was committed"):
        Ledger.open(URL, run_id="r4", state_dir=state)


WRITER = textwrap.dedent("""
    import json, sys, time
    from pipeline.store.ledger import Ledger
    url, state, manifest, count, start = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    while time.time() < start:  # both processes begin together: both find no table yet
        time.sleep(0.001)
    ledger = Ledger.open(url, run_id=manifest, state_dir=state)
    for i in range(count):
        ledger.record(f"{manifest}-{i}", manifest=f"manifests/{manifest}.yaml", status="DOWNLOADED",
                      credits_charged=i)
        if i % 4 == 3:
            ledger.checkpoint()
    ledger.close()
    print(json.dumps(ledger.table.stats), flush=True)
""")


def test_two_machines_write_two_manifests_into_one_remote_ledger_at_once(s3, tmp_path):
    env, _ = s3
    count, start = 16, time.time() + 3
    procs = {name: subprocess.Popen([sys.executable, "-c", WRITER, URL, str(tmp_path / f"state-{name}"), name,
                                     str(count), str(start)], cwd=REPO, env={**os.environ, **env},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("spring", "autumn")}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (name, err[-3000:])
        assert json.loads(out)["commits"] == count // 4
        lock = RunLock(tmp_path / f"state-{name}" / "ledger.lock")  # in its state folder, and released
        lock.acquire("check")
        lock.release()
    rows = pl.read_delta(URL)
    assert rows.height == rows["job_key"].n_unique() == 2 * count  # every row, one per key
    assert int(rows["credits_charged"].sum()) == 2 * sum(range(count))
    by_batch = dict(rows.group_by("batch").len().iter_rows())
    assert by_batch == {"spring.yaml": count, "autumn.yaml": count}  # each manifest in its own partition
    for name in procs:
        assert (tmp_path / f"state-{name}" / "ledger.journal.jsonl").read_bytes() == b""
