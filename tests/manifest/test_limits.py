"""Manifests that would exhaust the machine or reach past their folder: YAML alias bombs ("billion
laughs", an alias inside itself) are refused before anything is built, in milliseconds and little
memory; a row's metadata is at most 16 KiB of JSON; a plain anchor stays a convenience; a local
reference image must lie under the manifest's folder or an explicit --refs-root."""

from __future__ import annotations

import json
import shutil
import time
import tracemalloc
from pathlib import Path

import polars as pl
import pytest

import pipeline.manifest.load as manifest
from pipeline.manifest.load import ManifestError, load_manifest
from pipeline.manifest.rules import MAX_METADATA_BYTES
from tests.harness import REPO, check_books, cli_env, ledger, run_args, run_cli

BROKEN = Path(__file__).resolve().parents[1] / "manifests" / "broken"
REFS = REPO / "manifests" / "refs"
BOMBS = ["alias_bomb_defaults.yaml", "alias_bomb_row.yaml", "alias_loop.yaml"]


@pytest.mark.parametrize("name", BOMBS)
def test_an_alias_bomb_is_refused_at_once_in_little_memory(name):
    # Written out, alias_bomb_row.yaml is 2.3 GB of JSON: before, `plan` was still at it after
    # 30 s, at 1.3 GB. Now it is refused from the node graph, before anything is built.
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ManifestError) as caught:
            load_manifest(BROKEN / name)
        took = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert took < 5, took  # a generous guard: it takes milliseconds
    assert peak < 20 * 1024 * 1024, peak
    [issue] = caught.value.issues
    assert issue.field and "alias" in issue.problem


def test_run_and_plan_refuse_a_bomb_with_exit_2_naming_row_and_field(emulator_thread, tmp_path):
    emu = emulator_thread()
    bomb = BROKEN / "alias_bomb_row.yaml"
    for args in (run_args(bomb, tmp_path), ["plan", str(bomb), "--ledger", str(tmp_path / "ledger.parquet")]):
        started = time.monotonic()
        done = run_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
        assert time.monotonic() - started < 30  # the child's start-up included
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert f"{bomb}:2: t8: 2288202340 characters once its YAML aliases (*name) are written out, over the " \
               "64 KiB a row may take; write the values out" in done.stderr
    assert emu.stats()["requests"] == {}  # nothing was asked of the API
    assert not (tmp_path / "ledger.parquet").exists()


def test_an_anchor_used_as_a_shorthand_is_kept(tmp_path, monkeypatch):
    # Decided: aliases stay allowed (they are how YAML repeats a label set or merges a base); only
    # their expansion is capped, at 64 KiB a row and 16 times the file.
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "defaults:\n"
        "  duration: 6\n"
        "  base: &base {campaign: spring, owner: ana}\n"
        "jobs:\n"
        "  - prompt: a lighthouse at dusk\n"
        "    labels: *base\n"
        "  - prompt: a harbour at dawn\n"
        "    <<: *base\n"
        "    owner: bo\n")
    # A merge key merging nine copies of the level below, twenty levels deep: a union of keys, so
    # it builds {"k": 1} at every level, and it is counted so (not as 9^19 copies).
    chain = "".join(f"    b{i}: &b{i} {{<<: [{', '.join([f'*b{i - 1}'] * 9)}]}}\n" for i in range(1, 20))
    path.write_text(path.read_text() + "  - prompt: a quay at noon\n    b0: &b0 {k: 1}\n" + chain)
    fast = load_manifest(path)
    monkeypatch.setattr(manifest, "FAST_PATH", False)
    assert load_manifest(path).equals(fast)
    metadata = [json.loads(text) for text in fast["metadata"]]
    assert metadata[0] == {"labels": {"campaign": "spring", "owner": "ana"},
                           "base": {"campaign": "spring", "owner": "ana"}}
    assert metadata[1] == {"campaign": "spring", "owner": "bo", "base": {"campaign": "spring", "owner": "ana"}}
    assert {name: value for name, value in metadata[2].items() if name != "base"} == \
        {f"b{i}": {"k": 1} for i in range(20)}


@pytest.mark.parametrize("kind", ["yaml", "csv"])
@pytest.mark.parametrize("fast_path", [True, False])
def test_metadata_is_at_most_16_kib_of_json_a_row(tmp_path, monkeypatch, kind, fast_path):
    monkeypatch.setattr(manifest, "FAST_PATH", fast_path)
    room = MAX_METADATA_BYTES - len(json.dumps({"notes": ""}))  # the longest `notes` that fits

    def load(notes_length: int):
        path = tmp_path / f"m{notes_length}.{kind}"
        rows = [("a lighthouse at dusk", "short"), ("a harbour at dawn", "x" * notes_length)]
        if kind == "yaml":
            path.write_text("jobs:\n" + "".join(f"  - prompt: {p}\n    notes: {n}\n" for p, n in rows))
        else:
            path.write_text("prompt,notes\n" + "".join(f"{p},{n}\n" for p, n in rows))
        return load_manifest(path)

    fits = load(room)
    assert isinstance(fits, pl.DataFrame) and len(fits["metadata"][1].encode()) == MAX_METADATA_BYTES
    with pytest.raises(ManifestError) as caught:
        load(room + 1)
    [issue] = caught.value.issues
    assert (issue.row, issue.field) == ({"yaml": 2, "csv": 3}[kind], "notes")  # CSV: the header is row 1
    assert issue.problem == f"metadata is {MAX_METADATA_BYTES + 1} bytes of JSON, at most 16384 (16 KiB) a row"
    assert "put large data elsewhere" in issue.hint


# --- reference images outside the manifest's folder ---------------------------------------------


@pytest.fixture
def project(tmp_path):
    """proj/m.yaml names an image in its folder, one through a symlink that leads out of it, and
    one up and out by path; imgs/ holds the two outside."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "imgs").mkdir()
    shutil.copy(REFS / "paper-texture.png", tmp_path / "proj" / "paper.png")
    shutil.copy(REFS / "koi.png", tmp_path / "imgs" / "koi.png")
    (tmp_path / "proj" / "link.png").symlink_to(tmp_path / "imgs" / "koi.png")
    manifest = tmp_path / "proj" / "m.yaml"
    manifest.write_text("jobs:\n"
                        "  - prompt: paper in the manifest's folder\n    reference_images: [paper.png]\n"
                        "  - prompt: koi through a symlink\n    reference_images: [link.png]\n"
                        "  - prompt: koi up and out\n    reference_images: [../imgs/koi.png]\n")
    return manifest


def test_an_image_that_resolves_outside_the_manifests_folder_needs_refs_root(project, tmp_path):
    with pytest.raises(ManifestError) as caught:
        load_manifest(project)
    issues = caught.value.issues
    koi = tmp_path / "imgs" / "koi.png"
    assert [(i.row, i.field) for i in issues] == [(2, "reference_images"), (3, "reference_images")]
    assert issues[0].problem == f"link.png: resolves to {koi}, outside the manifest's folder ({tmp_path / 'proj'})"
    assert issues[1].problem.startswith(f"../imgs/koi.png: resolves to {koi}, outside")
    assert all("move it there, or pass --refs-root DIR" in i.hint for i in issues)
    rows = load_manifest(project, refs_root=tmp_path / "imgs")  # the manifest's folder stays allowed
    assert rows["reference_images"].to_list() == [[str(tmp_path / "proj" / "paper.png")], [str(koi)], [str(koi)]]
    with pytest.raises(ManifestError, match="--refs-root .* is not a folder"):
        load_manifest(project, refs_root=tmp_path / "nothere")


def test_plan_and_run_take_refs_root(emulator_thread, project, tmp_path):
    emu = emulator_thread()
    env = cli_env(emu.base_url)
    out = tmp_path / "run"
    plan = ["plan", str(project), "--ledger", str(out / "ledger.parquet")]
    for args in (plan, run_args(project, out)):
        refused = run_cli(*args, env=env, cwd=tmp_path)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"{project}:2: reference_images: link.png: resolves to " in refused.stderr
        assert "or pass --refs-root DIR" in refused.stderr and "Traceback" not in refused.stderr
    assert emu.stats()["requests"] == {} and emu.stats()["uploads"] == 0
    planned = run_cli(*plan, "--refs-root", str(tmp_path / "imgs"), env=env, cwd=tmp_path)
    assert planned.returncode == 0 and "to submit: 3 new" in planned.stdout, planned.stdout + planned.stderr
    done = run_cli(*run_args(project, out, "--refs-root", str(tmp_path / "imgs")), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert emu.stats()["uploads"] == 2  # paper and koi, each once
    check_books(emu.stats(), ledger(out), in_flight_ok=False)
