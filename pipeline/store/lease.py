"""Does I/O: the run lease, one small JSON object in the ledger's store that says which process is
running a manifest (or one shard of it), so a second run of it, on any machine, is refused.

    <ledger>/_videobatch/leases/<batch>[.shard-I-of-N].json
    {"host", "pid", "run_id", "started_at", "expires_at", "ttl_s", "machine", "renewed_at"}

- `acquire()` puts the object create-only. If it exists and is unexpired: LeaseHeld, naming the
  host and pid. If it has expired (its holder died without releasing it): taken over by a
  compare-and-swap on the e_tag read, so of two runs taking it at once only one wins.
- `renew()` rewrites it by compare-and-swap on our own e_tag; `keep()` does so every TTL/3 for the
  whole run. A swap refused means another run took the lease: LeaseLost, the run stops.
- `release()` deletes it only while the e_tag is still ours.
- A lease whose holder ran on this very machine (same kernel boot, same pid namespace) and whose
  process is gone (SIGKILL, OOM, a crash) is taken over at once, as the kernel drops the ledger's
  flock: the next run after a crash need not wait out the TTL. From any other machine, or another
  container's pid namespace, a pid says nothing here, and only expiry frees it.

Expiry is judged by the store's clock, never ours against another machine's: a lease expires
`ttl_s` after its object's `last_modified` (stamped by the store when it was last written), and
the store's "now" is the `last_modified` of a probe object we write when we find a lease held.
`expires_at` in the body is the holder's own reckoning, shown to people, never compared.

S3, GCS and Azure do the swap themselves (`mode={"e_tag": ...}`). obstore's LocalStore cannot
(PutMode::Update is not implemented), so on a local folder the swap and the release are made
under an flock of a file beside the lease: every writer of a local lease goes through here.

Credentials come only from the store's environment (obstore reads it); nothing here prints one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import obstore
from obstore.exceptions import AlreadyExistsError, NotFoundError, PreconditionError

from pipeline.redact import redact
from pipeline.store.faults import StorageFault, disk_fault
from pipeline.store.location import Location, parse
from pipeline.store.objects import open_store

LEASE_DIR = "_videobatch/leases"
DEFAULT_TTL_S = 600.0
TTL_ENV = "VIDEOBATCH_LEASE_TTL"  # hidden: tests shorten the lease to see one expire
TAKE_TRIES = 5  # create, or swap an expired one, raced by other runs: tried again this often


class LeaseHeld(Exception):
    """Another live run holds this lease: a refusal said in one line (exit 3), never a fault."""


class LeaseLost(StorageFault):
    """Another run took our lease (or it could not be renewed before it expired): stop now."""


def lease_ttl() -> float:
    text = os.environ.get(TTL_ENV)
    try:
        return float(text) if text and float(text) > 0 else DEFAULT_TTL_S
    except ValueError:
        return DEFAULT_TTL_S


def lease_name(manifest: Path | str, shard: tuple[int, int] | None = None) -> str:
    """The lease's name: a slug of the manifest's file name, plus `.shard-I-of-N` for one shard."""
    stem = Path(str(manifest)).name.rsplit(".", 1)[0] or "manifest"
    name = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-") or "manifest"
    return f"{name}.shard-{shard[0]}-of-{shard[1]}" if shard else name


def lease_folder(ledger: str | Path | Location) -> Location:
    """Where a ledger's leases live: under the ledger (a folder, or a store URL), or beside a
    ledger that is still one file (the format before parts)."""
    where = parse(str(ledger))
    if where.path is not None and where.path.is_file():
        return Location(str(where.path.parent / LEASE_DIR), where.path.parent / LEASE_DIR)
    return where.child(LEASE_DIR)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


class Lease:
    """One run's hold on one lease object. `what` names the manifest in messages."""

    def __init__(self, folder: Location, name: str, *, run_id: str, what: str, ttl: float | None = None):
        self.folder, self.name, self.run_id, self.what = folder, name, run_id, what
        self.ttl = ttl or lease_ttl()
        self.key = f"{name}.json"
        self.etag: str | None = None  # set while held
        self.started_at = datetime.now(timezone.utc)
        self._opened = None
        # A renewal still in its thread when the run ends (keep() cancelled) and the release must
        # not interleave: the release would read an e_tag the renewal is replacing, and leave it.
        self._mutex = threading.Lock()

    @property
    def _store(self):
        if self._opened is None:  # on first use, so a folder we cannot make is acquire()'s one-line fault
            self._opened = open_store(self.folder)
        return self._opened

    def __str__(self) -> str:
        return f"{self.folder}/{self.key}"

    # -- the three moves --

    def acquire(self) -> None:
        """Hold the lease, or raise LeaseHeld naming who does; StorageFault if the store cannot be used."""
        try:
            self._acquire()
        except (LeaseHeld, StorageFault):
            raise
        except Exception as exc:  # the store refused or could not be reached: one line, nothing started
            code = re.search(r"\(os error (\d+)\)", str(exc))
            if self.folder.path is not None and code:  # a local disk: said as every other disk fault
                raise disk_fault(OSError(int(code[1]), os.strerror(int(code[1]))), self.folder.path / self.key) from None
            raise StorageFault(f"could not take the run lease {self}: {_first_line(exc)}; check the store and "
                               "its credentials in the environment, then run the same command again") from None

    def _acquire(self) -> None:
        for _ in range(TAKE_TRIES):
            try:
                self.etag = obstore.put(self._store, self.key, self._body(), mode="create")["e_tag"]
                return
            except AlreadyExistsError:
                pass
            try:
                found = obstore.get(self._store, self.key)
            except NotFoundError:
                continue  # released meanwhile: create it
            meta, holder = found.meta, _holder(bytes(found.bytes()))
            expires = meta["last_modified"] + timedelta(seconds=float(holder.get("ttl_s") or self.ttl))
            if not _dead_here(holder) and self._store_now() < expires:
                raise LeaseHeld(self._held_line(holder, expires))
            try:
                self.etag = self._swap(meta["e_tag"])
                return
            except (PreconditionError, NotFoundError):
                continue  # another run took it (or released it) first: look again
        raise LeaseHeld(f"another videobatch run of {self.what} keeps taking the lease {self}; wait for it to end")

    def renew(self) -> None:
        """Push the expiry on by a TTL; LeaseLost if the lease is no longer ours."""
        with self._mutex:
            self._renew()

    def _renew(self) -> None:
        if self.etag is None:
            raise LeaseLost(f"the run lease {self} is not held")
        try:
            self.etag = self._swap(self.etag)
        except (PreconditionError, NotFoundError):
            self.etag = None
            raise LeaseLost(f"the run lease {self} was taken by another run while this one ran (it could not "
                            "be renewed in time); this run stopped with its journal kept: check which run holds "
                            f"{self.what} now, and run the same command again once it has ended") from None

    def release(self) -> None:
        """Delete the lease if it is still ours; one taken over by another run is left to it."""
        with self._mutex:
            if self.etag is None:
                return
            etag, self.etag = self.etag, None
            self._delete_if(etag)

    def _delete_if(self, etag: str) -> None:
        try:
            with self._swapping():
                if obstore.head(self._store, self.key)["e_tag"] == etag:
                    obstore.delete(self._store, self.key)
        except Exception:  # gone already, or the store unreachable: a lease left behind expires by itself
            pass

    async def keep(self, on_lost: Callable[[LeaseLost], None]) -> None:
        """Renew every TTL/3 until cancelled. A store that cannot be reached is tried again; once
        the lease could have expired unrenewed, or another run took it, `on_lost` is called once."""
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await asyncio.to_thread(self.renew)
                last_ok = time.monotonic()
            except LeaseLost as exc:
                on_lost(exc)
                return
            except Exception as exc:  # the store failing (network, 5xx): the next tick tries again
                if time.monotonic() - last_ok >= self.ttl * 2 / 3:
                    self.etag = None
                    on_lost(LeaseLost(f"the run lease {self} could not be renewed for {self.ttl * 2 / 3:.0f} s "
                                      f"({type(exc).__name__}), so another run may take it; this run stopped "
                                      "with its journal kept: run the same command again"))
                    return

    # -- the store --

    def _body(self) -> bytes:
        now = datetime.now(timezone.utc)
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "run_id": self.run_id,
                           "started_at": _iso(self.started_at), "expires_at": _iso(now + timedelta(seconds=self.ttl)),
                           "ttl_s": self.ttl, "machine": _machine(),
                           # to the microsecond: each renewal's bytes (so its e_tag, an MD5 on S3) are new,
                           # even two within one second, whose expires_at reads the same
                           "renewed_at": now.isoformat()}).encode()

    def _swap(self, etag: str) -> str:
        """Overwrite the lease only if its e_tag is still `etag`: the new e_tag, or PreconditionError."""
        if self.folder.path is None:
            return obstore.put(self._store, self.key, self._body(), mode={"e_tag": etag})["e_tag"]
        with self._swapping():
            if obstore.head(self._store, self.key)["e_tag"] != etag:
                raise PreconditionError(f"{self} changed")
            return obstore.put(self._store, self.key, self._body(), mode="overwrite")["e_tag"]

    @contextlib.contextmanager
    def _swapping(self):
        """On a local folder, the flock that makes head-then-write one step; a store does it itself."""
        if self.folder.path is None:
            yield
            return
        fd = os.open(self.folder.path / f".{self.key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _store_now(self) -> datetime:
        """The store's clock: the last_modified it stamps on a probe object written now."""
        probe = f"{self.name}.clock"
        obstore.put(self._store, probe, b"", mode="overwrite")
        return obstore.head(self._store, probe)["last_modified"]

    def _held_line(self, holder: dict, expires: datetime) -> str:
        who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
        return (f"another videobatch run of {self.what} holds it: {who} (run {holder.get('run_id', '?')}, since "
                f"{holder.get('started_at', '?')}, lease expires at {_iso(expires)}); wait for it, or if that "
                f"machine is gone the lease expires at {_iso(expires)} and the next run takes over ({self})")


_STORE_SECRETS = re.compile(r"^(AWS|AZURE|GOOGLE|GCS)_\w*(SECRET|KEY|TOKEN|PASSWORD)\w*$")


def _machine() -> str | None:
    """This kernel's boot and this pid namespace (Linux), or None: where a pid means a process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def _dead_here(holder: dict) -> bool:
    """Whether the holder ran here (this boot, this pid namespace) and its process is gone."""
    here, pid = _machine(), holder.get("pid")
    if here is None or holder.get("machine") != here or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False  # alive (or its pid reused: then the TTL decides, the safe way)


def _first_line(exc: BaseException) -> str:
    """An obstore error's first line (the rest is a debug dump), with its kind, and never a
    credential of the store's environment in it."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0] if text else ''}"
    for name, value in os.environ.items():
        if len(value) >= 4 and _STORE_SECRETS.match(name) and value in line:
            line = line.replace(value, "***")
    return redact(line)


def _holder(data: bytes) -> dict:
    try:
        found = json.loads(data)
        return found if isinstance(found, dict) else {}
    except ValueError:  # not ours, or written by hand: expires by its last_modified like any other
        return {}
