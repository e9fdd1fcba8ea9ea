"""`videobatch report`: the page from a real run's ledger, read as text and opened in headless Chromium."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest

from tests.browser import PNG_SIGNATURE, chromium_page
from tests.harness import cli_env, failed_then_finished, ledger, run_cli


class Page(HTMLParser):
    """The parts of the report a reviewer relies on: each card's attributes, texts and media."""

    FIELDS = {("p", "prompt"): "prompt", ("p", "reason"): "reason", ("span", "credits"): "credits"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.cards: list[dict] = []
        self.tags: list[tuple[str, dict]] = []
        self._field: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        classes = (attrs.get("class") or "").split()
        if tag == "article" and "card" in classes:
            self.cards.append({"attrs": attrs, "video": None})
        elif self.cards and tag == "video":
            self.cards[-1]["video"] = attrs
        elif self.cards:
            kind = "credits" if (attrs.get("title") or "").startswith("credits") else (classes or [""])[0]
            self._field = self.FIELDS.get((tag, kind))

    def handle_endtag(self, tag):
        if tag in ("p", "span"):
            self._field = None

    def handle_data(self, data):
        if self._field:
            card = self.cards[-1]
            card[self._field] = card.get(self._field, "") + data


@pytest.fixture
def batch(emulator_thread, tmp_path) -> pl.DataFrame:
    """A ledger from two real runs: 2 FAILED rows (with reasons) and 4 DOWNLOADED ones."""
    first, second = failed_then_finished(emulator_thread(), tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert second.returncode == 1, second.stdout + second.stderr  # the failed rows are still there
    rows = ledger(tmp_path)
    assert sorted(rows["status"]) == ["DOWNLOADED"] * 4 + ["FAILED"] * 2
    return rows


def write_report(tmp_path: Path, *more: str) -> Path:
    done = run_cli("report", "--ledger", str(tmp_path / "ledger.parquet"), *more,
                   env=cli_env("http://127.0.0.1:9"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    path = Path(done.stdout.strip().removeprefix("report: "))
    return path if path.is_absolute() else tmp_path / path


def png_size(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_report_page_is_self_contained_and_matches_the_ledger(batch, tmp_path):
    # Every run's rows (the default is the last run's; see tests/reports/test_gallery_scope.py).
    assert write_report(tmp_path, "--run", "all") == tmp_path / "report.html"  # the default: beside the ledger
    check_page(tmp_path / "report.html", batch)
    # Elsewhere, the relative links must still lead to the videos and the posters.
    elsewhere = tmp_path / "review" / "night.html"
    assert write_report(tmp_path, "--run", "all", "--html", str(elsewhere)) == elsewhere
    check_page(elsewhere, batch)


def check_page(path: Path, batch: pl.DataFrame) -> None:
    text = path.read_text(encoding="utf-8")
    page = Page(text)

    # Nothing fetched from anywhere: no external script, stylesheet, font or image.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text)
    assert not re.search(r"@import|@font-face|url\(", text)
    assert not [attrs for tag, attrs in page.tags if tag == "link" or (tag == "script" and "src" in attrs)]

    # Header totals are the ledger's.
    charged, estimated = int(batch["credits_charged"].sum()), int(batch["credits_estimated"].sum())
    assert f"6 jobs · {charged} credits charged of {estimated} estimated" in text
    for (status,), part in batch.group_by("status"):
        assert f'data-filter="{status}">{status.lower()} ({part.height})</button>' in text
        assert (f"<tr><td>{status}</td><td>{part['credits_estimated'].sum()}</td>"
                f"<td>{part['credits_charged'].sum()}</td></tr>") in text
    for (duration,), part in batch.group_by("duration"):
        assert (f"<tr><td>{duration} s</td><td>{part.height}</td><td>{part['credits_estimated'].sum()}</td>"
                f"<td>{part['credits_charged'].sum()}</td></tr>") in text

    # One card per ledger row, each saying what the ledger says.
    assert len(page.cards) == batch.height
    by_key = {row["job_key"]: row for row in batch.iter_rows(named=True)}
    assert {card["attrs"]["data-job-key"] for card in page.cards} == set(by_key)
    for card in page.cards:
        row = by_key[card["attrs"]["data-job-key"]]
        assert card["attrs"]["data-status"] == row["status"]
        assert card["prompt"] == row["prompt"]
        assert card["credits"] == f"{row['credits_charged']} / {row['credits_estimated']} cr"
        width, height = (int(n) for n in re.search(r"--ratio: (\d+) / (\d+)", card["attrs"]["style"]).groups())
        wide, high = (int(n) for n in row["aspect_ratio"].split(":"))
        assert width * high == height * wide, (card["attrs"]["style"], row["aspect_ratio"])
        if row["status"] == "FAILED":
            assert card["video"] is None
            assert card["reason"] == row["error"] and row["error"]
            continue
        assert "reason" not in card
        src, poster = card["video"]["src"], card["video"]["poster"]
        for link in (src, poster):
            assert not os.path.isabs(link) and ":" not in link, link  # relative, so the folder can move
        assert (path.parent / src).resolve() == Path(row["output_path"]).resolve()
        frame = (path.parent / poster).read_bytes()
        assert frame.startswith(PNG_SIGNATURE)
        poster_w, poster_h = png_size(frame)
        assert poster_w == 320 and abs(poster_h - 320 * high / wide) <= 2, (poster_w, poster_h, row["aspect_ratio"])


# Resolves with each poster's width (0 when it does not load) and each video's duration (or its error),
# so the relative paths are proven to work from file:// in a real browser, codec included.
MEDIA_CHECK = """async () => {
  const videos = [...document.querySelectorAll("video")];
  const posters = await Promise.all(videos.map(v => new Promise(done => {
    const img = new Image(); img.onload = () => done(img.naturalWidth); img.onerror = () => done(0); img.src = v.poster;
  })));
  const durations = await Promise.all(videos.map(v => new Promise(done => {
    v.addEventListener("loadedmetadata", () => done(v.duration), {once: true});
    v.addEventListener("error", () => done("error " + (v.error && v.error.code)), {once: true});
    v.preload = "metadata"; v.load();
  })));
  return videos.map((v, i) => ({key: v.closest(".card").dataset.jobKey, poster: posters[i], duration: durations[i]}));
}"""


def test_report_works_in_headless_chromium(chromium, batch, tmp_path):
    path = write_report(tmp_path, "--run", "all")
    problems: list[str] = []
    requests: list[str] = []
    with chromium_page(chromium, 1280, 900) as page:
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        # A <video> drops its file request once it has the metadata: that abort is not a failure.
        page.on("requestfailed", lambda r: None if (r.resource_type, r.failure) == ("media", "net::ERR_ABORTED")
                else problems.append(f"request failed: {r.url} {r.failure}"))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri(), wait_until="load")

        cards = page.locator("article.card")
        assert cards.count() == batch.height
        shown = {card.get_attribute("data-job-key"): card.get_attribute("data-status") for card in cards.all()}
        assert shown == dict(batch.select("job_key", "status").iter_rows())

        media = {m["key"]: m for m in page.evaluate(MEDIA_CHECK)}
        downloaded = batch.filter(pl.col("status") == "DOWNLOADED")
        assert set(media) == set(downloaded["job_key"])
        for row in downloaded.iter_rows(named=True):
            seen = media[row["job_key"]]
            assert seen["poster"] == 320 and seen["duration"] == pytest.approx(row["duration"], abs=0.5), seen

        page.click('#filters button[data-filter="FAILED"]')
        visible = [card.get_attribute("data-status") for card in cards.all() if card.is_visible()]
        assert visible == ["FAILED"] * int((batch["status"] == "FAILED").sum())
        page.screenshot(path=str(tmp_path / "report-failed.png"), full_page=True)

        page.click('#filters button[data-filter="ALL"]')
        assert all(card.is_visible() for card in cards.all())
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.read_bytes().startswith(PNG_SIGNATURE)
    assert not problems, problems
    assert [url for url in requests if not url.startswith("file:")] == []
