"""The review page: an HTML shell, its style and its script (served by pipeline/review/server.py).

The script fetches the clips as JSON and builds every card with textContent, never innerHTML,
so a prompt with markup shows as text. A decision is posted with the page's CSRF secret; the
card says "saved" only when the server answered that the decision is on disk.
"""

from __future__ import annotations

import html

SHORTCUTS = [("j / →", "next"), ("k / ←", "previous"), ("a", "approve"), ("r", "reject"),
             ("g", "regenerate"), ("space", "play / pause"), ("Ctrl+Enter", "save"), ("Esc", "cancel")]


def render(*, csrf: str, reviewer: str, scope: str) -> str:
    e = html.escape
    keys = "".join(f"<span><kbd>{e(k)}</kbd> {e(v)}</span>" for k, v in SHORTCUTS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{e(csrf)}">
<title>videobatch review</title>
<link rel="stylesheet" href="/app.css">
</head>
<body>
<header>
  <div class="top">
    <h1>videobatch review</h1>
    <span class="scope">{e(scope)}</span>
    <label class="who">reviewer <input id="reviewer" value="{e(reviewer)}" maxlength="100" autocomplete="off"></label>
  </div>
  <div class="bars">
    <div class="filters" id="decision-filters" aria-label="filter by decision"></div>
    <div class="filters" id="status-filters" aria-label="filter by status"></div>
  </div>
  <div class="keys">{keys}</div>
</header>
<main id="grid"><p class="none">loading…</p></main>
<script src="/app.js"></script>
</body></html>
"""


STYLE = """
:root { color-scheme: light; --ink: #1d2430; --muted: #667085; --line: #e4e7ec; --bg: #f6f7f9; --sel: #2f6fde; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
header { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line); padding: 12px 24px 8px; }
.top { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap; }
h1 { margin: 0; font-size: 20px; }
.scope { color: var(--muted); }
.who { margin-left: auto; color: var(--muted); font-size: 13px; }
.who input { font: inherit; padding: 3px 8px; border: 1px solid var(--line); border-radius: 6px; width: 160px; color: var(--ink); }
.bars { display: flex; flex-wrap: wrap; gap: 8px 24px; margin-top: 10px; }
.filters { display: flex; flex-wrap: wrap; gap: 6px; }
.filters button { border: 1px solid var(--line); background: #fff; border-radius: 999px; padding: 3px 12px; font: inherit; font-size: 13px; cursor: pointer; }
.filters button.on { background: var(--ink); color: #fff; border-color: var(--ink); }
.keys { margin-top: 8px; color: var(--muted); font-size: 12px; display: flex; flex-wrap: wrap; gap: 4px 14px; }
kbd { font: 11px ui-monospace, monospace; border: 1px solid var(--line); border-bottom-width: 2px; border-radius: 4px; padding: 0 4px; background: var(--bg); }
main { padding: 18px 24px 60px; display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 18px; align-items: start; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 12px; overflow: hidden; outline: 3px solid transparent; outline-offset: -1px; }
.card.selected { outline-color: var(--sel); }
.card.hidden { display: none; }
.media { display: block; width: 100%; aspect-ratio: var(--ratio, 16 / 9); max-height: 360px; background: #111; object-fit: contain; }
.media.empty { display: flex; align-items: center; justify-content: center; color: #98a2b3; font-size: 13px; padding: 12px; text-align: center; background: #eef0f3; }
.body { padding: 10px 12px 12px; }
.meta { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; color: var(--muted); font-size: 12px; }
.badge { font-weight: 700; border-radius: 6px; padding: 1px 7px; color: #fff; background: #98a2b3; font-size: 11px; letter-spacing: .02em; }
.badge.downloaded { background: #12805c; } .badge.failed, .badge.rejected { background: #c4320a; }
.badge.submitted, .badge.processing, .badge.completed { background: #2f6fde; }
.decision { font-weight: 700; border-radius: 6px; padding: 1px 7px; font-size: 11px; border: 1px solid currentColor; }
.decision.approve { color: #12805c; } .decision.reject { color: #c4320a; } .decision.regenerate { color: #b54708; }
.decision.undecided { color: #98a2b3; }
.prompt { margin: 8px 0 4px; white-space: pre-wrap; }
.pending { margin: 4px 0; font-size: 13px; color: #b54708; white-space: pre-wrap; }
.key { margin: 0; color: var(--muted); font-size: 12px; word-break: break-all; }
dl.metadata { display: grid; grid-template-columns: auto 1fr; gap: 0 10px; margin: 6px 0; font-size: 12px; }
dl.metadata dt { color: var(--muted); } dl.metadata dd { margin: 0; word-break: break-word; }
.refs { display: flex; flex-wrap: wrap; gap: 6px; margin: 6px 0; }
.refs img { width: 56px; height: 56px; object-fit: cover; border-radius: 6px; border: 1px solid var(--line); background: var(--bg); }
.refs a { font-size: 12px; word-break: break-all; }
.reason { margin: 6px 0 0; color: #b42318; font-size: 13px; }
.said { margin: 6px 0 0; font-size: 12px; color: var(--muted); white-space: pre-wrap; }
.actions { display: flex; gap: 6px; margin-top: 10px; }
.actions button, .form button { font: inherit; font-size: 13px; border-radius: 8px; border: 1px solid var(--line); background: #fff; padding: 4px 10px; cursor: pointer; }
.actions button:disabled { opacity: .45; cursor: default; }
.actions button.chosen { color: #fff; font-weight: 600; }
.actions .approve.chosen { background: #12805c; border-color: #12805c; } .actions .reject.chosen { background: #c4320a; border-color: #c4320a; }
.actions .regenerate.chosen { background: #b54708; border-color: #b54708; }
.actions .approve:not(:disabled):hover { border-color: #12805c; } .actions .reject:not(:disabled):hover { border-color: #c4320a; }
.form { margin-top: 8px; display: none; }
.form.open { display: block; }
.form textarea { width: 100%; font: inherit; font-size: 13px; border: 1px solid var(--line); border-radius: 8px; padding: 6px; min-height: 64px; }
.form .row { display: flex; gap: 6px; margin-top: 4px; }
.state { margin: 6px 0 0; font-size: 12px; min-height: 1em; }
.state.saving { color: var(--muted); } .state.saved { color: #12805c; } .state.error { color: #b42318; }
.none { color: var(--muted); }
"""


SCRIPT = r"""
"use strict";
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const grid = document.getElementById("grid");
const reviewer = document.getElementById("reviewer");
const DECISIONS = [["ALL", "all"], ["undecided", "undecided"], ["approve", "approved"], ["reject", "rejected"], ["regenerate", "to regenerate"]];
const VERBS = {approve: "approved", reject: "rejected", regenerate: "to regenerate"};
let clips = [];
let filter = {decision: "ALL", status: "ALL"};
let selected = null;  // job_key

if (localStorage.getItem("vb-reviewer")) reviewer.value = localStorage.getItem("vb-reviewer");
reviewer.addEventListener("change", () => localStorage.setItem("vb-reviewer", reviewer.value.trim()));

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function decisionOf(clip) { return clip.review.decision || "undecided"; }

function ratio(clip) {
  const [w, h] = (clip.aspect_ratio || "16:9").split(":");
  return w + " / " + h;
}

function card(clip) {
  const node = el("article", "card");
  node.dataset.jobKey = clip.job_key;
  node.dataset.status = clip.status || "PENDING";
  node.dataset.decision = decisionOf(clip);
  node.style.setProperty("--ratio", ratio(clip));
  if (clip.video) {
    const video = el("video", "media");
    video.src = clip.video; video.preload = "metadata"; video.controls = true; video.loop = true;
    video.muted = true; video.playsInline = true;
    node.append(video);
  } else {
    node.append(el("div", "media empty", clip.status === "DOWNLOADED" ? "video file missing" : "no video: " + (clip.status || "not made yet")));
  }
  const body = el("div", "body");
  const meta = el("div", "meta");
  meta.append(el("span", "badge " + (clip.status || "pending").toLowerCase(), clip.status));
  const d = decisionOf(clip);
  meta.append(el("span", "decision " + d, d === "undecided" ? "undecided" : VERBS[d]));
  meta.append(el("span", null, (clip.duration || "?") + " s"), el("span", null, clip.aspect_ratio || "?"));
  const credits = el("span", "credits", (clip.credits_charged ?? "–") + " / " + (clip.credits_estimated ?? 0) + " cr");
  credits.title = "credits charged / estimated";
  meta.append(credits, el("span", null, (clip.attempts || 0) + (clip.attempts === 1 ? " try" : " tries")));
  if (clip.edited) meta.append(el("span", "edited", "prompt edited in review"));
  body.append(meta, el("p", "prompt", clip.prompt));
  if (clip.review.prompt) body.append(el("p", "pending", "next run: " + clip.review.prompt));
  const entries = Object.entries(clip.metadata || {});
  if (entries.length) {
    const dl = el("dl", "metadata");
    for (const [k, v] of entries) dl.append(el("dt", null, k), el("dd", null, typeof v === "string" ? v : JSON.stringify(v)));
    body.append(dl);
  }
  if (clip.references.length) {
    const refs = el("div", "refs");
    for (const ref of clip.references) {
      if (ref.local) {
        const img = el("img"); img.src = ref.url; img.alt = ref.name; img.title = ref.name; img.loading = "lazy";
        refs.append(img);
      } else {
        const link = el("a", null, ref.name); link.href = ref.url; link.target = "_blank"; link.rel = "noopener noreferrer";
        refs.append(link);
      }
    }
    body.append(refs);
  }
  body.append(el("p", "key", clip.job_key + " · " + (clip.manifest || "?") + " row " + (clip.row ?? "?")));
  if (clip.error && clip.status !== "DOWNLOADED") body.append(el("p", "reason", (clip.expired ? "result expired · " : "") + clip.error));
  if (clip.review.decision) {
    const when = clip.review.at ? clip.review.at.slice(0, 16).replace("T", " ") + " UTC" : "";
    body.append(el("p", "said", VERBS[clip.review.decision] + " by " + clip.review.reviewer + ", " + when + (clip.review.note ? "\n“" + clip.review.note + "”" : "")));
  }
  const final = ["DOWNLOADED", "FAILED", "REJECTED"].includes(clip.status);
  const actions = el("div", "actions");
  const approve = el("button", "approve", "Approve"); approve.title = "a"; approve.disabled = clip.status !== "DOWNLOADED";
  const reject = el("button", "reject", "Reject…"); reject.title = "r"; reject.disabled = !final;
  const regen = el("button", "regenerate", "Regenerate…"); regen.title = "g"; regen.disabled = !final;
  for (const b of [approve, reject, regen]) b.classList.toggle("chosen", b.classList.contains(clip.review.decision));
  actions.append(approve, reject, regen);
  body.append(actions);
  const rejectForm = form("reject", "note for the team (optional)", clip.review.decision === "reject" ? clip.review.note || "" : "", "Save rejection");
  const regenForm = form("regenerate", "prompt for the new version", clip.review.prompt || clip.prompt || "", "Save: regenerate");
  body.append(rejectForm, regenForm, el("p", "state"));
  approve.addEventListener("click", () => { select(clip.job_key); send(clip, {decision: "approve"}); });
  reject.addEventListener("click", () => { select(clip.job_key); openForm(node, "reject"); });
  regen.addEventListener("click", () => { select(clip.job_key); openForm(node, "regenerate"); });
  node.addEventListener("click", (event) => { if (!event.target.closest("button, textarea, video, a")) select(clip.job_key); });
  node.append(body);
  return node;
}

function form(kind, placeholder, value, label) {
  const box = el("div", "form " + kind);
  const text = el("textarea"); text.placeholder = placeholder; text.value = value; text.name = kind === "reject" ? "note" : "prompt";
  const row = el("div", "row");
  const save = el("button", "save", label), cancel = el("button", "cancel", "Cancel");
  row.append(save, cancel);
  box.append(text, row);
  save.addEventListener("click", () => submitForm(box.closest(".card"), kind));
  cancel.addEventListener("click", () => box.classList.remove("open"));
  return box;
}

function openForm(node, kind) {
  node.querySelectorAll(".form").forEach(f => f.classList.toggle("open", f.classList.contains(kind)));
  const text = node.querySelector(".form." + kind + " textarea");
  text.focus();
  if (kind === "regenerate") text.setSelectionRange(text.value.length, text.value.length);
}

function submitForm(node, kind) {
  const clip = clips.find(c => c.job_key === node.dataset.jobKey);
  const text = node.querySelector(".form." + kind + " textarea").value;
  send(clip, kind === "reject" ? {decision: "reject", note: text} : {decision: "regenerate", prompt: text});
}

async function send(clip, decision) {
  const node = grid.querySelector('.card[data-job-key="' + CSS.escape(clip.job_key) + '"]');
  const state = node.querySelector(".state");
  state.className = "state saving"; state.textContent = "saving…";
  let answer, payload;
  try {
    answer = await fetch("/api/decisions", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": CSRF},
      body: JSON.stringify({job_key: clip.job_key, reviewer: reviewer.value.trim(), ...decision}),
    });
    payload = await answer.json();
  } catch (err) {
    state.className = "state error"; state.textContent = "not saved: " + err;
    return;
  }
  if (!answer.ok || !payload.saved) {
    state.className = "state error"; state.textContent = "not saved: " + (payload.error || answer.status);
    return;
  }
  const index = clips.findIndex(c => c.job_key === clip.job_key);
  clips[index] = payload.clip;
  const fresh = card(payload.clip);
  node.replaceWith(fresh);
  const shown = fresh.querySelector(".state");
  shown.className = "state saved"; shown.textContent = "saved ✓ " + VERBS[payload.clip.review.decision];
  fresh.dataset.saved = payload.clip.review.decision;
  buildFilters(); applyFilter(); select(clip.job_key);
}

function counts(key) {
  const n = {};
  for (const c of clips) { const v = key(c); n[v] = (n[v] || 0) + 1; }
  return n;
}

// One row of filter buttons, each with its clip count; `by` is a key of `filter` and the
// data attribute each button carries (data-decision, data-status).
function filterButtons(boxId, by, options, count) {
  document.getElementById(boxId).replaceChildren(...options.map(([value, label]) => {
    const n = value === "ALL" ? clips.length : (count[value] || 0);
    const b = el("button", filter[by] === value ? "on" : "", label + " (" + n + ")");
    b.dataset[by] = value;
    b.addEventListener("click", () => { filter[by] = value; buildFilters(); applyFilter(); });
    return b;
  }));
}

function buildFilters() {
  const byStatus = counts(c => c.status || "PENDING");
  filterButtons("decision-filters", "decision", DECISIONS, counts(decisionOf));
  filterButtons("status-filters", "status",
                [["ALL", "any status"], ...Object.keys(byStatus).sort().map(s => [s, s.toLowerCase()])], byStatus);
}

function visibleCards() { return [...grid.querySelectorAll(".card:not(.hidden)")]; }

function applyFilter() {
  for (const node of grid.querySelectorAll(".card")) {
    const ok = (filter.decision === "ALL" || node.dataset.decision === filter.decision)
      && (filter.status === "ALL" || node.dataset.status === filter.status);
    node.classList.toggle("hidden", !ok);
  }
  const shown = visibleCards();
  if (!shown.some(n => n.dataset.jobKey === selected)) select(shown.length ? shown[0].dataset.jobKey : null, false);
}

function select(key, scroll = true) {
  selected = key;
  for (const node of grid.querySelectorAll(".card")) {
    const on = node.dataset.jobKey === key;
    node.classList.toggle("selected", on);
    if (on && scroll) node.scrollIntoView({block: "nearest"});
  }
}

function move(step) {
  const shown = visibleCards();
  if (!shown.length) return;
  const at = shown.findIndex(n => n.dataset.jobKey === selected);
  const next = shown[Math.min(shown.length - 1, Math.max(0, at < 0 ? 0 : at + step))];
  select(next.dataset.jobKey);
}

document.addEventListener("keydown", (event) => {
  const typing = event.target.closest && event.target.closest("textarea, input");
  if (typing) {
    const node = event.target.closest(".card");
    if (event.key === "Escape") { event.target.closest(".form")?.classList.remove("open"); event.target.blur(); event.preventDefault(); }
    else if (node && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault(); submitForm(node, event.target.closest(".form").classList.contains("reject") ? "reject" : "regenerate");
    }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const node = selected && grid.querySelector('.card[data-job-key="' + CSS.escape(selected) + '"]');
  const clip = node && clips.find(c => c.job_key === selected);
  switch (event.key) {
    case "j": case "ArrowRight": case "ArrowDown": move(1); break;
    case "k": case "ArrowLeft": case "ArrowUp": move(-1); break;
    case "a": if (clip && !node.querySelector(".actions .approve").disabled) send(clip, {decision: "approve"}); break;
    case "r": if (clip && !node.querySelector(".actions .reject").disabled) openForm(node, "reject"); break;
    case "g": if (clip && !node.querySelector(".actions .regenerate").disabled) openForm(node, "regenerate"); break;
    case " ": {
      const video = node && node.querySelector("video");
      if (video) { if (video.paused) video.play(); else video.pause(); }
      break;
    }
    default: return;
  }
  event.preventDefault();
});

async function load() {
  const answer = await fetch("/api/clips", {credentials: "same-origin"});
  if (!answer.ok) { grid.replaceChildren(el("p", "none", "could not load the clips: " + answer.status)); return; }
  clips = (await answer.json()).clips;
  grid.replaceChildren(...(clips.length ? clips.map(card) : [el("p", "none", "No clips in this scope: try --run all.")]));
  buildFilters(); applyFilter();
  document.body.dataset.ready = "1";
}
load();
"""
