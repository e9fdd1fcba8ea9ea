"""(r) The review page with many clips in headless Chromium: how soon it is usable.

A ledger of N finished clips with real small videos is written directly (no emulator jobs), then
`videobatch review` serves it and Chromium opens the page twice: cold (no poster made yet, an
empty browser cache) and warm (posters cached on disk, a fresh browser context again).
Figures, each from the start of navigation:
- ready: the clip list fetched and the first cards in the page;
- first screen: every card in the viewport shows its picture (a poster loaded, or a video with
  its first frame's metadata);
- key: a `j` pressed at `ready` has moved the focus to the second card;
- usable: the later of first screen and key (the issue's goal: within 3 s for 1,000 clips);
- key latency: median time from a `j` to the next card being selected, over 10 presses.
The same figures again on N clips made of N / 4 prompts by four models each (a matrix): the page
shows each prompt's takes side by side, and selecting a take loads its four players.
`--review-baseline PATH` measures the page another checkout serves (e.g. the main branch) on the
same ledger, for a before/after from one run.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.workloads import COMPARED, write_review_ledger

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1400, "height": 1000}
WAIT_MS = 180_000  # the old page took 17-24 s for 500 clips: leave it room
FIRST_SCREEN = """() => {
  const cards = [...document.querySelectorAll('.card')].filter(c => c.getBoundingClientRect().top < innerHeight);
  return cards.length > 0 && cards.every(c => {
    const img = c.querySelector('img'), video = c.querySelector('video');
    return (img && img.complete && img.naturalWidth > 0) || (video && video.readyState >= 1)
      || (!img && !video);
  });
}"""
SELECTED = "() => { const s = document.querySelector('.card.selected'); return s && s.dataset.jobKey; }"


class ReviewProcess:
    """`videobatch review --run all` of `ledger`, run from the checkout at `root`."""

    def __init__(self, ledger: Path, root: Path):
        self.ledger, self.root = ledger, root

    def __enter__(self) -> str:
        env = {"PYTHONPATH": str(self.root), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "review", "--ledger", str(self.ledger),
                                      "--port", "0", "--run", "all", "--reviewer", "bench"],
                                     cwd=self.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = self.proc.stdout.readline()
        if not first.startswith("review: "):
            self.proc.kill()
            raise RuntimeError(f"review did not start from {self.root}: {first}{self.proc.stdout.read()}")
        return first.removeprefix("review: ").strip()

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=30)


def _open(browser, url: str) -> dict[str, Any]:
    """One visit in a fresh browser context: the figures of the module docstring, in seconds."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        started = time.perf_counter()
        page.goto(url, wait_until="commit")
        page.wait_for_selector("body[data-ready]")
        ready = time.perf_counter() - started
        first = page.evaluate(SELECTED)
        page.keyboard.press("j")
        page.wait_for_function(f"() => ({SELECTED})() !== {first!r}")
        key = time.perf_counter() - started
        page.wait_for_function(FIRST_SCREEN, polling=20)
        screen = time.perf_counter() - started
        latencies = []
        for _ in range(10):
            before = page.evaluate(SELECTED)
            pressed = time.perf_counter()
            page.keyboard.press("j")
            page.wait_for_function(f"() => ({SELECTED})() !== {before!r}", polling="raf")
            latencies.append(time.perf_counter() - pressed)
        counts = page.evaluate("() => [document.querySelectorAll('.card').length, document.querySelectorAll('video').length]")
        return {"ready_s": ready, "key_s": key, "first_screen_s": screen, "usable_s": max(key, screen),
                "key_latency_ms": statistics.median(latencies) * 1000, "cards_in_page": counts[0],
                "videos_in_page": counts[1]}
    finally:
        context.close()


def _measure(ledger: Path, root: Path, chromium: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright  # the test extra: only this section needs it
    from tests.browser import CHROMIUM_ARGS

    shutil.rmtree(ledger.parent / "videos" / ".posters", ignore_errors=True)  # cold: no poster made yet
    with ReviewProcess(ledger, root) as url, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            return {"cold": _open(browser, url), "warm": _open(browser, url)}
        finally:
            browser.close()


def review_page(work: Path, *, clips: int, baseline: Path | None = None) -> dict[str, Any]:
    """The figures for this checkout's page and, with `baseline`, for that checkout's."""
    chromium = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium") or "")
    if not chromium:
        return {"clips": clips, "skipped": "no Chromium at /usr/bin/chromium (Debian: apt-get install chromium)"}
    folder = work / "review"
    folder.mkdir(parents=True, exist_ok=True)
    ledger = write_review_ledger(folder, clips)
    results: dict[str, Any] = {"clips": clips, "ours": _measure(ledger, REPO, chromium)}
    grouped = write_review_ledger(folder / "grouped", clips, models=len(COMPARED))
    results["grouped"] = _measure(grouped, REPO, chromium) | {"takes": len(COMPARED)}
    if baseline is not None:
        results["baseline"] = _measure(ledger, baseline.resolve(), chromium) | {"root": str(baseline.resolve())}
    return results
