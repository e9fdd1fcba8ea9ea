"""The morning after a night of comparison: the review page shows the takes of one prompt side by
side (across models, aspect ratios, params and earlier takes), each with its model, params,
credits and generation time, and every decision is still per take. Real Chromium, the real
`videobatch review` in a child process: over a ledger of several models and a matrix with a failed
and an earlier take (tests/review/takes_ledger.py), and over the ledger a real run against the
emulator leaves. The screenshots land in /work/shots/ (or outputs/) to look at.

Covers: pipeline/review/page.py (the groups, their players and J / K) pipeline/review/clips.py (the grouped order)
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from benchmarks.workloads import write_finished_ledger
from pipeline.emulator.video import render_clip
from pipeline.models import MODELS
from pipeline.store.verdicts import verdicts_path
from tests.browser import chromium_page
from tests.harness import cli_env, jobs_per_key, ledger, run_args, run_cli, write_manifest
from tests.review.takes_ledger import BOAT, EARLIER, FAILED_KEY, KEEPER, LIGHTHOUSE, jobs, write_takes_ledger
from tests.review.test_clips import SELECTED, shot

LIGHTHOUSE_KEYS = ["lighthouse-grok-imagine-video-16x9", "lighthouse-grok-imagine-video-9x16",
                   "lighthouse-kling-3.0-16x9", "lighthouse-kling-3.0-9x16",
                   "lighthouse-veo-3.1-fast-16x9", "lighthouse-veo-3.1-fast-9x16"]
TAKE_FACTS = """cs => cs.map(c => [c.querySelector('.model').textContent, c.querySelector('.ratio').textContent,
    c.querySelector('.credits').textContent, c.querySelector('.generation') ? c.querySelector('.generation').textContent : null])"""
DURATIONS = """vs => Promise.all(vs.map(v => v.readyState >= 1 ? v.duration
    : new Promise(done => v.addEventListener('loadedmetadata', () => done(v.duration)))))"""


def log_lines(tmp) -> list[tuple[str, str]]:
    path = verdicts_path(tmp / "ledger.parquet")
    return [(d["job_key"], d["decision"]) for d in map(json.loads, path.read_text().splitlines())] if path.exists() else []


def ledger_files(tmp) -> dict[str, str]:
    folder = tmp / "ledger.parquet"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def test_the_takes_of_a_prompt_side_by_side_each_decided_on_its_own(chromium, review_server, tmp_path):
    write_takes_ledger(tmp_path)
    books = ledger_files(tmp_path)
    server = review_server(tmp_path, "--run", "all")  # a ledger written without a run: every row
    problems: list[str] = []
    with chromium_page(chromium, 1400, 1300) as page:
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.goto(server.url, wait_until="load")
        page.wait_for_selector("body[data-ready]")

        # A box per prompt with more than one take, in the order of its first take; a lone take is a card.
        boxes = page.locator("section.group")
        assert [b.locator(".group-prompt").inner_text() for b in boxes.all()] == [LIGHTHOUSE, KEEPER]
        keys = [c.get_attribute("data-job-key") for c in page.locator("article.card").all()]
        assert keys == [*LIGHTHOUSE_KEYS, "keeper", "keeper-draft", "boat"]
        lighthouse, keeper = boxes.nth(0), boxes.nth(1)
        assert lighthouse.locator(".group-sum").inner_text() == "6 takes · 3 models · 175 cr charged"
        assert keeper.locator(".group-sum").inner_text() == "2 takes · 2 models · 45 cr charged"
        boat = page.locator('.card[data-job-key="boat"]')
        assert boat.evaluate("c => c.parentElement.id") == "grid"  # as a card looked before
        assert boat.locator(".prompt").inner_text() == BOAT and boat.locator(".prompt").is_visible()
        assert not lighthouse.locator(".card .prompt").first.is_visible()  # said once, above the takes

        # Each take: its model, shape, credits ("up to" the catalog's bound) and generation time.
        assert lighthouse.locator(".card").evaluate_all(TAKE_FACTS) == [
            ["grok-imagine-video", "16:9", "10 / 10 cr", "made in 38 s"],
            ["grok-imagine-video", "9:16", "10 / 10 cr", "made in 38 s"],
            ["kling-3.0", "16:9", "35 / up to 42 cr", "made in 2 m 21 s"],
            ["kling-3.0", "9:16", "0 / up to 42 cr", None],
            ["veo-3.1-fast", "16:9", "60 / up to 90 cr", "made in 1 m 35 s"],
            ["veo-3.1-fast", "9:16", "60 / up to 90 cr", "made in 1 m 35 s"]]
        veo = page.locator('.card[data-job-key="lighthouse-veo-3.1-fast-16x9"] .credits')
        assert veo.get_attribute("title") == "credits charged / estimated (an upper bound from the catalog's prices)"
        params = page.locator('.card[data-job-key="keeper"] .params li')
        assert params.all_inner_texts() == ["mode pro", "negative_prompt blurry, low detail, washed-out…"]
        assert params.nth(1).get_attribute("title") == "negative_prompt: blurry, low detail, washed-out colours, text overlays"
        assert page.locator('.card[data-job-key="keeper-draft"] .params').count() == 0
        assert "moderation" in page.locator(f'.card[data-job-key="{FAILED_KEY}"] .reason').inner_text()

        # The first take is selected: every made take of its group gets a player (the failed one has
        # no video), each of its own frame and length; nothing outside the group plays.
        assert page.evaluate(SELECTED) == LIGHTHOUSE_KEYS[0]
        assert lighthouse.locator("video").count() == 5 and page.locator("video").count() == 5
        assert lighthouse.locator("video").evaluate_all(DURATIONS) == [pytest.approx(6, abs=0.5)] * 5
        assert lighthouse.locator(".card video").evaluate_all("vs => vs.map(v => v.getBoundingClientRect().height > v.getBoundingClientRect().width)") == [
            False, True, False, False, True]  # 16:9 beside 9:16, as they were made
        # Space plays the takes together from the start, and pauses them.
        page.keyboard.press("Space")
        page.wait_for_function("() => [...document.querySelectorAll('.group video')].every(v => !v.paused)")
        page.wait_for_timeout(600)  # a frame or two in, for the screenshot
        page.keyboard.press("Space")
        assert page.evaluate("() => [...document.querySelectorAll('video')].every(v => v.paused)")

        # j steps to the next take, the players stay; `a` approves that take only.
        page.evaluate("() => { window.firstPlayer = document.querySelector('.group video'); }")
        page.keyboard.press("j")
        assert page.evaluate(SELECTED) == LIGHTHOUSE_KEYS[1]
        assert page.evaluate("() => document.querySelector('.group video') === window.firstPlayer")
        page.keyboard.press("a")
        page.wait_for_selector(f'.card[data-job-key="{LIGHTHOUSE_KEYS[1]}"] .state.saved')
        # The mouse: reject veo's 16:9 take with a note.
        veo_card = page.locator('.card[data-job-key="lighthouse-veo-3.1-fast-16x9"]')
        veo_card.locator(".actions .reject").click()
        veo_card.locator(".form.reject textarea").fill("too dark; the beam is lost")
        veo_card.locator(".form.reject .save").click()
        page.wait_for_selector('.card[data-job-key="lighthouse-veo-3.1-fast-16x9"] .state.saved')
        assert log_lines(tmp_path) == [(LIGHTHOUSE_KEYS[1], "approve"), ("lighthouse-veo-3.1-fast-16x9", "reject")]
        decided = lighthouse.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.decision)")
        assert decided == ["undecided", "approve", "undecided", "undecided", "reject", "undecided"]

        # J / K jump from prompt to prompt; the players follow the group.
        page.keyboard.press("J")
        assert page.evaluate(SELECTED) == "keeper"
        assert page.locator("video").count() == 2 and keeper.locator("video").count() == 2
        page.keyboard.press("J")
        assert page.evaluate(SELECTED) == "boat" and page.locator("video").count() == 1
        page.keyboard.press("J")
        assert page.evaluate(SELECTED) == "boat"  # the last prompt: nowhere further
        page.keyboard.press("K")
        page.keyboard.press("K")
        assert page.evaluate(SELECTED) == LIGHTHOUSE_KEYS[0]

        # `t` on grok's 16:9 take: its earlier take beside it, inside the group.
        page.keyboard.press("t")
        grok = page.locator(f'.card[data-job-key="{LIGHTHOUSE_KEYS[0]}"]')
        assert "comparing" in grok.get_attribute("class")
        assert grok.locator("video").evaluate_all("vs => vs.map(v => new URL(v.src).pathname)") == [
            f"/video/{LIGHTHOUSE_KEYS[0]}", f"/video/{EARLIER}"]
        assert grok.locator(".slot .caption").all_inner_texts()[1].startswith("earlier take 1 · 2026-11-30 22:00 UTC · made in 52 s")
        page.keyboard.press("t")
        page.evaluate("() => window.scrollTo(0, 0)")
        page.wait_for_function("() => [...document.querySelectorAll('video')].every(v => v.readyState >= 2)")
        shot(page, "issue21-review-compare.png")

        # A filter that leaves one take of a prompt shows it as a lone card.
        page.click('#decision-filters button[data-decision="approve"]')
        assert [c.get_attribute("data-job-key") for c in page.locator("article.card").all()] == [LIGHTHOUSE_KEYS[1]]
        assert page.locator("section.group").count() == 0
        page.click('#decision-filters button[data-decision="ALL"]')
        assert page.locator("section.group").count() == 2 and page.locator("article.card").count() == 9

        # A reload shows each decision on its own take.
        page.reload(wait_until="load")
        page.wait_for_selector("body[data-ready]")
        assert page.locator("section.group").first.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.decision)") == decided
    assert not problems, problems
    assert ledger_files(tmp_path) == books  # the page wrote decisions beside the ledger, nothing in it


def test_a_real_night_across_models_is_reviewed_side_by_side(chromium, emulator_thread, review_server, tmp_path):
    emu = emulator_thread(time_scale=0.05)  # a few seconds' generation, so each take has its own time
    manifest = write_manifest(tmp_path / "compare.yaml", jobs())
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["job_key"]: r for r in ledger(tmp_path).iter_rows(named=True)}
    keys = [*LIGHTHOUSE_KEYS, "keeper", "keeper-draft", "boat"]
    assert sorted(rows) == sorted(keys) and {r["status"] for r in rows.values()} == {"DOWNLOADED"}

    def said(row: dict) -> str:
        bound = "" if MODELS[row["model"]].credits else "up to "
        return f"{row['credits_charged']} / {bound}{row['credits_estimated']} cr"

    server = review_server(tmp_path)  # --run last: the night's run
    with chromium_page(chromium, 1400, 1300) as page:
        page.goto(server.url, wait_until="load")
        page.wait_for_selector("body[data-ready]")
        boxes = page.locator("section.group")
        assert [b.locator(".group-prompt").inner_text() for b in boxes.all()] == [LIGHTHOUSE, KEEPER]
        assert [c.get_attribute("data-job-key") for c in page.locator("article.card").all()] == keys
        for key in keys:  # each take says its model, its credits as the ledger has them, its generation time
            card = page.locator(f'.card[data-job-key="{key}"]')
            assert card.locator(".model").inner_text() == rows[key]["model"]
            assert card.locator(".credits").inner_text() == said(rows[key])
            assert re.fullmatch(r"made in \d+ s", card.locator(".generation").inner_text())
        assert page.locator('.card[data-job-key="keeper"] .params li').all_inner_texts() == [
            "mode pro", "negative_prompt blurry, low detail, washed-out…"]
        # The selected group plays its takes side by side, each of the frame and length the run probed.
        videos = page.locator("section.group").first.locator("video")
        assert videos.count() == 6 and page.locator("video").count() == 6
        page.wait_for_function("() => [...document.querySelectorAll('video')].every(v => v.readyState >= 2)")
        seen = videos.evaluate_all("vs => vs.map(v => [v.closest('.card').dataset.jobKey, v.videoWidth, v.videoHeight, v.duration])")
        assert [(k, w, h) for k, w, h, _ in seen] == [
            (k, rows[k]["video_width"], rows[k]["video_height"]) for k in LIGHTHOUSE_KEYS]
        assert [d for *_, d in seen] == [pytest.approx(6, abs=0.5)] * 6
        # A decision per take, the keys as before.
        page.keyboard.press("j")
        page.keyboard.press("a")
        page.wait_for_selector(f'.card[data-job-key="{LIGHTHOUSE_KEYS[1]}"] .state.saved')
        page.keyboard.press("J")
        page.keyboard.press("a")
        page.wait_for_selector('.card[data-job-key="keeper"] .state.saved')
        page.keyboard.press("K")
        page.evaluate("() => window.scrollTo(0, 0)")
        page.wait_for_function("() => [...document.querySelectorAll('video')].every(v => v.readyState >= 2)")
        shot(page, "issue21-review-run.png")
    assert log_lines(tmp_path) == [(LIGHTHOUSE_KEYS[1], "approve"), ("keeper", "approve")]

    # The report groups them the same way.
    made = run_cli("report", "--ledger", str(tmp_path / "ledger.parquet"), env=cli_env("http://127.0.0.1:9"), cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    html = (tmp_path / "report.html").read_text()
    assert html.count('<section class="group">') == 2
    assert re.findall(r'data-job-key="([^"]+)"', html) == keys
    assert f"{said(rows['lighthouse-veo-3.1-fast-16x9'])}</span>" in html

    # The books: one paid job per wanted row, the ledger's credits the emulator's.
    stats = emu.stats()
    assert {k: len(v) for k, v in jobs_per_key(stats).items()} == dict.fromkeys(keys, 1)
    assert sum(r["credits_charged"] for r in rows.values()) == stats["credits"]["charged"]
    assert all(r["credits_charged"] <= r["credits_estimated"] for r in rows.values())  # never past the bound


def test_a_take_a_later_run_adds_to_a_prompt_joins_its_box_on_the_open_page(chromium, emulator_thread, review_server,
                                                                            tmp_path):
    emu = emulator_thread()
    env = cli_env(emu.base_url)
    kite = {"id": "kite", "prompt": "A red kite over a windy beach", "matrix": {"aspect_ratio": ["16:9", "9:16"]}}
    boat = {"id": "boat", "prompt": BOAT, "aspect_ratio": "1:1"}
    manifest = write_manifest(tmp_path / "m.yaml", [kite, boat])
    assert run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path).returncode == 0
    server = review_server(tmp_path)  # --run last grows with later runs
    with chromium_page(chromium, 1400, 1000) as page:
        page.goto(server.url, wait_until="load")
        page.wait_for_selector("body[data-ready]")
        page.evaluate("() => { window.notReloaded = true; }")
        box = page.locator("section.group")
        assert box.count() == 1 and box.locator(".group-prompt").inner_text() == kite["prompt"]
        assert box.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.jobKey)") == ["kite-16x9", "kite-9x16"]
        assert box.locator(".group-sum").inner_text() == "2 takes · grok-imagine-video · 20 cr charged"
        page.keyboard.press("a")  # the first take, selected
        page.wait_for_selector('.card[data-job-key="kite-16x9"] .state.saved')

        # The manifest gains a longer take of the same prompt; a run makes it while the page is open.
        write_manifest(manifest, [kite, boat, {"id": "kite-long", "prompt": kite["prompt"], "duration": 10}])
        done = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        settled = json.loads(server.request("GET", "/api/version")[2])["version"]
        page.wait_for_function(f"() => document.body.dataset.version === {settled!r}")
        assert page.evaluate("() => window.notReloaded === true")
        assert box.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.jobKey)") == [
            "kite-16x9", "kite-9x16", "kite-long"]
        assert box.locator(".group-sum").inner_text() == "3 takes · grok-imagine-video · 35 cr charged"
        assert page.locator('.card[data-job-key="kite-long"] .fresh').inner_text() == "new"
        assert page.locator('.card[data-job-key="kite-16x9"]').get_attribute("data-decision") == "approve"
        assert page.evaluate("() => document.querySelector('.card[data-job-key=\"boat\"]').parentElement.id") == "grid"
        assert page.locator("section.group .card.selected").count() == 1  # the selection stayed
        assert page.locator("section.group video").count() == 3  # and its box's players include the new take

    # The books: one paid job per wanted row, the ledger's credits the emulator's.
    rows = ledger(tmp_path)
    assert {k: len(v) for k, v in jobs_per_key(emu.stats()).items()} == dict.fromkeys(rows["job_key"], 1)
    assert rows["credits_charged"].sum() == emu.stats()["credits"]["charged"]


def test_a_prompt_of_more_takes_than_play_at_once_gives_only_the_selected_one_a_player(chromium, review_server,
                                                                                      tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "surf", "prompt": "Surfers at dawn", "count": 13},
                                                    {"id": "boat", "prompt": BOAT}])
    write_finished_ledger(manifest, tmp_path / "ledger.parquet", tmp_path / "out")
    clip = render_clip(3, 160, 90, 6)
    for path in ledger(tmp_path)["output_path"]:
        Path(path).write_bytes(clip)
    server = review_server(tmp_path, "--run", "all")
    with chromium_page(chromium, 1400, 1000) as page:
        page.goto(server.url, wait_until="load")
        page.wait_for_selector("body[data-ready]")
        assert page.locator("section.group .card").count() == 13  # one box, every variation of the prompt
        assert page.locator("video").count() == 1 and page.locator(".card.selected video").count() == 1
        page.keyboard.press("j")  # the next take takes the player over
        assert page.locator("video").count() == 1 and page.locator(".card.selected video").count() == 1
        page.keyboard.press("J")
        assert page.evaluate(SELECTED) == "boat" and page.locator("video").count() == 1
