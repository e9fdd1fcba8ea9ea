"""Issue 18, item 6: the same `id` in two manifests sharing a ledger. A row belongs to the manifest
that first ran it; another manifest asking for another request under that id is refused by `plan`
and `run` (exit 2, before any request), naming the file, the ids and the first manifest, unless
it takes the rows over with --take-over. Past the API's 24 h replay window (the emulator keeps no
key here), a, b, a, b used to pay for every run.

Covers: pipeline/cli.py pipeline/batch.py pipeline/plan/actions.py pipeline/store/archive.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from pipeline.plan.actions import Plan
from pipeline.store.archive import is_archived_col

from tests.harness import check_books, cli_env, ledger, run_args, run_cli, write_manifest

IDS = ["hero", "kite", "gull"]


def _jobs(prefix: str) -> list[dict]:
    return [{"id": name, "prompt": f"{prefix}: {name} over the harbour"} for name in IDS]


def test_two_manifests_with_the_same_ids_never_pay_for_each_other(emulator_thread, tmp_path):
    emu = emulator_thread(idempotency_window_s=0.0)  # every replay is past the window: only the ledger guards
    env = cli_env(emu.base_url)
    a = write_manifest(tmp_path / "a.yaml", _jobs("dawn"))
    b = write_manifest(tmp_path / "b.yaml", _jobs("dusk"))
    refusal = (f"{b.resolve()}: 3 ids (hero, kite, gull) are rows of {a.resolve()} in "
               f"{tmp_path / 'ledger.parquet'}")

    outcomes = []
    for manifest in (a, b, a, b):  # the sequence
        before = emu.stats()["requests"]
        done = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
        outcomes.append(done.returncode)
        if manifest == b:  # refused before any request, even the account's
            assert refusal in done.stderr and "--take-over" in done.stderr and "--ledger" in done.stderr
            assert emu.stats()["requests"] == before
    assert outcomes == [0, 2, 0, 2]
    stats = emu.stats()
    assert len(stats["jobs"]) == len(IDS)  # zero extra paid jobs
    check_books(stats, ledger(tmp_path), in_flight_ok=False)

    shown = run_cli("plan", str(b), "--ledger", str(tmp_path / "ledger.parquet"), env=env, cwd=tmp_path)
    assert shown.returncode == 2 and refusal in shown.stderr  # `plan` says what `run` does

    # The same file moved: the same requests under the same ids, nothing to refuse or to pay.
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(a, moved / "a.yaml")
    again = run_cli(*run_args(moved / "a.yaml", tmp_path), env=env, cwd=tmp_path)
    assert again.returncode == 0 and "3 already done" in again.stdout, again.stdout + again.stderr

    # b takes the ids over, once, on purpose: a's videos are kept as earlier versions, and now a
    # is the one refused, naming b.
    taken = run_cli(*run_args(b, tmp_path, "--take-over"), env=env, cwd=tmp_path)
    assert taken.returncode == 0 and "3 jobs, 0 already done" in taken.stdout, taken.stdout + taken.stderr
    done = run_cli(*run_args(a, tmp_path), env=env, cwd=tmp_path)
    assert done.returncode == 2 and f"are rows of {b.resolve()}" in done.stderr, done.stdout + done.stderr
    rows = ledger(tmp_path)
    stats = emu.stats()
    assert rows.height == 2 * len(IDS) and len(stats["jobs"]) == 2 * len(IDS)
    assert sorted(rows.filter(~is_archived_col())["manifest"].unique()) == [str(b.resolve())]
    check_books(stats, rows, in_flight_ok=False)


def test_the_refusal_names_a_few_ids_with_their_count_and_every_other_manifest():
    shared = pl.DataFrame({"job_key": [f"id{n}" for n in range(8)], "row": list(range(1, 9)),
                           "held_by": ["/p/a.yaml"] * 7 + ["/p/c.yaml"]})
    plan = Plan(manifest=Path("/p/b.yaml"), rows=pl.DataFrame(), shared=shared)
    assert plan.shared_ids_refusal(Path("/p/ledger.parquet")).startswith(
        "/p/b.yaml: 7 ids (id0, id1, id2, id3, id4, ...) are rows of /p/a.yaml in /p/ledger.parquet, "
        "with other requests (and 1 more ids of other manifests)")
    assert Plan(manifest=Path("/p/b.yaml"), rows=pl.DataFrame(), shared=shared.head(0)).shared_ids_refusal(
        Path("/p/ledger.parquet")) is None
