"""`videobatch run --out s3://bucket/clips` end to end (videos at clips/videos/<key>.mp4, as a local
--out lays them out): the real command in a child process, the emulator over loopback and a real
S3 server (moto, its own process). Every test ends on the books: one paid job per row, the
ledger's credits the emulator's, every object the bytes it served.

Covers: pipeline/run/fetch.py pipeline/run/intake.py pipeline/store/objects.py
"""

from __future__ import annotations

import hashlib

from pipeline.manifest.load import load_manifest
from pipeline.store.archive import archived_name
from tests.harness import cli_env, ledger, prompts, run_cli, write_manifest


def _run(manifest, tmp, out_url, env, *more):
    return run_cli("run", str(manifest), "--ledger", str(tmp / "ledger.parquet"), "--out", out_url,
                   "--rpm", "0", "--poll-interval", "0.05", "--progress-interval", "0.5", *more, env=env, cwd=tmp)


def _env(emu, s3):
    return cli_env(emu.base_url, **s3.env)


def _check_books(emu, rows, objects, bucket, prefix="clips/videos"):
    """One paid job per row, credits as charged, every object the bytes served and the ledger's sha256."""
    stats = emu.stats()
    served = {job["id"]: job for job in stats["jobs"]}
    assert len(set(rows["job_id"])) == rows.height == len(served)  # one paid job per row, none other
    assert rows["credits_charged"].sum() == stats["credits"]["charged"] - stats["credits"]["refunded"]
    for row in rows.iter_rows(named=True):
        assert row["status"] == "DOWNLOADED"
        assert row["output_path"] == f"s3://{bucket}/{prefix}/{row['job_key']}.mp4"
        data = objects[f"{prefix}/{row['job_key']}.mp4"]
        job = served[row["job_id"]]
        assert hashlib.sha256(data).hexdigest() == row["sha256"] == job["video_sha256"]
        assert len(data) == row["bytes"] == job["video_bytes"]


def test_run_puts_every_video_in_the_bucket_and_a_rerun_pays_and_uploads_nothing(emulator_thread, s3, tmp_path):
    emu = emulator_thread()
    bucket = s3.bucket()
    out = s3.url("clips", bucket)
    manifest = write_manifest(tmp_path / "m.yaml", prompts(5))
    done = _run(manifest, tmp_path, out, _env(emu, s3))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = ledger(tmp_path)
    assert rows.height == 5
    _check_books(emu, rows, s3.objects(bucket), bucket)
    assert not list((tmp_path / "staging").rglob("*.mp4"))  # staged, verified, stored, removed
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr

    before = emu.stats()["requests"]
    again = _run(manifest, tmp_path, out, _env(emu, s3))
    assert again.returncode == 0, again.stdout + again.stderr
    after = ledger(tmp_path)
    # Nothing downloaded, stored or paid: the rows are as they were, the CDN was not asked.
    assert after.sort("job_key")["downloaded_at"].to_list() == rows.sort("job_key")["downloaded_at"].to_list()
    assert {r: n for r, n in emu.stats()["requests"].items() if "video" in r or "cdn" in r} == \
        {r: n for r, n in before.items() if "video" in r or "cdn" in r}
    _check_books(emu, after, s3.objects(bucket), bucket)


def test_a_deleted_object_is_fetched_again_without_a_new_job(emulator_thread, s3, tmp_path):
    emu = emulator_thread()
    bucket = s3.bucket()
    out = s3.url("clips", bucket)
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    assert _run(manifest, tmp_path, out, _env(emu, s3)).returncode == 0
    gone = ledger(tmp_path)["job_key"][1]
    s3.client().delete_object(Bucket=bucket, Key=f"clips/videos/{gone}.mp4")

    plan = run_cli("plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"),
                   env=_env(emu, s3), cwd=tmp_path)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    actions = {line.split()[1]: line.split()[-1] for line in plan.stdout.splitlines() if "lighthouse" in line}
    assert actions == {key: "download" if key == gone else "skip" for key in ledger(tmp_path)["job_key"]}
    done = _run(manifest, tmp_path, out, _env(emu, s3))
    assert done.returncode == 0, done.stdout + done.stderr
    _check_books(emu, ledger(tmp_path), s3.objects(bucket), bucket)


def test_another_object_at_the_name_is_never_overwritten(emulator_thread, s3, tmp_path):
    emu = emulator_thread()
    bucket = s3.bucket()
    out = s3.url("clips", bucket)
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    taken = sorted(load_manifest(manifest)["job_key"])[0]
    s3.client().put_object(Bucket=bucket, Key=f"clips/videos/{taken}.mp4", Body=b"someone else's clip")

    done = _run(manifest, tmp_path, out, _env(emu, s3))
    assert done.returncode != 0
    rows = ledger(tmp_path)
    row = rows.filter(rows["job_key"] == taken).row(0, named=True)
    assert row["status"] == "COMPLETED" and "not overwritten" in row["error"]
    assert s3.objects(bucket)[f"clips/videos/{taken}.mp4"] == b"someone else's clip"
    assert "Traceback" not in done.stdout + done.stderr

    # Moved away by its owner: the next run stores ours, with no new paid job.
    s3.client().delete_object(Bucket=bucket, Key=f"clips/videos/{taken}.mp4")
    again = _run(manifest, tmp_path, out, _env(emu, s3))
    assert again.returncode == 0, again.stdout + again.stderr
    _check_books(emu, ledger(tmp_path), s3.objects(bucket), bucket)


def test_a_bad_out_url_is_refused_in_one_line(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1))
    done = _run(manifest, tmp_path, "ftp://host/videos", cli_env(emu.base_url))
    assert done.returncode == 2
    assert "--out ftp://...: not a store videobatch knows" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr and emu.stats()["jobs"] == []


def test_an_edited_rows_old_video_moves_aside_in_the_bucket(emulator_thread, s3, tmp_path):
    emu = emulator_thread()
    bucket = s3.bucket()
    out = s3.url("clips", bucket)
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "hero", "prompt": "a red kite"}])
    assert _run(manifest, tmp_path, out, _env(emu, s3)).returncode == 0
    first = ledger(tmp_path).row(0, named=True)
    old_bytes = s3.objects(bucket)["clips/videos/hero.mp4"]
    write_manifest(manifest, [{"id": "hero", "prompt": "a blue kite"}])
    done = _run(manifest, tmp_path, out, _env(emu, s3))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = ledger(tmp_path)
    archived = archived_name("hero", first["request_hash"])
    assert set(rows["job_key"]) == {"hero", archived}
    stored = s3.objects(bucket)
    assert set(stored) == {"clips/videos/hero.mp4", f"clips/videos/{archived}.mp4"}
    assert stored[f"clips/videos/{archived}.mp4"] == old_bytes  # the paid old take, kept
    _check_books(emu, rows, stored, bucket)  # two versions, two paid jobs, each object its job's bytes


def test_a_failed_upload_is_a_failed_download_fetched_again_without_a_new_job(emulator_thread, s3, tmp_path):
    emu = emulator_thread()
    bucket = f"t-later-{tmp_path.name[-12:].lower().replace('_', '-')}"  # not made yet: every put fails
    out = s3.url("clips", bucket)
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    done = _run(manifest, tmp_path, out, _env(emu, s3))
    assert done.returncode != 0
    rows = ledger(tmp_path)
    assert set(rows["status"]) == {"COMPLETED"}
    assert all(e.startswith("download failed: upload: cannot store s3://") for e in rows["error"])
    assert "Traceback" not in done.stdout + done.stderr
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr

    s3.bucket(bucket)
    again = _run(manifest, tmp_path, out, _env(emu, s3))
    assert again.returncode == 0, again.stdout + again.stderr
    _check_books(emu, ledger(tmp_path), s3.objects(bucket), bucket)
