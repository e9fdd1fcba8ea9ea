"""`videobatch review` and `export`: the page in headless Chromium, the decisions log, and the runs
that act on it, all real: the CLI in child processes, the emulator over loopback.

Covers: pipeline/review/page.py (the page, its script and style, driven in Chromium by the first test)
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import pytest

from pipeline.store.verdicts import verdicts_path
from pipeline.store.ledger import Ledger
from pipeline.store.runs import read_runs
from tests.browser import PNG_SIGNATURE, chromium_page
from tests.harness import (
    REPO, cli_env, jobs_per_key, ledger, prompts, run_args, run_cli, start_cli, wait_for, write_manifest,
)
from tests.review.server_cli import OFFLINE

NO_KEY = cli_env("http://127.0.0.1:9", key=None)  # plan without a key prices from files, asks no balance
KOI_PNG = REPO / "manifests" / "refs" / "koi.png"
EDITED = "A paper boat sails through a sunlit rain puddle, macro lens, golden hour"
SCREENSHOT = REPO / "outputs" / "review-screenshot.png"


def batch_jobs() -> list[dict]:
    return [
        {"id": "hero", "prompt": "A red kite over a windy <b>beach</b>", "campaign": "spring", "owner": "ana"},
        {"id": "koi", "prompt": "Neon koi fish swimming through a night-time city street", "duration": 10,
         "aspect_ratio": "9:16", "reference_images": ["koi.png"]},
        {"id": "boat", "prompt": "A paper boat in a puddle", "aspect_ratio": "1:1"},
        {"id": "extra", "prompt": "Fog rolling over a quiet harbour", "aspect_ratio": "4:3"},
    ]


@pytest.fixture(autouse=True)
def koi_beside_the_manifest(tmp_path):
    """batch_jobs() names koi.png beside the manifest: images must lie under the manifest's folder."""
    shutil.copy(KOI_PNG, tmp_path / "koi.png")


@pytest.fixture
def made(emulator_thread, tmp_path):
    """One real run of four rows, all DOWNLOADED: (emulator, manifest, ledger rows by key)."""
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", batch_jobs())
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["job_key"]: r for r in ledger(tmp_path).iter_rows(named=True)}
    assert set(rows) == {"hero", "koi", "boat", "extra"}
    return emu, manifest, rows


def plan(tmp: Path, manifest: Path) -> subprocess.CompletedProcess:
    done = run_cli("plan", str(manifest), "--ledger", str(tmp / "ledger.parquet"), env=NO_KEY, cwd=tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def log_lines(tmp: Path) -> list[dict]:
    path = verdicts_path(tmp / "ledger.parquet")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- the page, then the runs that act on it ----------------------------------------------------


def test_review_page_decisions_last_and_the_next_runs_act_on_them(chromium, made, review_server, tmp_path):
    emu, manifest, before = made
    server = review_server(tmp_path)
    problems: list[str] = []
    with chromium_page(chromium, 1400, 1000) as page:
        failed: list[tuple[int, str]] = []
        page.on("response", lambda r: failed.append((r.status, urlsplit(r.url).path)) if r.status >= 400 else None)
        # A refused resource is listed by the response handler above; any other console error is a problem.
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.goto(server.url, wait_until="load")
        page.wait_for_selector("body[data-ready]")
        cards = page.locator("article.card")
        assert cards.count() == 4
        assert [c.get_attribute("data-job-key") for c in cards.all()] == ["hero", "koi", "boat", "extra"]
        hero = page.locator('.card[data-job-key="hero"]')
        assert hero.locator(".prompt").inner_text() == before["hero"]["prompt"]  # markup shown as text
        assert hero.locator(".credits").inner_text() == "10 / 10 cr"
        assert "campaign" in hero.locator("dl.metadata").inner_text()
        # The reference image and the videos load from the server.
        page.wait_for_function("""() => { const i = document.querySelector('.card[data-job-key="koi"] .refs img');
                                          return i && i.complete && i.naturalWidth > 0; }""")
        # Posters, not players: every card shows its poster (a JPEG the server made); only the
        # selected card holds a <video>, and it plays the clip's file.
        page.wait_for_function("""() => [...document.querySelectorAll('.card .slot img')].length === 3
            && [...document.querySelectorAll('.card .slot img')].every(i => i.complete && i.naturalWidth === 320)""")
        assert page.locator("video").count() == 1 and page.locator(".card.selected video").count() == 1
        durations = []
        for key in ("hero", "koi", "boat", "extra"):
            page.locator(f'.card[data-job-key="{key}"] .prompt').click()
            assert page.locator("video").count() == 1
            durations.append(page.evaluate("""() => { const v = document.querySelector('.card.selected video');
                return v.readyState >= 1 ? v.duration : new Promise(done => v.addEventListener('loadedmetadata', () => done(v.duration))); }"""))
        assert durations == [pytest.approx(before[k]["duration"], abs=0.5) for k in ("hero", "koi", "boat", "extra")]
        page.locator('.card[data-job-key="hero"] .prompt').click()

        # Keyboard: the first card is selected; space plays and pauses it; `a` approves it.
        assert page.locator(".card.selected").get_attribute("data-job-key") == "hero"
        page.keyboard.press("Space")
        assert page.evaluate("() => !document.querySelector('.card.selected video').paused")
        page.keyboard.press("Space")
        assert page.evaluate("() => document.querySelector('.card.selected video').paused")
        page.keyboard.press("a")
        page.wait_for_selector('.card[data-job-key="hero"] .state.saved')
        assert [(d["job_key"], d["decision"]) for d in log_lines(tmp_path)] == [("hero", "approve")]

        # Mouse: reject koi with a note.
        koi = page.locator('.card[data-job-key="koi"]')
        koi.locator(".actions .reject").click()
        koi.locator(".form.reject textarea").fill("fish look plastic; keep the colours")
        koi.locator(".form.reject .save").click()
        page.wait_for_selector('.card[data-job-key="koi"] .state.saved')

        # Keyboard again: j to boat, g, edit the prompt, Ctrl+Enter.
        page.keyboard.press("j")
        assert page.locator(".card.selected").get_attribute("data-job-key") == "boat"
        page.keyboard.press("g")
        box = page.locator('.card[data-job-key="boat"] .form.regenerate textarea')
        assert box.evaluate("el => el === document.activeElement")
        box.fill(EDITED)
        box.press("Control+Enter")
        page.wait_for_selector('.card[data-job-key="boat"] .state.saved')
        assert "next run: " + EDITED in page.locator('.card[data-job-key="boat"] .pending').inner_text()

        # An edited prompt the model refuses: the page says why, nothing is written.
        page.keyboard.press("Escape")
        page.keyboard.press("j")
        assert page.locator(".card.selected").get_attribute("data-job-key") == "extra"
        page.keyboard.press("g")
        extra_box = page.locator('.card[data-job-key="extra"] .form.regenerate textarea')
        extra_box.fill("x" * 5001)
        extra_box.press("Control+Enter")
        page.wait_for_selector('.card[data-job-key="extra"] .state.error')
        error = page.locator('.card[data-job-key="extra"] .state.error').inner_text()
        assert "prompt: 5001 characters, at most 5000" in error, error
        assert len(log_lines(tmp_path)) == 3
        page.keyboard.press("Escape")

        # Filters by decision and by status.
        page.click('#decision-filters button[data-decision="approve"]')
        assert [c.get_attribute("data-job-key") for c in cards.all() if c.is_visible()] == ["hero"]
        page.click('#decision-filters button[data-decision="undecided"]')
        assert [c.get_attribute("data-job-key") for c in cards.all() if c.is_visible()] == ["extra"]
        page.click('#decision-filters button[data-decision="ALL"]')
        page.click('#status-filters button[data-status="DOWNLOADED"]')
        assert sum(c.is_visible() for c in cards.all()) == 4
        page.click('#status-filters button[data-status="ALL"]')
        page.locator('.card[data-job-key="hero"]').click()
        page.evaluate("() => window.scrollTo(0, 0)")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        wanted = {"hero": "approve", "koi": "reject", "boat": "regenerate", "extra": "undecided"}
        page.reload(wait_until="load")
        page.wait_for_selector("body[data-ready]")
        assert {c.get_attribute("data-job-key"): c.get_attribute("data-decision") for c in cards.all()} == wanted
        assert "fish look plastic" in page.locator('.card[data-job-key="koi"] .said').inner_text()

        server.stop()
        server = review_server(tmp_path)
        page.goto(server.url, wait_until="load")
        page.wait_for_selector("body[data-ready]")
        assert {c.get_attribute("data-job-key"): c.get_attribute("data-decision") for c in cards.all()} == wanted
        assert "by ana" in page.locator('.card[data-job-key="boat"] .said').inner_text()
    assert not problems, problems
    assert failed == [(400, "/api/decisions")]  # the refused prompt, and nothing else
    assert SCREENSHOT.read_bytes().startswith(PNG_SIGNATURE)

    # The log holds what the page showed.
    logged = log_lines(tmp_path)
    assert [(d["job_key"], d["decision"], d["reviewer"]) for d in logged] == [
        ("hero", "approve", "ana"), ("koi", "reject", "ana"), ("boat", "regenerate", "ana")]
    assert logged[1]["note"] == "fish look plastic; keep the colours"
    assert logged[2]["prompt"] == EDITED and logged[2]["reviewed"] == before["boat"]["idempotency_key"]

    # status and the static report show the decisions.
    status = run_cli("status", "--ledger", str(tmp_path / "ledger.parquet"), "--json", env=OFFLINE, cwd=tmp_path)
    assert json.loads(status.stdout)["review"] == {"approve": 1, "reject": 1, "regenerate": 1, "undecided": 1}
    report = run_cli("report", "--ledger", str(tmp_path / "ledger.parquet"), env=OFFLINE, cwd=tmp_path)
    text = (tmp_path / "report.html").read_text()
    assert report.returncode == 0 and 'class="review reject">rejected by ana: fish look plastic' in text

    # plan prices exactly the regenerate row and says it comes from review.
    planned = plan(tmp_path, manifest).stdout
    assert re.search(r"boat .*1:1 +10  regenerate \(review decision, edited prompt\)", planned), planned
    assert "from review decisions, not the manifest: 1 to regenerate (10 credits)" in planned
    assert "a run would spend at most 10 credits" in planned

    # run makes it once; the earlier video is kept as a version.
    env = cli_env(emu.base_url)
    done = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    per_key = jobs_per_key(emu.stats())
    assert {k: len(v) for k, v in per_key.items()} == {"hero": 1, "koi": 1, "boat": 2, "extra": 1}
    assert per_key["boat"][1]["prompt"] == EDITED
    rows = {r["job_key"]: r for r in ledger(tmp_path).iter_rows(named=True)}
    archived = [k for k in rows if k.startswith("boat@")]
    assert len(archived) == 1 and rows[archived[0]]["prompt"] == before["boat"]["prompt"]
    assert rows[archived[0]]["sha256"] == before["boat"]["sha256"] and Path(rows[archived[0]]["output_path"]).exists()
    assert rows["boat"]["prompt"] == EDITED and rows["boat"]["status"] == "DOWNLOADED"
    assert rows["boat"]["job_id"] == per_key["boat"][1]["id"] and Path(rows["boat"]["output_path"]).exists()
    for key in ("hero", "koi", "extra"):
        assert rows[key]["job_id"] == before[key]["job_id"]
    assert sum(r["credits_charged"] for r in rows.values()) == emu.stats()["credits"]["charged"]

    # Two later runs: the edited row is not made again (the manifest still says the old prompt),
    # the rejected one is not regenerated, the manifest file is untouched.
    manifest_text = manifest.read_text()
    for _ in range(2):
        assert "a run would spend at most 0 credits" in plan(tmp_path, manifest).stdout
        again = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        assert len(emu.stats()["jobs"]) == 5
    assert manifest.read_text() == manifest_text
    assert ledger(tmp_path).filter(pl.col("job_key") == "boat")["prompt"].to_list() == [EDITED]

    # export: exactly the approved clip (boat's regeneration is a new clip, not yet reviewed).
    dest = tmp_path / "approved"
    exported = run_cli("export", "--approved", str(dest), "--ledger", str(tmp_path / "ledger.parquet"),
                       "--run", "all", env=OFFLINE, cwd=tmp_path)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["approved.csv", "approved.json", "hero.mp4"]
    assert (dest / "hero.mp4").read_bytes() == Path(rows["hero"]["output_path"]).read_bytes()
    sidecar = json.loads((dest / "approved.json").read_text())
    assert len(sidecar) == 1
    entry = sidecar[0]
    assert entry["job_key"] == "hero" and entry["prompt"] == rows["hero"]["prompt"]
    assert entry["metadata"] == {"campaign": "spring", "owner": "ana"}
    assert entry["credits_charged"] == 10 and entry["reviewer"] == "ana" and entry["note"] is None
    assert entry["sha256"] == rows["hero"]["sha256"] and entry["file"] == "hero.mp4"
    with open(dest / "approved.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["job_key"], r["prompt"], r["reviewer"], r["credits_charged"]) for r in table] == [
        ("hero", rows["hero"]["prompt"], "ana", "10")]
    assert json.loads(table[0]["metadata"]) == entry["metadata"]


# --- a review while a batch runs ---------------------------------------------------------------


def test_a_review_during_a_running_batch_changes_nothing_in_it(made, review_server, tmp_path):
    emu, manifest, before = made
    emu.configure(time_scale=0.05)  # 1.5-7.5 s generations: the batch is still running while we review
    grown = batch_jobs() + prompts(6, "night")
    write_manifest(manifest, grown)
    env = cli_env(emu.base_url)
    proc = start_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    try:
        assert wait_for(lambda: len(emu.stats()["jobs"]) >= 6, timeout=30)
        server = review_server(tmp_path, "--run", "all")  # `last` is the finished run; all shows the live rows too
        csrf = server.csrf()
        assert proc.poll() is None
        for body in ({"job_key": "hero", "decision": "approve"},
                     {"job_key": "koi", "decision": "reject", "note": "too dark"},
                     {"job_key": "boat", "decision": "regenerate", "prompt": EDITED}):
            status, answer = server.decide(body, csrf=csrf)
            assert status == 200 and answer["saved"], answer
            assert proc.poll() is None  # answered while the run still holds the ledger: nothing waited for it
        live = [r["job_key"] for r in ledger(tmp_path).iter_rows(named=True)
                if r["status"] not in ("DOWNLOADED", "FAILED", "REJECTED")]
        assert live
        status, answer = server.decide({"job_key": live[0], "decision": "regenerate"}, csrf=csrf)
        assert status == 409 and "once its run has finished it" in answer["error"]
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out

    # The batch went exactly as it would have without the review.
    rows = {r["job_key"]: r for r in ledger(tmp_path).iter_rows(named=True)}
    per_key = jobs_per_key(emu.stats())
    assert len(rows) == 10 and all(r["status"] == "DOWNLOADED" for r in rows.values())
    assert {k: len(v) for k, v in per_key.items()} == {k: 1 for k in rows}
    for key, old in before.items():
        assert {c: rows[key][c] for c in ("job_id", "sha256", "prompt", "attempts")} == \
               {c: old[c] for c in ("job_id", "sha256", "prompt", "attempts")}
    last_run = read_runs(tmp_path / "ledger.parquet").sort("started_at").row(-1, named=True)
    assert last_run["rows_submitted"] == 6 and last_run["exit_code"] == 0
    with Ledger.open(tmp_path / "ledger.parquet", run_id="check"):  # opens cleanly, no repair needed
        pass
    assert [d["job_key"] for d in log_lines(tmp_path)] == ["hero", "koi", "boat"]
    # ...and the next plan takes the decision up.
    assert "1 to regenerate (10 credits)" in plan(tmp_path, manifest).stdout


# --- refusals -----------------------------------------------------------------------------------


def test_bad_decisions_are_refused_and_nothing_is_written(emulator_thread, review_server, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", batch_jobs()[:2])
    env = cli_env(emu.base_url)
    assert run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path).returncode == 0
    write_manifest(manifest, batch_jobs())  # a second run adds boat and extra
    assert run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path).returncode == 0
    server = review_server(tmp_path)  # --run last: boat and extra only
    csrf = server.csrf()
    log = verdicts_path(tmp_path / "ledger.parquet")

    refused = [
        ({"job_key": "nope", "decision": "approve"}, 404, "unknown job_key 'nope'"),
        ({"job_key": "hero", "decision": "approve"}, 403, "not in this review's scope"),
        ({"job_key": "boat", "decision": "regenerate", "prompt": "   "}, 400, "edited prompt of boat: prompt: empty"),
        ({"job_key": "boat", "decision": "regenerate", "prompt": "y" * 5001}, 400, "5001 characters, at most 5000"),
        ({"job_key": "boat", "decision": "approve", "prompt": EDITED}, 400, "goes with regenerate only"),
        ({"job_key": "boat", "decision": "keep"}, 400, "decision must be one of approve, reject, regenerate"),
        ({"job_key": "boat", "decision": "reject", "note": "n" * 2001}, 400, "note is 2001 characters"),
        ({"decision": "approve"}, 400, "job_key is missing"),
        (["boat"], 400, "send a JSON object"),
    ]
    for body, code, message in refused:
        status, answer = server.decide(body, csrf=csrf)
        assert (status, message in answer["error"]) == (code, True), (body, status, answer)
    # Cross-site forgery and DNS rebinding.
    ok = {"job_key": "boat", "decision": "approve"}
    status, answer = server.decide(ok, csrf="forged")
    assert status == 403 and "X-CSRF-Token" in answer["error"]
    status, answer = server.decide(ok, csrf=csrf, headers={"Origin": "https://evil.example"})
    assert status == 403 and "evil.example" in answer["error"]
    status, answer = server.decide(ok, csrf=csrf, headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403
    status, _, _ = server.request("POST", "/api/decisions", "job_key=boat&decision=approve",
                                  {"Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": csrf})
    assert status == 403
    status, _, _ = server.request("GET", "/api/clips", headers={"Host": f"evil.example:{server.port}"})
    assert status == 421
    assert not log.exists()  # nothing was written by any of them

    # Videos: only a scoped row's file inside the output folder; anything else is 404.
    assert server.request("GET", "/video/boat")[0] == 200
    for path in ("/video/hero", "/video/nope", "/video/..%2F..%2Fetc%2Fpasswd", "/video/../ledger.parquet",
                 "/reference/boat/0", "/reference/extra/x"):
        assert server.request("GET", path)[0] == 404, path
    server.stop()
    with Ledger.open(tmp_path / "ledger.parquet", run_id="tamper") as writable:
        writable.record("extra", output_path="/etc/hostname")  # a row whose path leaves the output folder
    server = review_server(tmp_path, "--run", "all")
    assert server.request("GET", "/video/extra")[0] == 404
    assert server.request("GET", "/video/hero")[0] == 200
    assert server.request("GET", "/reference/koi/0")[1]["Content-Type"] == "image/png"
    assert not log.exists()


def test_host_mode_needs_the_printed_token_and_never_logs_it(made, review_server, tmp_path):
    server = review_server(tmp_path, "--host", "127.0.0.1")
    token = re.search(r"\?token=([\w-]+)$", server.link).group(1)
    assert server.request("GET", "/api/clips")[0] == 401
    assert server.request("GET", "/video/hero")[0] == 401
    assert server.request("GET", "/poster/hero")[0] == 401  # the endpoints issue 20 added: behind the token too
    assert server.request("GET", "/api/version")[0] == 401
    assert server.request("GET", "/?token=wrong")[0] == 403
    status, headers, _ = server.request("GET", f"/?token={token}")
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    assert server.request("GET", "/api/clips", headers={"Cookie": cookie})[0] == 200
    assert server.request("GET", "/api/clips", headers={"X-Review-Token": token})[0] == 200
    assert server.request("GET", "/poster/hero", headers={"Cookie": cookie})[0] == 200
    for key in ("..%2F..%2Fledger.parquet", "%2E%2E", "hero%2F..%2F..%2Fm.yaml"):  # a key is looked up, never a path
        assert server.request("GET", f"/poster/{key}", headers={"Cookie": cookie})[0] == 404, key
    damaged = Path(made[2]["koi"]["output_path"])  # a video cut short on disk: no poster, no traceback
    damaged.write_bytes(damaged.read_bytes()[:300])
    assert server.request("GET", "/poster/koi", headers={"Cookie": cookie})[0] == 404
    status, answer = server.decide({"job_key": "hero", "decision": "approve"}, headers={"Cookie": cookie})
    assert status == 200 and answer["saved"]
    output = server.stop()
    assert output.count(token) == 1  # the link printed at the start, and nowhere else
    assert "Traceback" not in output, output
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".jsonl", ".json", ".parquet", ".html", ".yaml"):
            assert token.encode() not in path.read_bytes(), path


# --- edge cases of acting on decisions ----------------------------------------------------------


def test_a_regeneration_cut_off_after_archiving_still_makes_a_new_video(made, review_server, tmp_path):
    """A run killed between archiving the old version and journaling the new attempt leaves no row
    under the key; the next run must still regenerate (a new Idempotency-Key, so not the old job
    handed back) and the reviewer's edit must still stand."""
    emu, manifest, before = made
    server = review_server(tmp_path, "--run", "all")
    for body in ({"job_key": "boat", "decision": "regenerate", "prompt": EDITED},
                 {"job_key": "extra", "decision": "regenerate"}):
        assert server.decide(body)[0] == 200
    with Ledger.open(tmp_path / "ledger.parquet", run_id="cut") as writable:  # what _archive_old_version does first
        writable.rename("boat", "boat@cut")
    planned = plan(tmp_path, manifest).stdout
    assert "2 to regenerate (20 credits)" in planned, planned
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    per_key = jobs_per_key(emu.stats())
    assert {k: len(v) for k, v in per_key.items()} == {"hero": 1, "koi": 1, "boat": 2, "extra": 2}
    rows = {r["job_key"]: r for r in ledger(tmp_path).iter_rows(named=True)}
    assert rows["boat"]["prompt"] == EDITED and rows["boat"]["attempts"] == 2
    assert rows["extra"]["job_id"] != before["extra"]["job_id"] and rows["extra"]["prompt"] == before["extra"]["prompt"]
    assert rows["extra"]["job_id"] == per_key["extra"][1]["id"]  # a new job, not the old one handed back
    assert rows["extra"]["idempotency_key"].startswith("vb-extra-a2-")
    assert "a run would spend at most 0 credits" in plan(tmp_path, manifest).stdout


def test_editing_the_manifest_row_after_a_review_edit_lets_the_manifest_win(made, review_server, tmp_path):
    emu, manifest, _ = made
    server = review_server(tmp_path, "--run", "all")
    assert server.decide({"job_key": "boat", "decision": "regenerate", "prompt": EDITED})[0] == 200
    env = cli_env(emu.base_url)
    assert run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path).returncode == 0
    jobs = batch_jobs()
    jobs[2]["prompt"] = "A paper boat in a puddle at night"
    write_manifest(manifest, jobs)
    planned = plan(tmp_path, manifest).stdout
    assert re.search(r"boat .* new-version$", planned, re.M) and "from review" not in planned, planned
    assert run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path).returncode == 0
    assert ledger(tmp_path).filter(pl.col("job_key") == "boat")["prompt"].to_list() == [jobs[2]["prompt"]]
    assert len(jobs_per_key(emu.stats())["boat"]) == 3


def test_review_and_export_refuse_a_manifest_this_ledger_never_ran(made, tmp_path):
    _, manifest, _ = made
    typo = tmp_path / "n.yaml"
    for command in (["review", "--port", "0"], ["export", "--approved", str(tmp_path / "approved")]):
        done = run_cli(*command, "--ledger", str(tmp_path / "ledger.parquet"), "--manifest", str(typo),
                       env=OFFLINE, cwd=tmp_path, timeout=30)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"no run of {typo} in this ledger" in done.stderr and str(manifest.resolve()) in done.stderr
    assert not (tmp_path / "approved").exists()  # nothing was exported
