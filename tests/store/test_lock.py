"""One ledger, one run: a second holder is refused and told who holds it; a lock file deleted or
replaced under a run is noticed."""

from __future__ import annotations

import os

import pytest

from pipeline.store.lock import LockHeld, LockLost, RunLock


def test_a_second_holder_is_refused_with_the_first_one_named(tmp_path):
    first = RunLock(tmp_path / "ledger.lock")
    first.acquire("run-1")
    with pytest.raises(LockHeld) as held:
        RunLock(tmp_path / "ledger.lock").acquire("run-2")
    assert held.value.holder["pid"] == os.getpid() and held.value.holder["run_id"] == "run-1"
    first.release()
    second = RunLock(tmp_path / "ledger.lock")
    second.acquire("run-2")  # released: free again
    second.release()


@pytest.mark.parametrize("replaced", [False, True])
def test_a_lock_file_deleted_or_replaced_is_a_lost_lock(tmp_path, replaced):
    path = tmp_path / "ledger.lock"
    lock = RunLock(path)
    lock.acquire("run-1")
    lock.check()  # still ours
    path.unlink()
    if replaced:
        other = RunLock(path)
        other.acquire("run-2")  # another run could take the ledger now
    with pytest.raises(LockLost, match="deleted or replaced while this run held it"):
        lock.check()
    lock.release()
