"""Videos kept in an object store (`run --out s3://...`) on the review page, in the report and in
the export: a real run against the emulator and a real S3 server (moto, its own process), the
real `review` / `report` / `export` commands, the page in headless Chromium.

Covers: pipeline/review/posters.py pipeline/reports/gallery.py pipeline/review/export.py pipeline/review/clips.py
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pipeline.review.proxy import byte_range
from tests.browser import chromium_page
from pipeline.store.ledger import read_ledger
from tests.harness import cli_env, prompts, run_cli, write_manifest
from tests.review.server_cli import Review

SHOT = Path("/work/shots/issue22-review-remote.png")



@pytest.mark.parametrize("header, size, wanted", [
    (None, 100, None), ("", 100, None), ("bytes=0-", 100, (0, 100)), ("bytes=10-19", 100, (10, 20)),
    ("bytes=90-200", 100, (90, 100)), ("bytes=-10", 100, (90, 100)), ("bytes=-500", 100, (0, 100)),
    ("bytes=100-", 100, False), ("bytes=20-10", 100, False), ("bytes=-0", 100, False),
    ("bytes=0-1,5-6", 100, None), ("items=0-1", 100, None), ("bytes=-", 100, None),
])
def test_byte_range_reads_one_range_as_a_video_element_asks(header, size, wanted):
    assert byte_range(header, size) == wanted


@pytest.fixture(params=["local ledger", "ledger in the bucket"])
def stored(request, emulator_thread, s3, tmp_path):
    """A run of three rows with --out s3://<bucket>/clips, its ledger a local folder or a Delta table
    in the bucket (--state-dir on this machine): (env, bucket, rows by key, objects by key); the
    --ledger options of every later command in `request.node.ledger_args`, its local files' folder
    in `request.node.local`."""
    emu = emulator_thread()
    bucket = s3.bucket()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    env = cli_env(emu.base_url, **s3.env)
    if request.param == "local ledger":
        options, local, book = ["--ledger", str(tmp_path / "ledger.parquet")], tmp_path, tmp_path / "ledger.parquet"
    else:
        options = ["--ledger", s3.url("ledger", bucket), "--state-dir", str(tmp_path / "state")]
        local, book = tmp_path / "state", tmp_path / "state" / "ledger"  # the state folder names the table
    done = run_cli("run", str(manifest), *options, "--out",
                   s3.url("clips", bucket), "--rpm", "0", "--poll-interval", "0.05", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["job_key"]: r for r in read_ledger(book).iter_rows(named=True)}
    objects = {key.removeprefix("clips/videos/").removesuffix(".mp4"): data
               for key, data in s3.objects(bucket, "clips/").items()}
    assert set(objects) == set(rows)
    for key, row in rows.items():
        assert row["output_path"] == f"s3://{bucket}/clips/videos/{key}.mp4"
        assert hashlib.sha256(objects[key]).hexdigest() == row["sha256"]
    return s3.env, bucket, rows, objects, options, local


def test_review_page_plays_a_remote_clip_through_its_proxy(chromium, stored, tmp_path):
    env, bucket, rows, objects, options, local = stored
    server = Review(tmp_path, *options, env=env)
    try:
        key = sorted(rows)[0]
        data = objects[key]
        # Range requests, as <video> seeks with them.
        status, headers, _ = server.request("HEAD", f"/video/{key}")
        assert status == 200 and headers["Content-Length"] == str(len(data)) and headers["Accept-Ranges"] == "bytes"
        conn_bytes = _get(server, f"/video/{key}", {"Range": "bytes=100-1099"})
        assert conn_bytes[0] == 206 and conn_bytes[1]["Content-Range"] == f"bytes 100-1099/{len(data)}"
        assert conn_bytes[2] == data[100:1100]
        assert _get(server, f"/video/{key}", {})[2] == data
        assert _get(server, f"/video/{key}", {"Range": f"bytes={len(data)}-"})[0] == 416
        assert _get(server, "/video/no-such-key", {})[0] == 404
        # The page and its JSON name no store, no endpoint, no signature: only /video/<key>.
        _, _, clips = server.request("GET", "/api/clips")
        _, _, page_html = server.request("GET", "/")
        for text in (clips, page_html):
            assert "s3://" not in text and env["AWS_ENDPOINT_URL"] not in text and "X-Amz" not in text
        assert {c["video"] for c in json.loads(clips)["clips"]} == {f"/video/{k}" for k in rows}

        with chromium_page(chromium, 1300, 900) as page:
            failed: list[str] = []
            page.on("response", lambda r: failed.append(f"{r.status} {urlsplit(r.url).path}") if r.status >= 400 else None)
            page.goto(server.url, wait_until="load")
            page.wait_for_selector("body[data-ready]")
            assert page.locator("article.card").count() == 3
            # Posters of remote clips: fetched once by the server, decoded, served as JPEGs.
            page.wait_for_function("""() => { const i = [...document.querySelectorAll('.card .slot img')];
                return i.length === 2 && i.every(x => x.complete && x.naturalWidth === 320); }""")
            page.locator(f'.card[data-job-key="{key}"] .prompt').click()
            duration = page.evaluate("""() => { const v = document.querySelector('.card.selected video');
                return v.readyState >= 1 ? v.duration : new Promise(done => v.addEventListener('loadedmetadata', () => done(v.duration))); }""")
            assert duration == pytest.approx(rows[key]["duration"], abs=0.5)
            page.evaluate("""() => new Promise(done => { const v = document.querySelector('.card.selected video');
                v.currentTime = Math.min(1.5, v.duration / 2); v.addEventListener('seeked', () => done(), {once: true}); })""")
            assert page.evaluate("() => document.querySelector('.card.selected video').readyState") >= 2
            assert page.evaluate("() => document.querySelector('.card.selected video').currentSrc").endswith(f"/video/{key}")
            SHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOT), full_page=True)
            assert failed == []
        assert (local / ".posters").is_dir() and len(list((local / ".posters").glob("*.jpg"))) == 3
        assert server.decide({"job_key": key, "decision": "approve"})[0] == 200
    finally:
        server.stop()

    # export: the approved remote clip fetched into the folder, its bytes the object's.
    dest = tmp_path / "approved"
    exported = run_cli("export", "--approved", str(dest), *options,
                       env=cli_env("http://127.0.0.1:9", **env), cwd=tmp_path)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "exported 1 approved clips" in exported.stdout
    assert sorted(p.name for p in dest.glob("*.mp4")) == [f"{key}.mp4"]
    assert (dest / f"{key}.mp4").read_bytes() == data
    assert json.loads((dest / "approved.json").read_text())[0]["sha256"] == rows[key]["sha256"]


def test_report_links_remote_clips_by_presigned_urls(stored, tmp_path):
    env, bucket, rows, objects, options, local = stored
    done = run_cli("report", *options,
                   env=cli_env("http://127.0.0.1:9", **env), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    page = (local / "report.html").read_text()  # the report goes beside the ledger's local files
    assert re.search(r"presigned links that expire on \d{4}-\d\d-\d\d \d\d:\d\d UTC", page)
    links = re.findall(r'<video[^>]* src="([^"]+)"', page)
    assert len(links) == 3 and env["AWS_SECRET_ACCESS_KEY"] not in page
    for link in links:
        url = link.replace("&amp;", "&")
        assert "X-Amz-Signature=" in url and "X-Amz-Expires=604800" in url
        key = urlsplit(url).path.rsplit("/", 1)[-1].removesuffix(".mp4")
        with urllib.request.urlopen(url) as answer:  # the link alone plays the clip
            assert answer.read() == objects[key]


def _get(server: Review, path: str, headers: dict) -> tuple[int, dict, bytes]:
    import http.client  # noqa: the Review helper decodes bodies as text; a video needs its bytes

    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()
