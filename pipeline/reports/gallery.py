"""A self-contained HTML gallery of a ledger, for the reviewers of a night's batch.

Pages with inline CSS and a few lines of inline script: totals, then a card per job with a
poster frame (grabbed with PyAV into `posters/` beside the page), an inline player on a
relative path, the prompt, the clip's shape and cost, and the reason for a failure. They work
opened from disk, with no network and nothing external.

The takes of one prompt (across models, aspect ratios, params, and a row's earlier takes) share a
box, side by side, each card with its model, params, credits ("up to" a catalog bound) and
generation time (pipeline/reports/takes.py decides the grouping and the words, as for the review page).

Scoped (pipeline/store/scope.py): by default the rows of the last run, or `--run ID|all` and
`--manifest PATH`. At most PAGE_SIZE cards a page, then `report-2.html`, ... up to `max_pages`;
each page says how many rows it leaves out. Only the rows of a page are ever held in memory.
"""

from __future__ import annotations

import html
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import av
import polars as pl

from pipeline.store.archive import base_key, is_archived
from pipeline.store.verdicts import read_verdicts, with_review
from pipeline.store.ledger import Ledger
from pipeline.store.objects import MAX_SIGN, sign
from pipeline.store.runs import read_runs
from pipeline.store.schema import DOWNLOADED, FAILED, PENDING, REJECTED, STATUSES
from pipeline.store.scope import ALL, LAST, last_run_id, scope_filter
from pipeline.reports.status import STATUS_COLUMNS, summarize
from pipeline.reports.takes import GROUP, grouped, take_facts

POSTER_WIDTH = 320
_DECIDED = {"approve": "approved", "reject": "rejected", "regenerate": "to regenerate"}  # as a card reads
POSTER_AT_S = 1.0
PAGE_SIZE = 500  # cards on one page
MAX_PAGES = 20  # pages written unless --pages says otherwise
ORDER = ["manifest", "row", "variation", "job_key"]
LINKS_LAST: timedelta = MAX_SIGN  # a presigned link of a video in a store: S3's longest, 7 days


def write_poster(video: Path, poster: Path) -> bool:
    """Save a PNG frame from about a second in; skipped when the poster is newer than the video."""
    try:
        if poster.exists() and poster.stat().st_mtime >= video.stat().st_mtime:
            return True
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            frame = None
            for frame in container.decode(stream):
                if frame.time is not None and frame.time >= POSTER_AT_S:
                    break
            if frame is None:
                return False
        height = max(2, int(POSTER_WIDTH * frame.height / frame.width) // 2 * 2)
        small = frame.reformat(width=POSTER_WIDTH, height=height, format="rgb24")
        codec = av.CodecContext.create("png", "w")
        codec.width, codec.height, codec.pix_fmt = small.width, small.height, "rgb24"
        data = b"".join(bytes(p) for p in codec.encode(small)) + b"".join(bytes(p) for p in codec.encode(None))
        poster.parent.mkdir(parents=True, exist_ok=True)
        temporary = poster.with_name(poster.name + ".tmp")
        temporary.write_bytes(data)
        os.replace(temporary, poster)
        return True
    except (OSError, av.FFmpegError, IndexError):
        return False


def _media(row: dict, status: str, page_dir: Path) -> str:
    """The card's player: a local video on a relative path with its poster; a video in a store
    (--out s3://...) on a presigned GET URL (a signature, never the secret; no poster: making one
    would download every video); or why there is none."""
    e = html.escape
    where = row.get("output_path")
    if status != DOWNLOADED or not where:
        return '<div class="media empty">{}</div>'.format(
            "no video: see the reason below" if status in (FAILED, REJECTED) else "no video yet")
    if "://" in where:
        signed = sign(where, LINKS_LAST)
        if signed is None:
            return f'<div class="media empty">video in a store this report cannot link: {e(where)}</div>'
        return (f'<video class="media" controls preload="none" loop muted playsinline '
                f'src="{e(signed)}"></video>')
    path = Path(where)
    if not path.exists():
        return f'<div class="media empty">video file missing: {e(str(path))}</div>'
    poster = page_dir / "posters" / f"{row['job_key']}.png"
    poster_attr = ""
    if write_poster(path, poster):
        poster_attr = f' poster="{e(os.path.relpath(poster, page_dir))}"'
    return (f'<video class="media" controls preload="none" loop muted playsinline{poster_attr} '
            f'src="{e(os.path.relpath(path, page_dir))}"></video>')


def _links_note(rows: pl.DataFrame) -> str:
    """The header's word on presigned links, when the page has any: they expire (S3: 7 days at most)."""
    if not rows.height or not rows["output_path"].fill_null("").str.contains("://", literal=True).any():
        return ""
    until = (datetime.now(timezone.utc) + LINKS_LAST).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<p class="scope links">Videos kept in the object store play from presigned links that expire '
            f'on {until}: run <code>videobatch report</code> again for fresh ones.</p>')


def _card(row: dict, page_dir: Path, shared: str | None = None) -> str:
    """A take's card; in a group, its prompt is said once above (`shared`) unless it differs."""
    e = html.escape
    status = row["status"] or PENDING
    media = _media(row, status, page_dir)
    reason = ""
    if status in (FAILED, REJECTED):
        text = row.get("error") or "no reason recorded"
        reason = f'<p class="reason">{"result expired · " if row.get("expired") else ""}{e(text)}</p>'
    if row.get("review_decision"):
        note = f": {row['review_note']}" if row.get("review_note") else ""
        said = _DECIDED.get(row["review_decision"], row["review_decision"])
        reason += (f'<p class="review {e(row["review_decision"])}">{e(said)} by '
                   f'{e(row.get("review_reviewer") or "?")}{e(note)}</p>')
    facts = take_facts(row)
    params = "".join(f'<li title="{e(name)}: {e(whole)}">{e(name)} {e(short)}</li>' for name, short, whole in facts["params"])
    params = f'<ul class="params">{params}</ul>' if params else ""
    shape = "".join(f"<span>{e(text)}</span>" for text in (
        f"{row['duration']} s" if row.get("duration") is not None else None, row.get("aspect_ratio"),
        f"made in {facts['generation']}" if facts["generation"] else None) if text)
    bound = " (an upper bound from the catalog&#39;s prices)" if facts["estimate_bound"] else ""
    if is_archived(row["job_key"]):  # sorted right after its row's current take (ORDER ends with job_key)
        reason += f'<p class="take">earlier take of {e(base_key(row["job_key"]))}, kept with its video</p>'
    return (
        f'<article class="card" data-status="{e(status)}" data-job-key="{e(row["job_key"])}" '
        f'style="--ratio: {facts["ratio"]}">'
        f'{media}<div class="body"><p class="model">{e(row.get("model") or "?")}</p>'
        f'<div class="meta"><span class="badge {e(status.lower())}">{e(status)}</span>{shape}'
        f'<span class="credits" title="credits charged / estimated{bound}">{e(facts["credits_text"])}</span>'
        f'<span>{row.get("attempts") or 0} {"try" if row.get("attempts") == 1 else "tries"}</span></div>'
        f'{params}'
        f'<p class="prompt{" shared" if shared is not None and row.get("prompt") == shared else ""}">'
        f'{e(row.get("prompt") or "")}</p>'
        f'<p class="key">{e(row["job_key"])} · row {row.get("row") or "?"}</p>{reason}</div></article>'
    )


def _cards(rows: pl.DataFrame, page_dir: Path) -> str:
    """The cards of a page in order, the takes of one prompt in a box: the prompt once, then side by side."""
    e = html.escape
    out = []
    for (prompt,), takes in rows.group_by(GROUP, maintain_order=True):
        if takes.height == 1:
            out.append(_card(takes.row(0, named=True), page_dir))
            continue
        cards = "\n".join(_card(row, page_dir, prompt) for row in takes.iter_rows(named=True))
        models = takes["model"].fill_null("?").unique(maintain_order=True).to_list()
        said = (f"{takes.height} takes · {models[0] if len(models) == 1 else f'{len(models)} models'} · "
                f"{takes['credits_charged'].fill_null(0).sum()} cr charged")
        out.append(f'<section class="group"><div class="group-head"><p class="group-prompt">{e(prompt or "")}</p>'
                   f'<span class="group-sum">{e(said)}</span></div><div class="group-takes">{cards}</div></section>')
    return "\n".join(out)


def _page_path(first: Path, number: int) -> Path:
    return first if number == 1 else first.with_name(f"{first.stem}-{number}{first.suffix}")


def scoped_rows(ledger: Ledger, runs: pl.DataFrame, run: str = LAST, manifest: Path | str | None = None,
                columns: list[str] | None = None) -> tuple[pl.LazyFrame, str]:
    """The ledger rows in scope (lazy, `columns`), and a phrase naming the scope for the page."""
    if run == LAST and not runs.height:
        run, note = ALL, "every row (no run is recorded yet)"
    else:
        note = {ALL: "every run"}.get(run) or (
            f"the last run, {last_run_id(runs)}" if run == LAST else f"run {run}")
    condition = scope_filter(runs, run, manifest)
    if manifest is not None:
        note += f", manifest {Path(manifest).resolve()}"
    wanted = list(dict.fromkeys([*(columns or STATUS_COLUMNS), "run_id", "manifest"]))
    return ledger.scan(wanted).filter(condition), note


def render_report(ledger: Ledger, runs: pl.DataFrame, html_path: Path, *, run: str = LAST,
                  manifest: Path | str | None = None, max_pages: int = MAX_PAGES,
                  decisions: pl.DataFrame | None = None) -> list[Path]:
    """Write the pages of the rows in scope (and posters/ beside them); returns their paths.
    With review `decisions`, each card and the totals show them."""
    reviewed = decisions is not None and decisions.height > 0
    html_path = Path(html_path)
    page_dir = html_path.parent.resolve()
    page_dir.mkdir(parents=True, exist_ok=True)
    scoped, scope_note = scoped_rows(ledger, runs, run, manifest, [*STATUS_COLUMNS, "prompt", *(
        ("idempotency_key", "request_hash") if reviewed else ())])
    summary = summarize(with_review(scoped, decisions) if reviewed else scoped, runs)
    placed = grouped(scoped.select([*ORDER, "prompt"]).collect(), ORDER).select("job_key", GROUP).with_row_index("_at")
    order = placed["job_key"]
    everything = ledger.scan(["job_key"]).select(pl.len()).collect().item()
    pages = max(1, min(max_pages, -(-order.len() // PAGE_SIZE)))
    written = []
    for number in range(1, pages + 1):
        keys = order.slice((number - 1) * PAGE_SIZE, PAGE_SIZE)
        rows = ledger.rows(keys).join(placed.select("job_key", GROUP, "_at"), on="job_key").sort("_at").drop("_at")
        if reviewed:
            rows = with_review(rows, decisions)
        written.append(_write_page(
            _page_path(html_path, number), page_dir, rows, summary,
            _coverage(number, pages, keys.len(), order.len(), everything, scope_note, html_path)))
    return written


def _coverage(number: int, pages: int, on_page: int, in_scope: int, everything: int, scope: str,
              first: Path) -> str:
    """What this page shows and what it leaves out, with links to the other pages."""
    e = html.escape
    start = (number - 1) * PAGE_SIZE
    parts = [f"Showing {f'cards {start + 1}–{start + on_page} of ' if on_page else ''}{in_scope} "
             f"row{'s' if in_scope != 1 else ''} of {e(scope)}."]
    outside = everything - in_scope
    if outside:
        parts.append(f"{outside} row{'s' if outside != 1 else ''} of the ledger outside this scope "
                     "left out (<code>--run all</code> shows every run).")
    beyond = in_scope - pages * PAGE_SIZE
    if beyond > 0:
        parts.append(f"{beyond} row{'s' if beyond != 1 else ''} after page {pages} left out "
                     "(<code>--pages N</code> writes more pages, or narrow with <code>--manifest</code>).")
    links = ""
    if pages > 1:
        links = " Pages: " + " ".join(
            f"<b>{n}</b>" if n == number else f'<a href="{e(_page_path(first, n).name)}">{n}</a>'
            for n in range(1, pages + 1))
    return f'<p class="scope" data-in-scope="{in_scope}" data-left-out="{outside + max(beyond, 0)}">' \
           f'{" ".join(parts)}{links}</p>'


def _write_page(path: Path, page_dir: Path, ledger: pl.DataFrame, summary: dict, coverage: str) -> Path:
    e = html.escape
    counts = "".join(f'<div class="stat"><b>{n}</b><span>{s.lower()}</span></div>'
                     for s, n in summary["by_status"].items() if n)
    credit_rows = "".join(
        f"<tr><td>{e(s)}</td><td>{v['estimated']}</td><td>{v['charged']}</td></tr>"
        for s, v in sorted(summary["credits"]["by_status"].items(), key=lambda kv: STATUSES.index(kv[0])
                           if kv[0] in STATUSES else 99))
    duration_rows = "".join(
        f"<tr><td>{e(d)} s</td><td>{v['jobs']}</td><td>{v['estimated']}</td><td>{v['charged']}</td></tr>"
        for d, v in summary["credits"]["by_duration"].items())
    run = summary["last_run"]
    run_line = (f"Last run {e(str(run['run_id']))} ended {e(str(run['ended_at']))[:19].replace('T', ' ')} UTC "
                f"with exit code {run['exit_code']}." if run else "No run recorded yet.")
    buttons = '<button class="on" data-filter="ALL">all</button>' + "".join(
        f'<button data-filter="{s}">{s.lower()} ({n})</button>' for s, n in summary["by_status"].items() if n)
    cards = _cards(ledger, page_dir)
    page = _TEMPLATE.format(
        jobs=summary["jobs"], counts=counts, estimated=summary["credits"]["estimated"],
        charged=summary["credits"]["charged"], credit_rows=credit_rows, duration_rows=duration_rows,
        run_line=run_line, coverage=coverage + _links_note(ledger), buttons=buttons,
        cards=cards or '<p class="none">No jobs in this scope.</p>',
        data=e(json.dumps({"jobs": summary["jobs"]})))
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(page, encoding="utf-8")
    os.replace(temporary, path)
    return path


def write_report(ledger_path: str | Path, html_path: str | Path | None = None, *, run: str = LAST,
                 manifest: Path | str | None = None, max_pages: int = MAX_PAGES) -> list[Path]:
    ledger_path = Path(ledger_path)
    target = Path(html_path) if html_path else ledger_path.parent / "report.html"
    ledger = Ledger.open(ledger_path, readonly=True)
    return render_report(ledger, read_runs(ledger_path), target, run=run, manifest=manifest, max_pages=max_pages,
                         decisions=read_verdicts(ledger_path))


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>videobatch report: {jobs} jobs</title>
<style>
:root {{ color-scheme: light; --ink: #1d2430; --muted: #667085; --line: #e4e7ec; --bg: #f6f7f9; }}
* {{ box-sizing: border-box; }}
body {{ margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }}
header {{ background: #fff; border-bottom: 1px solid var(--line); padding: 20px 28px; }}
h1 {{ margin: 0 0 4px; font-size: 22px; }}
.sub {{ color: var(--muted); margin: 0 0 14px; }}
.stats {{ display: flex; flex-wrap: wrap; gap: 10px; margin-bottom: 14px; }}
.stat {{ background: var(--bg); border: 1px solid var(--line); border-radius: 10px; padding: 8px 14px; min-width: 96px; }}
.stat b {{ display: block; font-size: 20px; }} .stat span {{ color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }}
.tables {{ display: flex; flex-wrap: wrap; gap: 28px; }}
table {{ border-collapse: collapse; font-size: 13px; }} th, td {{ padding: 3px 12px 3px 0; text-align: left; }} th {{ color: var(--muted); font-weight: 600; }}
nav {{ padding: 14px 28px 0; display: flex; flex-wrap: wrap; gap: 8px; }}
nav button {{ border: 1px solid var(--line); background: #fff; border-radius: 999px; padding: 5px 14px; font: inherit; cursor: pointer; }}
nav button.on {{ background: var(--ink); color: #fff; border-color: var(--ink); }}
main {{ padding: 18px 28px 40px; display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 18px; align-items: start; }}
.card {{ background: #fff; border: 1px solid var(--line); border-radius: 12px; overflow: hidden; }}
.card.hidden {{ display: none; }}
.media {{ display: block; width: 100%; aspect-ratio: var(--ratio); max-height: 420px; background: #111; object-fit: contain; }}
.media.empty {{ display: flex; align-items: center; justify-content: center; color: #98a2b3; font-size: 13px; padding: 12px; text-align: center; background: #eef0f3; }}
.body {{ padding: 10px 12px 12px; }}
.meta {{ display: flex; flex-wrap: wrap; gap: 8px; align-items: center; color: var(--muted); font-size: 12px; }}
.badge {{ font-weight: 700; border-radius: 6px; padding: 1px 7px; color: #fff; background: #98a2b3; }}
.badge.downloaded {{ background: #12805c; }} .badge.failed, .badge.rejected {{ background: #c4320a; }}
.badge.submitted, .badge.processing, .badge.completed {{ background: #2f6fde; }}
.prompt {{ margin: 8px 0 4px; }} .key {{ margin: 0; color: var(--muted); font-size: 12px; word-break: break-all; }}
.reason {{ margin: 8px 0 0; color: #b42318; font-size: 13px; }}
.review {{ margin: 8px 0 0; font-size: 13px; font-weight: 600; }} .review.approve {{ color: #12805c; }} .review.reject {{ color: #c4320a; }} .review.regenerate {{ color: #b54708; }}
.none {{ color: var(--muted); }}
.take {{ margin: 8px 0 0; font-size: 13px; color: #b54708; }}
.model {{ margin: 0 0 6px; font-weight: 700; }}
.params {{ list-style: none; margin: 6px 0 0; padding: 0; display: flex; flex-wrap: wrap; gap: 4px; }}
.params li {{ font: 11px/1.6 ui-monospace, monospace; background: var(--bg); border: 1px solid var(--line); border-radius: 5px; padding: 0 5px; }}
.group {{ grid-column: 1 / -1; background: #e9edf3; border: 1px solid #d0d5dd; border-radius: 14px; padding: 10px 12px 12px; }}
.group:not(:has(.card:not(.hidden))) {{ display: none; }}
.group-head {{ display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 14px; margin: 0 2px 10px; }}
.group-prompt {{ margin: 0; font-weight: 600; }} .group-sum {{ color: var(--muted); font-size: 12px; }}
.group-takes {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 12px; align-items: start; }}
.group .prompt.shared {{ display: none; }}
.scope {{ margin: 12px 0 0; color: var(--muted); font-size: 13px; }} .scope a {{ color: var(--ink); }}
</style></head>
<body data-summary="{data}">
<header>
<h1>videobatch report</h1>
<p class="sub">{jobs} jobs · {charged} credits charged of {estimated} estimated · {run_line}</p>
<div class="stats">{counts}</div>
<div class="tables">
<table><tr><th>status</th><th>estimated</th><th>charged</th></tr>{credit_rows}</table>
<table><tr><th>clip</th><th>jobs</th><th>estimated</th><th>charged</th></tr>{duration_rows}</table>
</div>
{coverage}
</header>
<nav id="filters">{buttons}</nav>
<main id="cards">
{cards}
</main>
<script>
document.getElementById("filters").addEventListener("click", function (event) {{
  var button = event.target.closest("button");
  if (!button) return;
  var wanted = button.getAttribute("data-filter");
  document.querySelectorAll("#filters button").forEach(function (b) {{ b.classList.toggle("on", b === button); }});
  document.querySelectorAll(".card").forEach(function (card) {{
    card.classList.toggle("hidden", wanted !== "ALL" && card.getAttribute("data-status") !== wanted);
  }});
}});
</script>
</body></html>
"""
