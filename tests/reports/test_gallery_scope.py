"""`videobatch report` scoped and paged: the last run's rows by default, --run and --manifest,
at most 500 cards a page, and every page saying what it leaves out."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline.store.ledger import Ledger
from tests.browser import PNG_SIGNATURE, chromium_page
from tests.harness import cli_env, run_cli
from tests.reports.test_gallery import Page

NIGHT = datetime(2026, 11, 24, 1, 0, tzinfo=timezone.utc)
LATE_ROWS = 1203  # three pages: 500, 500, 203


@pytest.fixture
def two_nights(tmp_path) -> Path:
    """Run r1 made 7 rows from early.yaml; run r2, the last, made 1,203 from late.yaml."""
    path = tmp_path / "ledger.parquet"
    for run_id, manifest, n, night in (("r1", "early.yaml", 7, 0), ("r2", "late.yaml", LATE_ROWS, 1)):
        with Ledger.open(path, run_id=run_id) as ledger:
            for i in range(n):
                ledger.record(f"{run_id}-{i:04d}", manifest=str(tmp_path / manifest), row=i + 1, variation=1,
                              prompt=f"{run_id} shot {i}", duration=6, aspect_ratio="16:9", credits_estimated=10,
                              status="FAILED" if i % 100 == 7 else "PENDING", error="no luck" if i % 100 == 7 else None)
            started = NIGHT + timedelta(days=night)
            ledger.append_run({"run_id": run_id, "manifest": str(tmp_path / manifest), "started_at": started,
                               "ended_at": started + timedelta(hours=1), "exit_code": 1})
    return path


def report(tmp_path: Path, *more: str):
    return run_cli("report", "--ledger", str(tmp_path / "ledger.parquet"), *more,
                   env=cli_env("http://127.0.0.1:9"), cwd=tmp_path)


def cards(path: Path) -> list[str]:
    return [card["attrs"]["data-job-key"] for card in Page(path.read_text(encoding="utf-8")).cards]


def scope_line(path: Path) -> str:
    return re.sub(r"<[^>]+>", "", re.search(r'<p class="scope".*?</p>', path.read_text(encoding="utf-8")).group(0))


def test_default_is_the_last_run_in_pages_of_500_each_saying_what_is_left_out(two_nights, tmp_path):
    done = report(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    pages = [tmp_path / "report.html", tmp_path / "report-2.html", tmp_path / "report-3.html"]
    assert done.stdout.splitlines()[0] == f"report: {pages[0]}"
    assert [len(cards(p)) for p in pages] == [500, 500, 203]
    shown = [key for p in pages for key in cards(p)]
    assert shown == [f"r2-{i:04d}" for i in range(LATE_ROWS)]  # every row of r2 once, in manifest order
    assert scope_line(pages[0]).startswith("Showing cards 1–500 of 1203 rows of the last run, r2.")
    assert "7 rows of the ledger outside this scope left out" in scope_line(pages[2])
    assert "Showing cards 1001–1203 of 1203" in scope_line(pages[2])
    assert "1203 jobs" in pages[1].read_text()  # the totals are the scope's, on every page


def test_pages_cap_run_and_manifest_choose_the_rows(two_nights, tmp_path):
    assert report(tmp_path, "--pages", "2").returncode == 0
    assert "203 rows after page 2 left out" in scope_line(tmp_path / "report.html")
    assert not (tmp_path / "report-3.html").exists()

    assert report(tmp_path, "--run", "r1", "--html", str(tmp_path / "r1.html")).returncode == 0
    assert cards(tmp_path / "r1.html") == [f"r1-{i:04d}" for i in range(7)]
    assert "1203 rows of the ledger outside this scope left out" in scope_line(tmp_path / "r1.html")

    assert report(tmp_path, "--run", "all", "--manifest", str(tmp_path / "early.yaml"),
                  "--html", str(tmp_path / "early.html")).returncode == 0
    assert len(cards(tmp_path / "early.html")) == 7

    wrong = report(tmp_path, "--run", "r9")
    assert wrong.returncode == 2 and "no run 'r9' in this ledger" in wrong.stderr
    typo = report(tmp_path, "--run", "all", "--manifest", str(tmp_path / "erly.yaml"))
    assert typo.returncode == 2 and f"no run of {tmp_path / 'erly.yaml'} in this ledger" in typo.stderr
    assert str(tmp_path / "early.yaml") in typo.stderr  # it names what the ledger did run


def test_pages_link_to_each_other_in_chromium(chromium, two_nights, tmp_path):
    assert report(tmp_path).returncode == 0
    shot = tmp_path / "report-page-2.png"
    with chromium_page(chromium, 1280, 900) as page:
        page.goto((tmp_path / "report.html").as_uri(), wait_until="load")
        assert page.locator("article.card").count() == 500
        page.click("p.scope a:text-is('2')")
        page.wait_for_url("**/report-2.html")
        assert page.locator("article.card").count() == 500
        assert page.locator("article.card").first.get_attribute("data-job-key") == "r2-0500"
        assert "Showing cards 501–1000 of 1203" in page.locator("p.scope").inner_text()
        page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    assert shot.read_bytes().startswith(PNG_SIGNATURE)


def test_the_last_run_after_a_no_op_rerun_is_the_run_that_made_the_clips(tmp_path, emulator_thread):
    """`make demo` twice: the second run changes nothing, and the report still shows the clips."""
    from tests.harness import cli_env, prompts, run_args, run_cli, write_manifest

    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3, prefix="noop"))
    first = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    again = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert first.returncode == again.returncode == 0
    done = run_cli("report", "--ledger", str(tmp_path / "ledger.parquet"), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    page = (tmp_path / "report.html").read_text()
    assert page.count('class="card') >= 3 and 'data-in-scope="3"' in page
