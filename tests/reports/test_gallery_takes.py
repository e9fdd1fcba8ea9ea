"""The report groups the takes of one prompt as the review page does: `videobatch report` run as a
user runs it over a ledger of several models and a matrix (tests/review/takes_ledger.py), opened
in headless Chromium; the screenshot lands in /work/shots/ (or outputs/) to look at.

Covers: pipeline/reports/gallery.py (the takes of a prompt side by side)
"""

from __future__ import annotations

from tests.browser import chromium_page
from tests.harness import cli_env, run_cli
from tests.review.takes_ledger import BOAT, EARLIER, FAILED_KEY, KEEPER, LIGHTHOUSE, write_takes_ledger
from tests.review.test_clips import shot
from tests.review.test_comparison import LIGHTHOUSE_KEYS

CARD_FACTS = """cs => cs.map(c => [c.dataset.jobKey, c.querySelector('.model').textContent,
    c.querySelector('.credits').textContent, [...c.querySelectorAll('.meta span')].map(s => s.textContent).join(' | ')])"""


def test_the_report_shows_the_takes_of_a_prompt_side_by_side(chromium, tmp_path):
    write_takes_ledger(tmp_path)
    made = run_cli("report", "--ledger", str(tmp_path / "ledger.parquet"), "--run", "all",
                   env=cli_env("http://127.0.0.1:9"), cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    problems: list[str] = []
    with chromium_page(chromium, 1400, 1300) as page:
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.goto((tmp_path / "report.html").as_uri(), wait_until="load")
        boxes = page.locator("section.group")
        assert [b.locator(".group-prompt").inner_text() for b in boxes.all()] == [LIGHTHOUSE, KEEPER]
        lighthouse = boxes.nth(0)
        # The earlier take right after its row's current take, in the same box.
        keys = [LIGHTHOUSE_KEYS[0], EARLIER, *LIGHTHOUSE_KEYS[1:]]
        assert lighthouse.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.jobKey)") == keys
        assert lighthouse.locator(".group-sum").inner_text() == "7 takes · 3 models · 185 cr charged"
        facts = {key: rest for key, *rest in page.locator("article.card").evaluate_all(CARD_FACTS)}
        assert facts[LIGHTHOUSE_KEYS[0]] == ["grok-imagine-video", "10 / 10 cr",
                                             "DOWNLOADED | 6 s | 16:9 | made in 38 s | 10 / 10 cr | 1 try"]
        assert facts["lighthouse-veo-3.1-fast-9x16"] == ["veo-3.1-fast", "60 / up to 90 cr",
                                                         "DOWNLOADED | 6 s | 9:16 | made in 1 m 35 s | 60 / up to 90 cr | 1 try"]
        assert facts[FAILED_KEY] == ["kling-3.0", "0 / up to 42 cr", "FAILED | 6 s | 9:16 | 0 / up to 42 cr | 1 try"]
        assert page.locator('.card[data-job-key="keeper"] .params li').all_inner_texts() == [
            "mode pro", "negative_prompt blurry, low detail, washed-out…"]
        # The prompt is said once above a group; a lone take keeps it on its card.
        assert not lighthouse.locator(".prompt").first.is_visible()
        boat = page.locator('.card[data-job-key="boat"]')
        assert boat.evaluate("c => c.parentElement.id") == "cards" and boat.locator(".prompt").inner_text() == BOAT
        # The videos are the takes' own, 16:9 beside 9:16.
        page.wait_for_function("() => [...document.querySelectorAll('.group video')].every(v => v.poster)")
        tall = lighthouse.locator("video").evaluate_all(
            "vs => vs.map(v => v.getBoundingClientRect().height > v.getBoundingClientRect().width)")
        assert tall == [False, False, True, False, False, True]
        shot(page, "issue21-report-compare.png")

        # The status filter keeps a group only while one of its takes is shown.
        page.click('#filters button[data-filter="FAILED"]')
        assert [b.is_visible() for b in boxes.all()] == [True, False]
        assert [c.get_attribute("data-job-key") for c in page.locator("article.card").all() if c.is_visible()] == [FAILED_KEY]
        page.click('#filters button[data-filter="ALL"]')
        assert all(b.is_visible() for b in boxes.all())
    assert not problems, problems
