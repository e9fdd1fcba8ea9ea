"""Every Apiframe video model in one manifest, end to end (issue 21, "Done when"): the real
`videobatch` in child processes against the emulator over real sockets. Ten models with their own
parameters in one batch; a manifest breaking five models' rules refused before anything is sent;
--max-credits on catalog prices never passed; a matrix, each combination its own paid job once;
downloads verified (decoded, duration checked when asked, size checked where known and recorded);
jobs of several models in flight at once all followed. Every test ends on the books: one paid
job per wanted row, ledger credits = the emulator's charges, every file the bytes served.

Covers: pipeline/plan/prices.py pipeline/run/catalog.py pipeline/store/catalog.py pipeline/manifest/matrix.py
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import av
import polars as pl
import pytest

from pipeline.emulator import Faults
from pipeline.models import get_model
from pipeline.models.pricing import read_catalog, upper_bound
from tests.harness import ISSUE_21, check_books, cli_env, jobs_per_key, ledger, run_args, run_cli

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

TEN_MODELS = ISSUE_21 + """\
  - {prompt: Gulls over the harbour at dawn, model: grok-imagine-video, duration: 10, aspect_ratio: "9:16"}
  - {prompt: A fishing boat in fog, model: sora-2, duration: 4, aspect_ratio: "9:16", params: {resolution: high}}
  - {prompt: The lamp room turning, model: midjourney-video, params: {start_image: refs/keeper.png, motion: high}}
  - {prompt: Waves on the rocks, model: hailuo-02, duration: 6, params: {resolution: 768p, prompt_optimizer: false}}
  - {prompt: A storm front rolling in, model: luma-ray-2, duration: 5, aspect_ratio: "21:9",
     params: {loop: true, concepts: [zoom_in]}}
  - {prompt: Rain on the window, model: seedance-1-pro, duration: 5, aspect_ratio: "4:3",
     params: {resolution: 480p, seed: 42, camera_fixed: true}}
  - {prompt: A lighthouse from above, model: wan-2.6, duration: 15, params: {resolution: 720p, seed: 3}}
  - {prompt: The keeper's cat asleep, model: runway-gen4-turbo, duration: 10, aspect_ratio: "1:1",
     params: {seed: 9, image: refs/keeper.png}}
"""


def _project(tmp: Path, text: str, name: str = "m.yaml") -> Path:
    (tmp / "refs").mkdir(exist_ok=True)
    (tmp / "refs" / "keeper.png").write_bytes(PNG)
    manifest = tmp / name
    manifest.write_text(text)
    return manifest


def _catalog(emu) -> dict:
    with urllib.request.urlopen(f"{emu.base_url}/v2/models?modality=video", timeout=10) as answer:
        return read_catalog(json.load(answer))


def _decoded_seconds(path: str) -> float:
    """What PyAV makes of a file: it must decode (a frame at least) and has a length."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert frames > 0
        return float(stream.duration * stream.time_base) if stream.duration else frames / float(stream.average_rate)


def _made(emu, tmp: Path, text: str) -> tuple[Path, dict[str, str], pl.DataFrame]:
    """The manifest written and run to its end: (the manifest, the environment, the ledger)."""
    manifest = _project(tmp, text)
    env = cli_env(emu.base_url)
    done = run_cli(*run_args(manifest, tmp), env=env, cwd=tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    return manifest, env, ledger(tmp)


def test_a_batch_of_ten_models_with_their_own_parameters(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest, env, rows = _made(emu, tmp_path, TEN_MODELS)
    stats = emu.stats()
    check_books(stats, rows, in_flight_ok=False)
    assert rows.height == 10 and rows["model"].n_unique() == 10 and set(rows["status"]) == {"DOWNLOADED"}
    assert stats["list_models"] == {"": stats["list_models"].get("", 0)}  # the list read for every model
    assert stats["requests"]["GET /v2/models"] == 1  # the catalog, read once per run
    assert stats["uploads"] == 1  # one local image in three rows' params: uploaded once

    jobs = {job["id"]: job for job in stats["jobs"]}
    prices = _catalog(emu)
    for row in rows.iter_rows(named=True):
        model, job = get_model(row["model"]), jobs[row["job_id"]]
        body = json.loads(row["request_body"])
        sent = body[model.params_field]
        wanted = {**({"duration": row["duration"]} if row["duration"] is not None else {}),
                  **({"aspect_ratio": row["aspect_ratio"]} if row["aspect_ratio"] is not None else {}),
                  **json.loads(row["params"] or "{}")}
        for name, value in wanted.items():  # every parameter as written; a local image as its upload's URL
            if isinstance(value, str) and value.startswith(str(tmp_path)):
                assert re.match(r"https?://", sent[name]), (row["job_key"], name, sent[name])
            else:
                assert sent[name] == value, (row["job_key"], name)
        assert set(sent) == set(wanted), row["job_key"]
        # The estimate bounds the charge; the file is what was served, with the length asked.
        assert row["credits_charged"] == job["credit_cost"] <= row["credits_estimated"]
        assert row["credits_estimated"] == upper_bound(model, row["duration"], prices)
        assert (row["video_width"], row["video_height"]) == (job["width"], job["height"])
        assert row["video_seconds"] == pytest.approx(job["duration"], abs=0.05)
        assert _decoded_seconds(row["output_path"]) == pytest.approx(job["duration"], abs=0.1)
        if row["duration"] is not None:
            assert job["duration"] == row["duration"]
    by_model = rows.group_by("model").agg(pl.col("credits_charged").sum()).rows()
    assert dict(by_model) == stats["credits_by_model"]
    sizes = {row["model"]: (row["video_width"], row["video_height"]) for row in rows.iter_rows(named=True)}
    assert sizes["grok-imagine-video"] == get_model("grok-imagine-video").frame_size("9:16")
    assert min(sizes["veo-3.1-fast"]) == 1080 and min(sizes["seedance-1-pro"]) == 480  # the resolution asked

    kept = json.loads((tmp_path / "ledger.catalog.json").read_text())  # the catalog, beside the ledger, dated
    assert kept["read_at"] and read_catalog(kept["answer"]) == prices

    again = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert emu.stats()["requests"]["POST /v2/videos/generate"] == 10  # nothing sent or paid again
    check_books(emu.stats(), ledger(tmp_path), in_flight_ok=False)


BROKEN = """\
defaults:
  aspect_ratio: "16:9"
jobs:
  - {prompt: a fishing boat in fog, model: sora-2, duration: 6}
  - {prompt: a keeper on the stairs, model: kling-3.0, duration: 5, params: {mode: ultra}}
  - {prompt: waves on the rocks, model: hailuo-02, aspect_ratio: "16:9"}
  - {prompt: the lamp room turning, model: midjourney-video, params: {motion: high}}
  - {prompt: a storm front rolling in, model: luma-ray-2, duration: 5, params: {concepts: [moonwalk]}}
  - {prompt: gulls over the harbour, model: veo-3.1-fast, duration: 8, params: {seed: 3}}
"""


@pytest.mark.parametrize("command", ["plan", "run"])
def test_a_manifest_breaking_five_models_rules_is_refused_and_nothing_is_sent(emulator_thread, tmp_path, command):
    emu = emulator_thread()
    manifest = _project(tmp_path, BROKEN)
    args = run_args(manifest, tmp_path) if command == "run" else [
        "plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet")]
    refused = run_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    said = (refused.stdout + refused.stderr).splitlines()
    expected = [
        f"{manifest}:1: duration: 6 is not a clip length sora-2 makes; use one of 4, 8, 10, 12, 15 (seconds)",
        f"{manifest}:2: params.mode: 'ultra' is not a value kling-3.0 takes; use one of standard, pro, 4k",
        f"{manifest}:3: aspect_ratio: hailuo-02 takes no aspect_ratio; remove it from this row; hailuo-02 takes: "
        "duration, end_image, image, prompt_optimizer, resolution",
        f"{manifest}:4: params.start_image: midjourney-video needs start_image; add it under params",
        f"{manifest}:5: params.concepts: 'moonwalk' is not a value luma-ray-2 takes; use one of truck_left, ",
    ]
    for line in expected:
        assert any(text.startswith(line) for text in said), (line, said)
    assert not any(":6:" in text for text in said)  # the good row is not blamed
    assert f"fix these 5 problems in {manifest} and run again; nothing was submitted" in said
    assert "Traceback" not in refused.stderr
    stats = emu.stats()
    assert stats["requests"] == {} and stats["jobs"] == [] and stats["credits"]["charged"] == 0  # nothing sent
    assert not (tmp_path / "out").exists()


CAPPED = [("veo", "veo-3.1-fast", 8, ""), ("kling", "kling-3.0", 10, ", params: {mode: pro}"),
          ("sora", "sora-2", 12, ""), ("grok", "grok-imagine-video", 15, ""), ("hailuo", "hailuo-02", 10, ""),
          ("seedance", "seedance-1-pro", 5, ", params: {resolution: 480p}"), ("wan", "wan-2.6", 5, "")]


def _first_fit(bounds: list[tuple[str, int]], cap: int) -> tuple[list[str], list[str]]:
    """The rows --max-credits lets in (plan order, every row that still fits), and those left out."""
    spent, taken, left = 0, [], []
    for key, bound in bounds:
        if spent + bound <= cap:
            spent, taken = spent + bound, [*taken, key]
        else:
            left.append(key)
    return taken, left


@pytest.mark.parametrize("share", [0.3, 0.6])
def test_max_credits_on_catalog_prices_never_exceeds_its_cap(emulator_thread, tmp_path, share):
    emu = emulator_thread()
    text = "jobs:\n" + "".join(f"  - {{id: {key}, prompt: a lighthouse at dusk, model: {model}, "
                                 f"duration: {duration}{extra}}}\n" for key, model, duration, extra in CAPPED)
    manifest = _project(tmp_path, text)
    prices = _catalog(emu)
    bounds = [(key, upper_bound(get_model(model), duration, prices)) for key, model, duration, _ in CAPPED]
    cap = int(sum(bound for _, bound in bounds) * share)
    taken, left = _first_fit(bounds, cap)
    assert taken and left  # the cap makes a real choice
    env = cli_env(emu.base_url)

    plan = run_cli("plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), "--max-credits", str(cap),
                   env=env, cwd=tmp_path)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"a run would spend at most {sum(dict(bounds)[k] for k in taken)} credits" in plan.stdout, plan.stdout
    done = run_cli(*run_args(manifest, tmp_path, "--max-credits", str(cap)), env=env, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr  # rows left for a later run
    left_out = sum(dict(bounds)[k] for k in left)
    assert f"--max-credits {cap}: {len(left)} rows left out ({left_out} credits): {', '.join(left)}" \
        in done.stdout, done.stdout
    stats = emu.stats()
    assert sorted(jobs_per_key(stats)) == sorted(taken)  # the left-out rows were never sent
    assert stats["credits"]["charged"] <= cap  # whatever the catalog's numbers mean
    rows = ledger(tmp_path)
    assert all(row["credits_charged"] <= row["credits_estimated"] for row in rows.iter_rows(named=True))
    check_books(stats, rows, in_flight_ok=False)


def test_a_model_the_catalog_does_not_price_is_refused_before_anything_is_paid(emulator_thread, tmp_path,
                                                                            monkeypatch):
    """The API's catalog leaves kling-3.0 out (the emulator's answer filtered, in its own thread):
    without an upper bound nothing is sent, not even the rows that have one."""
    from pipeline.emulator import server

    whole = server.catalog
    monkeypatch.setattr(server, "catalog", lambda modality: {
        **whole(modality), "models": [m for m in whole(modality)["models"] if m["id"] != "kling-3.0"]})
    emu = emulator_thread()
    manifest = _project(tmp_path, "jobs:\n  - {prompt: a kite, duration: 6}\n"
                                  "  - {prompt: a kite, model: kling-3.0, duration: 5}\n"
                                  "  - {prompt: a kite, model: veo-3, duration: 4}\n")
    for args in (["plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet")], run_args(manifest, tmp_path)):
        refused = run_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "gives no price for kling-3.0:" in refused.stdout + refused.stderr
        assert "nothing was submitted" in refused.stdout + refused.stderr and "Traceback" not in refused.stderr
    stats = emu.stats()
    assert "POST /v2/videos/generate" not in stats["requests"] and stats["credits"]["charged"] == 0


MATRIX = """\
matrix: {model: [grok-imagine-video, veo-3.1-fast, kling-3.0], aspect_ratio: ["16:9", "9:16"]}
jobs:
  - {id: beam, prompt: A lighthouse beam sweeping over a stormy sea at night}
  - prompt: A lighthouse keeper climbing a spiral staircase
    matrix: {model: [kling-3.0], duration: [5, 10], mode: [standard, pro]}
"""


def test_a_matrix_makes_each_combination_once_under_its_own_key(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest, env, rows = _made(emu, tmp_path, MATRIX)
    beams = {row["job_key"]: (row["model"], row["aspect_ratio"]) for row in rows.iter_rows(named=True)
             if row["row"] == 1}
    assert beams == {f"beam-{model}-{ratio.replace(':', 'x')}": (model, ratio)
                     for model in ("grok-imagine-video", "veo-3.1-fast", "kling-3.0") for ratio in ("16:9", "9:16")}
    keepers = sorted((row["aspect_ratio"], row["duration"], json.loads(row["params"])["mode"])
                     for row in rows.iter_rows(named=True) if row["row"] == 2)
    assert keepers == sorted((ratio, length, mode) for ratio in ("16:9", "9:16") for length in (5, 10)
                             for mode in ("standard", "pro"))
    stats = emu.stats()
    assert rows.height == len(stats["jobs"]) == 14 and rows["request_hash"].n_unique() == 14
    check_books(stats, rows, in_flight_ok=False)
    # Every combination's job is of its own model and shape.
    jobs = {job["id"]: job for job in stats["jobs"]}
    assert all((jobs[r["job_id"]]["model"], jobs[r["job_id"]]["aspect_ratio"]) == (r["model"], r["aspect_ratio"])
               for r in rows.iter_rows(named=True))

    again = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)  # a rerun pays nothing
    assert again.returncode == 0 and len(emu.stats()["jobs"]) == 14, again.stdout + again.stderr
    # A value added to the matrix makes its combinations only; the others keep their keys and jobs.
    manifest.write_text(MATRIX.replace('"9:16"]}', '"9:16", "1:1"]}', 1))
    grown = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert grown.returncode == 0, grown.stdout + grown.stderr
    after = ledger(tmp_path)
    new = set(after["job_key"]) - set(rows["job_key"])
    assert {key for key in new if key.startswith("beam-")} == {
        "beam-grok-imagine-video-1x1", "beam-veo-3.1-fast-1x1", "beam-kling-3.0-1x1"}
    assert len(new) == 3 + 4 and len(emu.stats()["jobs"]) == 21  # and row 2 in 1:1, 2 lengths x 2 modes
    check_books(emu.stats(), after, in_flight_ok=False)


def _served_wrong(emu, change) -> None:
    """The emulator (in this process) makes the clip of each job whose prompt says "wrong"
    otherwise than asked: `change(job)` alters what its CDN will encode, as a faulty API might."""
    state = emu.emulator.server.state
    create = state.create_job

    def create_job(body, idempotency_key, price):
        job = create(body, idempotency_key, price)
        if "wrong" in body["prompt"]:
            change(job)
        return job

    state.create_job = create_job


def test_a_video_of_another_length_is_refused_and_one_of_an_unknown_size_is_recorded(emulator_thread, tmp_path):
    """Verification: every file decodes; its length must be the one asked (when asked), its size
    the one known (grok's), and otherwise the size is recorded, not guessed. A refused file is no
    new paid attempt: once the API serves the right clip, the next run fetches it."""
    emu = emulator_thread()
    asked = {}

    def shorter_and_odd(job):
        asked[job.id] = job.duration
        job.duration -= 2
        job.width, job.height = 1000, 600

    _served_wrong(emu, shorter_and_odd)
    manifest = _project(tmp_path, """\
jobs:
  - {id: kite-wrong, prompt: a kite (wrong length), model: kling-3.0, duration: 5}
  - {id: still-wrong, prompt: a still kite (wrong size), model: midjourney-video,
     params: {start_image: refs/keeper.png}}
  - {id: grok-kite, prompt: a kite over dunes, duration: 6}
  - {id: veo-kite, prompt: a kite at the beach, model: veo-3, duration: 4, params: {resolution: 1080p}}
""")
    env = cli_env(emu.base_url)
    first = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert first.returncode == 3, first.stdout + first.stderr  # one row left unfinished, for the next run
    assert re.search(r"UNFINISHED kite-wrong: download failed: .*not the video asked for: 3\.00 s long, asked for 5 s",
                     first.stdout), first.stdout
    rows = {row["job_key"]: row for row in ledger(tmp_path).iter_rows(named=True)}
    assert rows["kite-wrong"]["status"] == "COMPLETED" and rows["kite-wrong"]["output_path"] is None
    # midjourney-video takes no duration: whatever length it makes is recorded, and its size too.
    still = rows["still-wrong"]
    assert still["status"] == "DOWNLOADED" and (still["video_width"], still["video_height"]) == (1000, 600)
    assert still["video_seconds"] == pytest.approx(_decoded_seconds(still["output_path"]), abs=0.1)
    assert (rows["grok-kite"]["video_width"], rows["grok-kite"]["video_height"]) == (1280, 720)
    assert rows["veo-kite"]["video_seconds"] == pytest.approx(4.0, abs=0.05)
    assert min(rows["veo-kite"]["video_width"], rows["veo-kite"]["video_height"]) == 1080
    assert len(emu.stats()["jobs"]) == 4

    for job in emu.emulator.server.state.order:  # the API now serves what was asked
        job.duration = asked.get(job.id, job.duration)
    again = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    after = ledger(tmp_path)
    kite = after.filter(pl.col("job_key") == "kite-wrong").row(0, named=True)
    assert kite["attempts"] == 1 and kite["video_seconds"] == pytest.approx(5.0, abs=0.05)
    stats = emu.stats()
    assert len(stats["jobs"]) == 4  # no job paid twice for a file that failed its check
    check_books(stats, after, in_flight_ok=False)


def test_a_grok_video_of_the_wrong_size_is_refused(emulator_thread, tmp_path):
    emu = emulator_thread()

    def wider(job):
        job.width, job.height = 1920, 1080  # grok's 16:9 is 1280x720 (CONTRACT.md)

    _served_wrong(emu, wider)
    manifest = _project(tmp_path, "jobs:\n  - {id: dunes-wrong, prompt: dunes (wrong size), duration: 6}\n")
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert re.search(r"UNFINISHED dunes-wrong: download failed: .*1920x1080.*1280x720", done.stdout), done.stdout
    [row] = ledger(tmp_path).to_dicts()
    assert row["status"] == "COMPLETED" and row["video_width"] is None and len(emu.stats()["jobs"]) == 1


def _most_models_in_flight(jobs: list[dict]) -> int:
    """The most models whose jobs were all being made at one moment (by the emulator's clock)."""
    spans = [(job["created_at"], job["completed_at"], job["model"]) for job in jobs]
    return max(len({model for start, end, model in spans if start <= moment < end}) for moment, _, _ in spans)


def test_jobs_of_several_models_in_flight_at_once_are_all_followed(emulator_thread, tmp_path):
    """Tracking: the job list is read without `model=` when the rows are of several models, so no
    job of another model is left out of it or taken for another row's; lost submit answers (the job
    made, the answer dropped) are settled under their own key, whatever their model."""
    emu = emulator_thread(time_scale=0.02, faults=Faults(seed=11, drop_after_create=0.25, answer_without_id=0.15))
    models = [("grok-imagine-video", 6, ""), ("kling-3.0", 5, ", params: {mode: pro}"), ("veo-3", 4, ""),
              ("sora-2", 4, ""), ("hailuo-02", 6, "")]
    text = "jobs:\n" + "".join(f"  - {{id: tide-{n}-{model}, prompt: the tide at hour {n}, model: {model}, "
                                 f"duration: {duration}{extra}}}\n"
                                 for n in range(4) for model, duration, extra in models)
    manifest = _project(tmp_path, text)
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = emu.stats()
    assert stats["faults"].get("drop_after_create", 0) + stats["faults"].get("answer_without_id", 0) > 0
    assert _most_models_in_flight(stats["jobs"]) >= 3, "the jobs were never in flight together"
    assert set(stats["list_models"]) == {""} and stats["requests"]["GET /v2/jobs"] >= 1
    rows = ledger(tmp_path)
    assert rows.height == 20 and set(rows["status"]) == {"DOWNLOADED"}
    check_books(stats, rows, in_flight_ok=False)  # one job per row, each of its row's model, its bytes


def test_an_edited_row_s_old_job_of_another_model_is_still_followed(emulator_thread, tmp_path):
    """A run is killed while a grok job is being made; the row is then switched to veo-3. The next
    run's rows are all veo-3: the old version's grok job (paid) must still be followed and fetched
    beside the new veo job, not missed for being of a model the manifest no longer names."""
    import signal

    from tests.harness import start_cli, wait_for

    emu = emulator_thread(time_scale=1.0)
    manifest = _project(tmp_path, "jobs:\n  - {id: cliff, prompt: a cliff at noon, duration: 6}\n"
                                  "  - {id: bay, prompt: a bay at noon, model: veo-3, duration: 4}\n")
    env = cli_env(emu.base_url)
    first = start_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    try:
        assert wait_for(lambda: len(emu.stats()["jobs"]) == 2, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    manifest.write_text(manifest.read_text().replace("{id: cliff, prompt: a cliff at noon, duration: 6}",
                                                     "{id: cliff, prompt: a cliff at noon, model: veo-3, duration: 4}"))
    emu.configure(time_scale=0.0, clock_offset_s=600)  # the old jobs are done by now; new ones at once
    done = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = ledger(tmp_path)
    models = {row["job_key"]: (row["model"], row["status"]) for row in rows.iter_rows(named=True)}
    [old] = [key for key in models if key.startswith("cliff@")]
    assert models[old] == ("grok-imagine-video", "DOWNLOADED") and models["cliff"] == ("veo-3", "DOWNLOADED")
    stats = emu.stats()
    assert len(stats["jobs"]) == 3
    check_books(stats, rows, in_flight_ok=False)


def test_the_balance_check_counts_upper_bounds_and_its_advice_keeps_the_run_within_the_balance(emulator_thread,
                                                                                               tmp_path):
    """The account holds one credit less than the plan's upper bounds (though the clips would cost
    less): `plan` says SHORT, and the --max-credits it advises keeps the run within the balance."""
    probe = emulator_thread()
    prices = _catalog(probe)
    bounds = [(key, upper_bound(get_model(model), duration, prices)) for key, model, duration, _ in CAPPED]
    balance = sum(bound for _, bound in bounds) - 1
    emu = emulator_thread(credits=balance)
    text = "jobs:\n" + "".join(f"  - {{id: {key}, prompt: a harbour at night, model: {model}, "
                                 f"duration: {duration}{extra}}}\n" for key, model, duration, extra in CAPPED)
    manifest = _project(tmp_path, text)
    env = cli_env(emu.base_url)
    plan = run_cli("plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), env=env, cwd=tmp_path)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"balance: {balance} credits (SHORT by 1: top up, or run with --max-credits {balance})" in plan.stdout
    done = run_cli(*run_args(manifest, tmp_path, "--max-credits", str(balance)), env=env, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    taken, left = _first_fit(bounds, balance)
    stats = emu.stats()
    assert sorted(jobs_per_key(stats)) == sorted(taken) and stats["credits"]["balance"] >= 0
    check_books(stats, ledger(tmp_path), in_flight_ok=False)


def test_a_job_list_that_ignores_the_model_filter_misleads_no_row(emulator_thread, tmp_path):
    """The API lists every model whatever `?model=` says (the ignore-model-filter dialect): a run of
    kling-3.0 rows only, beside grok jobs another project made with the same prompts on the same
    account, follows its own jobs and takes none of the others for them."""
    emu = emulator_thread(time_scale=0.02, dialects=("ignore-model-filter",))

    def surf(model: str) -> str:
        return "jobs:\n" + "".join(f"  - {{id: surf-{n}-{model}, prompt: surf at hour {n}, model: {model}, "
                                   "duration: 10}\n" for n in range(4))

    other = tmp_path / "grok-project"
    other.mkdir()
    _, _, theirs = _made(emu, other, surf("grok-imagine-video"))
    _, _, rows = _made(emu, tmp_path, surf("kling-3.0"))
    stats = emu.stats()
    assert set(stats["list_models"]) == {"grok-imagine-video", "kling-3.0"}  # each asked for its model only
    assert len(stats["jobs"]) == 8 and set(rows["model"]) == {"kling-3.0"}
    check_books(stats, pl.concat([theirs, rows]), in_flight_ok=False)  # each row its own job, of its model
