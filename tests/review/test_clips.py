"""The review page keeps up: a thousand clips paged in, a later run picked up without a reload, and
a regenerated clip's earlier take played beside the new one. Real Chromium, the real CLI in child
processes, the emulator over loopback; screenshots land in /work/shots/ (or outputs/) to look at.

Covers: pipeline/review/clips.py pipeline/reports/gallery.py (an earlier take's card)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from benchmarks.workloads import write_review_ledger
from tests.browser import PNG_SIGNATURE, chromium_page
from tests.harness import REPO, cli_env, jobs_per_key, ledger, run_args, run_cli, write_manifest

SHOTS = Path(os.environ.get("VB_SHOTS", "/work/shots" if Path("/work/shots").is_dir() else REPO / "outputs"))
EDITED = "A paper boat sails through a sunlit rain puddle, macro lens, golden hour"
SELECTED = "() => document.querySelector('.card.selected').dataset.jobKey"


def jobs() -> list[dict]:
    return [{"id": "hero", "prompt": "A red kite over a windy beach"},
            {"id": "boat", "prompt": "A paper boat in a puddle", "aspect_ratio": "1:1"},
            {"id": "extra", "prompt": "Fog rolling over a quiet harbour", "aspect_ratio": "4:3"}]


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path))
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    return path


def test_an_open_page_shows_a_later_runs_new_take_beside_the_earlier_one(chromium, emulator_thread, review_server,
                                                                        tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", jobs())
    env = cli_env(emu.base_url)
    assert run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path).returncode == 0
    before = {r["job_key"]: r for r in ledger(tmp_path).iter_rows(named=True)}
    server = review_server(tmp_path)  # --run last: this run, and every later one
    with chromium_page(chromium, 1400, 1000) as page:
        page.goto(server.url, wait_until="load")
        page.wait_for_selector("body[data-ready]")
        page.evaluate("() => { window.notReloaded = true; }")
        assert page.locator("article.card").count() == 3 and page.locator(".takes").count() == 0

        # A reviewer asks for boat again with a new prompt; the manifest gains a row; a run makes both.
        status, answer = server.decide({"job_key": "boat", "decision": "regenerate", "prompt": EDITED})
        assert status == 200 and answer["saved"], answer
        write_manifest(manifest, [*jobs(), {"id": "fog", "prompt": "Morning fog lifts off a lake"}])
        done = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr

        # Without a reload: the new clip, and boat's new take with its earlier one. The page shows
        # the run's steps as it polls; wait until it has caught up with the finished run.
        settled = json.loads(server.request("GET", "/api/version")[2])["version"]
        page.wait_for_function(f"() => document.body.dataset.version === {settled!r}")
        page.wait_for_selector('.card[data-job-key="fog"]')
        assert page.evaluate("() => window.notReloaded === true")
        assert [c.get_attribute("data-job-key") for c in page.locator("article.card").all()] == [
            "hero", "boat", "extra", "fog"]  # the earlier run's clips stay in scope
        boat = page.locator('.card[data-job-key="boat"]')
        assert boat.locator(".prompt").inner_text() == EDITED
        assert boat.locator(".fresh").inner_text() == "new take"
        assert page.locator('.card[data-job-key="fog"] .fresh').inner_text() == "new"
        assert page.locator('.card[data-job-key="hero"] .fresh').count() == 0
        assert re.fullmatch(r"[12] clips? new or remade by a run · \d\d:\d\d:\d\d UTC", page.locator("#live").inner_text())
        assert boat.locator(".takes button").inner_text() == "1 earlier take: compare"

        # `t` on the selected card: the current and the earlier take side by side, each playable.
        boat.locator(".prompt").click()
        page.keyboard.press("t")
        assert "comparing" in boat.get_attribute("class")
        archived = [k for k in ledger(tmp_path)["job_key"].to_list() if k.startswith("boat@")]
        assert len(archived) == 1
        sources = boat.locator("video").evaluate_all("vs => vs.map(v => new URL(v.src).pathname)")
        assert sources == ["/video/boat", f"/video/{archived[0]}"]
        durations = boat.locator("video").evaluate_all("""vs => Promise.all(vs.map(v => v.readyState >= 1 ? v.duration
            : new Promise(done => v.addEventListener('loadedmetadata', () => done(v.duration)))))""")
        assert durations == [pytest.approx(6, abs=0.5)] * 2
        captions = boat.locator(".slot .caption").all_inner_texts()
        assert captions[0].startswith("current take · ") and captions[0].endswith(" · 10 cr")
        assert captions[1].startswith("earlier take 1 · ") and " · 10 cr" in captions[1]
        assert "“A paper boat in a puddle”" in captions[1]  # the prompt it was made from
        page.keyboard.press("Space")
        page.wait_for_function("() => [...document.querySelectorAll('.card.selected video')].every(v => !v.paused)")
        page.wait_for_timeout(700)  # a frame or two in, for the screenshot
        page.keyboard.press("Space")
        boat.scroll_into_view_if_needed()
        shot(page, "review-earlier-takes.png")
        page.keyboard.press("t")
        assert "comparing" not in boat.get_attribute("class") and boat.locator("video").count() == 1

        # The earlier take is served (video and poster) as part of its clip; it cannot be decided on.
        assert server.request("GET", f"/video/{archived[0]}")[0] == 200
        assert server.request("GET", f"/poster/{archived[0]}")[1]["Content-Type"] == "image/jpeg"
        status, answer = server.decide({"job_key": archived[0], "decision": "approve"})
        assert status == 409 and "decide on boat instead" in answer["error"]

    # The static report puts the earlier take right after the current one, and says what it is.
    made = run_cli("report", "--ledger", str(tmp_path / "ledger.parquet"), env=cli_env("http://127.0.0.1:9"), cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    html = (tmp_path / "report.html").read_text()
    keys = re.findall(r'<article class="card" data-status="\w+" data-job-key="([^"]+)"', html)
    assert keys[keys.index("boat") + 1] == archived[0]
    assert f'data-job-key="{archived[0]}"' in html and "earlier take of boat, kept with its video" in html

    # The books: one paid job per wanted row and take, the ledger's credits the emulator's.
    per_key = {k: len(v) for k, v in jobs_per_key(emu.stats()).items()}
    assert per_key == {"hero": 1, "boat": 2, "extra": 1, "fog": 1}
    rows = {r["job_key"]: r for r in ledger(tmp_path).iter_rows(named=True)}
    assert rows[archived[0]]["job_id"] == before["boat"]["job_id"]
    assert sum(r["credits_charged"] or 0 for r in rows.values()) == emu.stats()["credits"]["charged"]


def test_a_thousand_clips_come_in_pages_with_posters_and_the_keys_move_through_them(chromium, review_server,
                                                                                   tmp_path):
    write_review_ledger(tmp_path, 1000)
    server = review_server(tmp_path, "--run", "all")
    with chromium_page(chromium, 1400, 1000) as page:
        page.goto(server.url, wait_until="load")
        page.wait_for_selector("body[data-ready]")
        assert page.locator('#decision-filters button[data-decision="ALL"]').inner_text() == "all (1000)"
        assert page.locator("article.card").count() == 48  # the first chunk only
        assert page.locator("video").count() == 1  # the selected card's; the rest show posters
        page.wait_for_function("""() => [...document.querySelectorAll('.card')].filter(c => c.getBoundingClientRect().top < innerHeight)
            .every(c => c.querySelector('video') || (c.querySelector('.slot img').complete && c.querySelector('.slot img').naturalWidth > 0))""")
        assert page.locator('.slot img[loading="lazy"]').count() == 47
        shot(page, "review-1000-clips.png")

        # Scrolling near the end renders the next chunk; j past the rendered cards renders ahead.
        page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_function("() => document.querySelectorAll('article.card').length >= 96")
        for _ in range(120):
            page.keyboard.press("j")
        assert page.evaluate(SELECTED) == page.evaluate("() => document.querySelectorAll('.card')[120].dataset.jobKey")
        assert page.locator("video").count() == 1  # the card left behind gave its player back
        page.keyboard.press("a")
        page.wait_for_selector(".card.selected .state.saved")
        page.click('#decision-filters button[data-decision="approve"]')
        assert page.locator("article.card").count() == 1
        assert page.locator('#decision-filters button[data-decision="undecided"]').inner_text() == "undecided (999)"

        # Reviewing the undecided ones: a decided card leaves the view and the next one takes the focus.
        page.click('#decision-filters button[data-decision="undecided"]')
        first, second = page.locator("article.card").evaluate_all("cs => cs.slice(0, 2).map(c => c.dataset.jobKey)")
        assert page.evaluate(SELECTED) == first
        page.keyboard.press("a")
        page.wait_for_function(f"() => ({SELECTED})() === {second!r}")
        assert page.locator(f'.card[data-job-key="{first}"]').count() == 0
        assert page.locator('#decision-filters button[data-decision="undecided"]').inner_text() == "undecided (998)"
