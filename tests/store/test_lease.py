"""The run lease against a local folder and against a real S3 protocol (moto's server, in its own
process): create-only, refused while live, taken over once expired by exactly one taker, renewed,
released only by its holder, expiry judged by the store's clock.

Covers: pipeline/store/lease.py pipeline/store/location.py
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import obstore
import pytest
from obstore.store import LocalStore, from_url

from pipeline.store.faults import StorageFault
from pipeline.store.lease import (DEFAULT_TTL_S, LEASE_DIR, TTL_ENV, Lease, LeaseHeld, LeaseLost, _first_line,
                                  lease_folder, lease_name, lease_ttl)


@pytest.fixture(params=["local", "s3"])
def ledger(request, tmp_path):
    """A ledger location: a local folder, or a prefix in a fresh bucket of the moto server."""
    if request.param == "local":
        return str(tmp_path / "ledger.parquet")
    s3 = request.getfixturevalue("s3")
    return s3.url("team/ledger")


def lease(ledger: str, run_id: str, ttl: float = 30.0, name: str = "nightly") -> Lease:
    return Lease(lease_folder(ledger), name, run_id=run_id, what="nightly.yaml", ttl=ttl)


def stored(ledger: str, name: str = "nightly") -> dict | None:
    """The lease object as the store holds it, read with a store of our own (not the Lease's)."""
    folder = lease_folder(ledger)
    store = LocalStore(str(folder.path)) if folder.path is not None else from_url(folder.url)
    try:
        return json.loads(bytes(obstore.get(store, f"{name}.json").bytes()))
    except FileNotFoundError:
        return None
    except obstore.exceptions.NotFoundError:
        return None


def test_a_live_lease_is_refused_naming_host_and_pid(ledger):
    first = lease(ledger, "run-1")
    first.acquire()
    body = stored(ledger)
    assert body["host"] == socket.gethostname() and body["pid"] == os.getpid() and body["run_id"] == "run-1"
    started, expires = (datetime.fromisoformat(body[k]) for k in ("started_at", "expires_at"))
    assert started.tzinfo == timezone.utc and 29 <= (expires - started).total_seconds() <= 31

    with pytest.raises(LeaseHeld) as held:
        lease(ledger, "run-2").acquire()
    line = str(held.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in line and "run-1" in line
    assert "another videobatch run of nightly.yaml holds it" in line and "\n" not in line
    assert stored(ledger)["run_id"] == "run-1"  # the refused run changed nothing

    first.release()
    assert stored(ledger) is None
    second = lease(ledger, "run-2")
    second.acquire()  # released: the next run takes it at once
    assert stored(ledger)["run_id"] == "run-2"
    second.release()


def test_other_names_and_shards_are_other_leases(ledger):
    whole, shard_1, shard_2 = (lease(ledger, f"run-{n}", name=name) for n, name in
                               enumerate([lease_name("a/nightly.yaml"), lease_name("nightly.yaml", (1, 2)),
                                          lease_name("nightly.yaml", (2, 2))]))
    for held in (whole, shard_1, shard_2):
        held.acquire()
    with pytest.raises(LeaseHeld):
        lease(ledger, "again", name=lease_name("b/nightly.yaml", (2, 2))).acquire()
    for held in (whole, shard_1, shard_2):
        held.release()


def test_an_expired_lease_is_taken_over_and_its_old_holder_loses_it(ledger):
    old = lease(ledger, "old", ttl=1.0)
    old.acquire()
    time.sleep(2.1)  # S3 stamps last_modified to the second: a clear second past the TTL
    new = lease(ledger, "new")
    new.acquire()
    assert stored(ledger)["run_id"] == "new"

    with pytest.raises(LeaseLost, match="taken by another run"):
        old.renew()
    old.release()  # no longer ours: the new holder's lease stays
    assert stored(ledger)["run_id"] == "new"
    new.renew()
    new.release()
    assert stored(ledger) is None


def test_of_many_runs_taking_an_expired_lease_at_once_one_wins(ledger):
    lease(ledger, "dead", ttl=1.0).acquire()  # its holder never renews nor releases
    time.sleep(2.1)
    takers = [lease(ledger, f"taker-{n}") for n in range(6)]
    gate = threading.Barrier(len(takers))
    won, refused = [], []

    def take(taker: Lease) -> None:
        gate.wait()
        try:
            taker.acquire()
            won.append(taker.run_id)
        except LeaseHeld:
            refused.append(taker.run_id)

    threads = [threading.Thread(target=take, args=(t,)) for t in takers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(won) == 1 and len(refused) == len(takers) - 1, (won, refused)
    assert stored(ledger)["run_id"] == won[0]


def test_expiry_is_the_stores_clock_not_the_holders_word(ledger):
    """A holder whose clock runs an hour behind writes an expires_at already past: its live lease
    is still refused, by the object's last_modified (the store's clock) plus its TTL."""
    folder = lease_folder(ledger)
    store = LocalStore(str(folder.path), mkdir=True) if folder.path is not None else from_url(folder.url)
    behind = {"host": "render-02", "pid": 4242, "run_id": "r", "started_at": "2026-01-01T00:00:00+00:00",
              "expires_at": "2026-01-01T00:10:00+00:00", "ttl_s": 600}
    obstore.put(store, "nightly.json", json.dumps(behind).encode(), mode="create")
    with pytest.raises(LeaseHeld, match="pid 4242 on host render-02"):
        lease(ledger, "mine").acquire()


def test_a_local_lease_untouched_past_its_ttl_is_taken_whatever_its_body_says(tmp_path):
    """The other way round, on a folder (whose mtime we can set): a body claiming 2099 whose file
    was last written an hour ago has expired."""
    ledger = str(tmp_path / "ledger.parquet")
    folder = lease_folder(ledger)
    folder.path.mkdir(parents=True)
    ahead = {"host": "render-02", "pid": 4242, "run_id": "r", "expires_at": "2099-01-01T00:00:00+00:00", "ttl_s": 600}
    target = folder.path / "nightly.json"
    target.write_text(json.dumps(ahead))
    hour_ago = time.time() - 3600
    os.utime(target, (hour_ago, hour_ago))
    taker = lease(ledger, "mine")
    taker.acquire()
    assert stored(ledger)["run_id"] == "mine"


async def test_keep_renews_and_says_once_when_another_run_took_it(ledger):
    held = lease(ledger, "keeper", ttl=0.9)
    held.acquire()
    first = held.etag
    lost: list[LeaseLost] = []
    task = asyncio.create_task(held.keep(lost.append))
    await asyncio.sleep(1.2)  # past the TTL: only renewals keep it
    assert held.etag != first and not lost
    assert stored(ledger)["run_id"] == "keeper"
    with pytest.raises(LeaseHeld):
        await asyncio.to_thread(lease(ledger, "other").acquire)

    folder = lease_folder(ledger)  # another run overwrites it, as a take-over would
    store = LocalStore(str(folder.path)) if folder.path is not None else from_url(folder.url)
    obstore.put(store, "nightly.json", json.dumps({"host": "h", "pid": 1, "run_id": "thief", "ttl_s": 60}).encode())
    await asyncio.wait_for(task, timeout=5)
    assert len(lost) == 1 and "taken by another run" in str(lost[0])
    held.release()
    assert stored(ledger)["run_id"] == "thief"


def test_names_folders_and_ttl(tmp_path, monkeypatch):
    assert lease_name("manifests/Nightly Run.yaml") == "nightly-run"
    assert lease_name("nightly.yaml", (2, 4)) == "nightly.shard-2-of-4"
    assert lease_folder("s3://bkt/team/ledger").url == f"s3://bkt/team/ledger/{LEASE_DIR}"
    folder = tmp_path / "ledger.parquet"
    assert lease_folder(str(folder)).path == folder / LEASE_DIR  # a folder ledger, or none yet
    folder.write_bytes(b"PAR1")  # the single-file format: the leases go beside it
    assert lease_folder(str(folder)).path == tmp_path / LEASE_DIR
    monkeypatch.setenv(TTL_ENV, "3")
    assert lease_ttl() == 3.0
    monkeypatch.setenv(TTL_ENV, "soon")
    assert lease_ttl() == DEFAULT_TTL_S


def test_a_store_that_cannot_be_reached_is_one_line_and_never_a_credential(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-never-shown")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")  # nothing listens there
    unreachable = Lease(lease_folder("s3://bkt/ledger"), "nightly", run_id="r", what="nightly.yaml")
    started = time.monotonic()
    with pytest.raises(StorageFault) as fault:
        unreachable.acquire()
    line = str(fault.value)
    assert line.startswith("could not take the run lease s3://bkt/ledger/_videobatch/leases/nightly.json: ")
    assert "\n" not in line and "s3cr3t" not in line and time.monotonic() - started < 120
    unreachable.release()  # never held: nothing to do, nothing raised

    said = _first_line(RuntimeError("denied for s3cr3t-value-never-shown with afk_abcdef123\ndebug dump"))
    assert said == "RuntimeError: denied for *** with afk_***"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_holder_dead_on_this_machine_is_taken_over_at_once_one_elsewhere_is_not(ledger):
    """Same boot and pid namespace, pid gone: taken over now. Another machine's pid means nothing here."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = lease_folder(ledger)
    store = LocalStore(str(folder.path), mkdir=True) if folder.path is not None else from_url(folder.url)
    here = json.loads(_lease_body_of_this_machine(ledger))["machine"]
    for machine, taken in [("another-boot/pid:[1]", False), (here, True)]:
        body = {"host": socket.gethostname(), "pid": gone.pid, "run_id": "crashed", "ttl_s": 600, "machine": machine}
        obstore.put(store, "nightly.json", json.dumps(body).encode())
        taker = lease(ledger, "next")
        if taken:
            taker.acquire()
            assert stored(ledger)["run_id"] == "next"
            taker.release()
        else:
            with pytest.raises(LeaseHeld, match=f"pid {gone.pid} on host"):
                taker.acquire()


def _lease_body_of_this_machine(ledger: str) -> str:
    probe = lease(ledger, "probe", name="probe")
    probe.acquire()
    body = json.dumps(stored(ledger, "probe"))
    probe.release()
    return body
