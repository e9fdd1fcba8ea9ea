"""The review page: an HTML shell, its style and its script (served by pipeline/review/server.py).

The script fetches the clips as JSON and builds every card with textContent, never innerHTML,
so a prompt with markup shows as text. A decision is posted with the page's CSRF secret; the
card says "saved" only when the server answered that the decision is on disk.

A thousand clips stay quick: cards are rendered CHUNK at a time as the reader scrolls near the
end (IntersectionObserver), each shows a poster image (lazy-loaded), and only the selected card
holds <video> elements (attached on selection, taken back to posters when it loses it). The
page polls the server's state version and merges a changed clip list in place: a later run's
new or regenerated clips appear without a reload. A regenerated clip's earlier takes play side
by side with the current one (`t`, or the card's "earlier takes" button).

The clips of one prompt (the server sends them one after the other) share a box: the prompt once,
then a card per take side by side, each with its model, params, credits and generation time and
its own decision. Selecting one take gives every take of its group a player, and space plays them
together from the start; j / k still step through every take, J / K jump to the next prompt.
"""

from __future__ import annotations

import html

SHORTCUTS = [("j / →", "next"), ("k / ←", "previous"), ("J / K", "next / previous prompt"), ("a", "approve"), ("r", "reject"),
             ("g", "regenerate"), ("t", "earlier takes"), ("space", "play / pause"), ("Ctrl+Enter", "save"), ("Esc", "cancel")]


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
  <div class="keys">{keys}<span id="live" class="live" aria-live="polite"></span></div>
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
.actions { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 10px; }
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
.slot { position: relative; display: block; width: 100%; aspect-ratio: var(--ratio, 16 / 9); max-height: 360px; background: #111; cursor: pointer; }
.slot img, .slot video { display: block; width: 100%; height: 100%; object-fit: contain; }
.slot .play { position: absolute; left: 50%; top: 50%; transform: translate(-50%, -50%); width: 44px; height: 44px; border-radius: 50%; border: 0; background: rgba(0,0,0,.55); color: #fff; font-size: 18px; cursor: pointer; }
.slot .caption { display: none; }
.stage .take { display: none; }
.card.comparing { grid-column: 1 / -1; }
.card.comparing .stage { display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap: 2px; background: #111; }
.card.comparing .stage .take { display: block; }
.card.comparing .slot { aspect-ratio: auto; max-height: none; }
.card.comparing .slot img, .card.comparing .slot video { aspect-ratio: var(--ratio, 16 / 9); height: auto; max-height: 360px; }
.card.comparing .slot .caption { display: block; padding: 4px 8px; font-size: 12px; color: #e4e7ec; background: #1d2430; cursor: default; white-space: pre-wrap; }
.card.comparing .slot .play { top: calc(50% - 14px); }
.takes { margin: 6px 0 0; }
.takes button { font: inherit; font-size: 12px; border: 1px solid var(--line); border-radius: 8px; background: #fff; padding: 2px 8px; cursor: pointer; }
.card.comparing .takes button { background: var(--ink); color: #fff; border-color: var(--ink); }
.fresh { font-weight: 700; border-radius: 6px; padding: 1px 7px; font-size: 11px; background: #fef0c7; color: #93370d; }
.live { margin-left: auto; color: #12805c; }
#more { grid-column: 1 / -1; height: 1px; }
.model { margin: 0 0 6px; font-weight: 700; }
.params { list-style: none; margin: 6px 0 0; padding: 0; display: flex; flex-wrap: wrap; gap: 4px; }
.params li { font: 11px/1.6 ui-monospace, monospace; background: var(--bg); border: 1px solid var(--line); border-radius: 5px; padding: 0 5px; }
.group { grid-column: 1 / -1; background: #e9edf3; border: 1px solid #d0d5dd; border-radius: 14px; padding: 10px 12px 12px; }
.group:has(.card.selected) { border-color: var(--sel); }
.group-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 14px; margin: 0 2px 10px; }
.group-prompt { margin: 0; font-weight: 600; white-space: pre-wrap; }
.group-sum { color: var(--muted); font-size: 12px; }
.group-takes { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; align-items: start; }
.group .card .prompt { display: none; }
"""



SCRIPT = r"""
"use strict";
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const grid = document.getElementById("grid");
const reviewer = document.getElementById("reviewer");
const live = document.getElementById("live");
const DECISIONS = [["ALL", "all"], ["undecided", "undecided"], ["approve", "approved"], ["reject", "rejected"], ["regenerate", "to regenerate"]];
const VERBS = {approve: "approved", reject: "rejected", regenerate: "to regenerate"};
const CHUNK = 48;  // cards rendered at a time; more as the reader scrolls near the end
const GROUP_PLAYERS = 12;  // a selected take's group gets players for all its takes up to this many
const POLL_MS = 2000;  // how often the page asks whether a run or a reviewer changed anything
let clips = [];  // every clip in scope, in the server's order
let view = [];  // the clips the filters keep
let shown = CHUNK;  // how many of `view` are rendered
const nodes = new Map();  // job_key -> its card, reused until the clip changes
const groups = new Map();  // prompt -> the box showing its takes side by side, reused
const fresh = new Set();  // keys a later run added or changed since the page loaded
let version = null;
let saves = 0;  // decisions saved so far: a clip list asked for before the last one is stale
let filter = {decision: "ALL", status: "ALL"};
let selected = null;  // job_key
const more = document.createElement("div"); more.id = "more";

if (localStorage.getItem("vb-reviewer")) reviewer.value = localStorage.getItem("vb-reviewer");
reviewer.addEventListener("change", () => localStorage.setItem("vb-reviewer", reviewer.value.trim()));

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function decisionOf(clip) { return clip.review.decision || "undecided"; }
function nodeOf(key) { return key && nodes.get(key); }

function ratio(clip) {
  if (clip.ratio) return clip.ratio;  // the probed frame, else the model's or the asked shape
  const [w, h] = (clip.aspect_ratio || "16:9").split(":");
  return w + " / " + h;
}

// The clips of one prompt come one after the other (the server's order): a group.
function together(a, b) { return a.prompt === b.prompt; }

function when(iso) { return iso ? iso.slice(0, 16).replace("T", " ") + " UTC" : "date unknown"; }

// A take's place on the card: its poster until the card is selected, then its <video>.
function slot(take, cls, caption) {
  const box = el("div", "slot " + cls);
  box.dataset.video = take.video; box.dataset.poster = take.poster || "";
  box.append(posterOf(box), el("div", "caption", caption));
  box.addEventListener("click", (event) => {
    if (event.target.closest("video, .caption")) return;
    const node = box.closest(".card");
    select(node.dataset.jobKey, false);
    const video = box.querySelector("video");
    if (video) played(video);
  });
  return box;
}

function posterOf(box) {
  const frag = document.createDocumentFragment();
  if (box.dataset.poster) {
    const img = el("img"); img.loading = "lazy"; img.decoding = "async"; img.alt = "poster"; img.src = box.dataset.poster;
    frag.append(img);
  }
  const play = el("button", "play", "▶"); play.title = "play (space)"; play.tabIndex = -1;
  frag.append(play);
  return frag;
}

function attach(box) {
  if (box.querySelector("video")) return;
  const video = el("video");
  video.preload = "metadata"; video.controls = true; video.loop = true; video.muted = true; video.playsInline = true;
  if (box.dataset.poster) video.poster = box.dataset.poster;
  video.src = box.dataset.video;
  box.querySelectorAll("img, .play").forEach(n => n.remove());
  box.prepend(video);
}

function detach(box) {
  const video = box.querySelector("video");
  if (!video) return;
  video.pause(); video.removeAttribute("src"); video.load();  // frees the decoder
  video.replaceWith(posterOf(box));
}

function groupOf(node) { return node ? node.closest(".group") : null; }

// The players a selected card wants: its own (every take when comparing), and its group's takes
// unless the group is too big to play at once (each player holds a decoder): then its own only.
function liveSlots(node) {
  const group = groupOf(node), takes = group ? [...group.querySelectorAll(".card")] : [];
  const cards = takes.length && takes.length <= GROUP_PLAYERS ? takes : [node];
  return cards.flatMap(c => [...c.querySelectorAll(c.classList.contains("comparing") ? ".slot" : ".slot.main")]);
}

function made(take) { return take.generation ? " · made in " + take.generation : ""; }

function media(clip) {
  const stage = el("div", "stage");
  if (clip.video) {
    stage.append(slot(clip, "main", "current take · " + when(clip.made_at) + made(clip) + " · " + (clip.credits_charged ?? "–") + " cr"));
  } else {
    stage.append(el("div", "media empty", clip.status === "DOWNLOADED" ? "video file missing" : "no video: " + (clip.status || "not made yet")));
  }
  clip.takes.forEach((take, i) => {
    const words = "earlier take " + (i + 1) + " · " + when(take.made_at) + made(take) + " · " + (take.credits_charged ?? "–") + " cr"
      + (take.prompt !== clip.prompt ? "\n“" + take.prompt + "”" : "");
    if (take.video) { const box = slot(take, "take", words); box.dataset.take = take.job_key; stage.append(box); }
    else { const box = el("div", "media empty take", words + "\nno video: " + (take.status || "?")); stage.append(box); }
  });
  return stage;
}

function card(clip) {
  const node = el("article", "card");
  node.dataset.jobKey = clip.job_key;
  node.dataset.status = clip.status || "PENDING";
  node.dataset.decision = decisionOf(clip);
  node.style.setProperty("--ratio", ratio(clip));
  node.append(media(clip));
  const body = el("div", "body");
  body.append(el("p", "model", clip.model || "?"));
  const meta = el("div", "meta");
  meta.append(el("span", "badge " + (clip.status || "pending").toLowerCase(), clip.status));
  const d = decisionOf(clip);
  meta.append(el("span", "decision " + d, d === "undecided" ? "undecided" : VERBS[d]));
  if (fresh.has(clip.job_key)) meta.append(el("span", "fresh", clip.takes.length ? "new take" : "new"));
  if (clip.duration != null) meta.append(el("span", "duration", clip.duration + " s"));
  if (clip.aspect_ratio) meta.append(el("span", "ratio", clip.aspect_ratio));
  const credits = el("span", "credits", clip.credits_text);
  credits.title = "credits charged / estimated" + (clip.estimate_bound ? " (an upper bound from the catalog's prices)" : "");
  meta.append(credits);
  if (clip.generation) { const took = el("span", "generation", "made in " + clip.generation); took.title = "submitted to completed"; meta.append(took); }
  meta.append(el("span", null, (clip.attempts || 0) + (clip.attempts === 1 ? " try" : " tries")));
  if (clip.edited) meta.append(el("span", "edited", "prompt edited in review"));
  body.append(meta);
  if (clip.params.length) {
    const params = el("ul", "params");
    for (const [name, short, whole] of clip.params) { const item = el("li", null, name + " " + short); item.title = name + ": " + whole; params.append(item); }
    body.append(params);
  }
  body.append(el("p", "prompt", clip.prompt));
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
  if (clip.takes.length) {
    const takes = el("p", "takes");
    const button = el("button", "compare", (clip.takes.length === 1 ? "1 earlier take" : clip.takes.length + " earlier takes") + ": compare");
    button.title = "t";
    button.addEventListener("click", () => { select(clip.job_key, false); compare(node); });
    takes.append(button);
    body.append(takes);
  }
  body.append(el("p", "key", clip.job_key + " · " + (clip.manifest || "?") + " row " + (clip.row ?? "?")));
  if (clip.error && clip.status !== "DOWNLOADED") body.append(el("p", "reason", (clip.expired ? "result expired · " : "") + clip.error));
  if (clip.review.decision) {
    const at = clip.review.at ? clip.review.at.slice(0, 16).replace("T", " ") + " UTC" : "";
    body.append(el("p", "said", VERBS[clip.review.decision] + " by " + clip.review.reviewer + ", " + at + (clip.review.note ? "\n“" + clip.review.note + "”" : "")));
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
  approve.addEventListener("click", () => { select(clip.job_key, false); send(clip.job_key, {decision: "approve"}); });
  reject.addEventListener("click", () => { select(clip.job_key, false); openForm(node, "reject"); });
  regen.addEventListener("click", () => { select(clip.job_key, false); openForm(node, "regenerate"); });
  node.addEventListener("click", (event) => { if (!event.target.closest("button, textarea, video, a, .slot")) select(clip.job_key, false); });
  node.append(body);
  return node;
}

// Earlier takes beside the current one: the card spans the row, every take gets its player.
function compare(node) {
  if (!node.querySelector(".slot.take, .media.take")) return;
  const on = node.classList.toggle("comparing");
  if (node.dataset.jobKey === selected) {
    for (const box of node.querySelectorAll(".slot.take")) { if (on) attach(box); else detach(box); }
  }
  node.scrollIntoView({block: "nearest"});
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
  const text = node.querySelector(".form." + kind + " textarea").value;
  send(node.dataset.jobKey, kind === "reject" ? {decision: "reject", note: text} : {decision: "regenerate", prompt: text});
}

async function send(key, decision) {
  const state = nodeOf(key).querySelector(".state");
  state.className = "state saving"; state.textContent = "saving…";
  let answer, payload;
  try {
    answer = await fetch("/api/decisions", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": CSRF},
      body: JSON.stringify({job_key: key, reviewer: reviewer.value.trim(), ...decision}),
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
  saves++;
  const index = clips.findIndex(c => c.job_key === key);
  if (index >= 0) clips[index] = payload.clip;
  const place = view.findIndex(c => c.job_key === key);
  const old = nodeOf(key), made = card(payload.clip);
  nodes.set(key, made);
  if (old && old.isConnected) old.replaceWith(made);
  const shownState = made.querySelector(".state");
  shownState.className = "state saved"; shownState.textContent = "saved ✓ " + VERBS[payload.clip.review.decision];
  made.dataset.saved = payload.clip.review.decision;
  buildFilters(); applyFilter(false);
  // A decided clip the filters now hide hands the focus to the one that took its place.
  const stays = view.some(c => c.job_key === key);
  if (stays || !view.length) select(stays ? key : null, true);
  else select(view[Math.min(Math.max(place, 0), view.length - 1)].job_key, true);
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
    b.addEventListener("click", () => { filter[by] = value; buildFilters(); applyFilter(true); });
    return b;
  }));
}

function buildFilters() {
  const byStatus = counts(c => c.status || "PENDING");
  filterButtons("decision-filters", "decision", DECISIONS, counts(decisionOf));
  filterButtons("status-filters", "status",
                [["ALL", "any status"], ...Object.keys(byStatus).sort().map(s => [s, s.toLowerCase()])], byStatus);
}

function cardOf(clip) {
  if (!nodes.has(clip.job_key)) nodes.set(clip.job_key, card(clip));
  return nodes.get(clip.job_key);
}

// The takes of one prompt in one box: the prompt once, then their cards side by side.
function groupBox(takes) {
  const prompt = takes[0].prompt;
  let box = groups.get(prompt);
  if (!box) {
    box = el("section", "group");
    box.append(el("div", "group-head"), el("div", "group-takes"));
    groups.set(prompt, box);
  }
  const row = box.lastChild, cards = takes.map(cardOf);
  if (cards.length !== row.children.length || cards.some((c, i) => row.children[i] !== c)) row.replaceChildren(...cards);
  const models = [...new Set(takes.map(t => t.model || "?"))];
  const charged = takes.reduce((n, t) => n + (t.credits_charged || 0), 0);
  const sum = takes.length + " takes · " + (models.length === 1 ? models[0] : models.length + " models") + " · " + charged + " cr charged";
  box.firstChild.replaceChildren(el("p", "group-prompt", prompt), el("span", "group-sum", sum));
  return box;
}

// What the grid holds for the first `shown` of `view`: a card, or a group's box with all its takes.
function units() {
  const out = [];
  for (let i = 0; i < view.length && i < shown;) {
    let j = i + 1;
    while (j < view.length && together(view[i], view[j])) j++;
    out.push(j - i > 1 ? groupBox(view.slice(i, j)) : cardOf(view[i]));
    i = j;
  }
  return out;
}

// The rendered units are those of units(); existing ones are kept, new ones appended.
function render() {
  const wanted = units();
  const have = [...grid.children];
  let same = 0;
  while (same < have.length && same < wanted.length && have[same] === wanted[same]) same++;
  if (same === have.length - 1 && have[same] === more) { more.before(...wanted.slice(same)); }
  else if (!wanted.length) { grid.replaceChildren(el("p", "none", clips.length ? "No clips match these filters." : "No clips in this scope: try --run all.")); }
  else { grid.replaceChildren(...wanted, more); }
}

function applyFilter(reset) {
  view = clips.filter(c => (filter.decision === "ALL" || decisionOf(c) === filter.decision)
    && (filter.status === "ALL" || (c.status || "PENDING") === filter.status));
  if (reset) shown = CHUNK;
  const at = view.findIndex(c => c.job_key === selected);
  if (at >= shown) shown = at + 1;
  render();
  if (at < 0) select(view.length ? view[0].job_key : null, false);
}

function select(key, scroll = true) {
  const old = nodeOf(selected);
  if (old && selected !== key) {
    old.classList.remove("selected");
    const kept = new Set(nodeOf(key) ? liveSlots(nodeOf(key)) : []);  // a move inside a group keeps its players
    (groupOf(old) || old).querySelectorAll(".slot").forEach(box => { if (!kept.has(box)) detach(box); });
  }
  selected = key;
  const node = nodeOf(key);
  if (!node) return;
  node.classList.add("selected");
  liveSlots(node).forEach(attach);
  if (scroll) node.scrollIntoView({block: "nearest"});
}

// To the first take of the next (or previous) prompt.
function moveGroup(step) {
  const here = view.findIndex(c => c.job_key === selected);
  if (here < 0) return move(step);
  const first = (i) => { while (i > 0 && together(view[i - 1], view[i])) i--; return i; };
  let to = here;
  if (step > 0) { while (to < view.length && together(view[here], view[to])) to++; if (to === view.length) return; }
  else to = first(Math.max(0, first(here) - 1));
  move(to - here);
}

function move(step) {
  if (!view.length) return;
  const at = view.findIndex(c => c.job_key === selected);
  const next = Math.min(view.length - 1, Math.max(0, at < 0 ? 0 : at + step));
  if (next >= shown) { shown = next + CHUNK; render(); }
  select(view[next].job_key);
}

// play() is refused when a pause() (a key, or the card losing focus) comes first: that is no error.
function played(video) { video.play().catch(() => {}); }

function playPause(node) {
  const videos = node ? [...(groupOf(node) || node).querySelectorAll(".slot video")] : [];
  if (!videos.length) return;
  if (videos.some(v => !v.paused)) videos.forEach(v => v.pause());
  else videos.forEach(v => { if (videos.length > 1) v.currentTime = 0; played(v); });  // takes side by side start together
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
  const node = nodeOf(selected);
  switch (event.key) {
    case "j": case "ArrowRight": case "ArrowDown": move(1); break;
    case "k": case "ArrowLeft": case "ArrowUp": move(-1); break;
    case "J": moveGroup(1); break;
    case "K": moveGroup(-1); break;
    case "a": if (node && !node.querySelector(".actions .approve").disabled) send(selected, {decision: "approve"}); break;
    case "r": if (node && !node.querySelector(".actions .reject").disabled) openForm(node, "reject"); break;
    case "g": if (node && !node.querySelector(".actions .regenerate").disabled) openForm(node, "regenerate"); break;
    case "t": if (node) compare(node); break;
    case " ": playPause(node); break;
    default: return;
  }
  event.preventDefault();
});

const nearEnd = new IntersectionObserver((entries) => {
  if (entries.some(e => e.isIntersecting) && shown < view.length) {
    shown += CHUNK; render();
    nearEnd.unobserve(more); nearEnd.observe(more);  // asks again: a tall screen may still show the end
  }
}, {rootMargin: "1200px"});
nearEnd.observe(more);

// What a run changes about a clip (a reviewer's decision is not a new take).
function take(clip) { return [clip.status, clip.made_at, clip.video, clip.takes.length].join("|"); }

// A later list of clips merged in place: unchanged cards are kept (a playing video, an open
// form), changed or new ones are rebuilt and marked, clips gone from the scope are dropped.
function merge(list) {
  const before = new Map(clips.map(c => [c.job_key, c]));
  let changed = 0;
  const kept = [];
  for (const clip of list) {
    const was = before.get(clip.job_key);
    const node = nodes.get(clip.job_key);
    if (was && JSON.stringify(was) === JSON.stringify(clip)) { kept.push(was); continue; }
    if (node && node.querySelector(".form.open")) { kept.push(was); continue; }  // mid-edit: merged next time
    if (version !== null && (!was || take(was) !== take(clip))) { fresh.add(clip.job_key); changed++; }
    if (node) {
      nodes.delete(clip.job_key);
      if (node.isConnected) node.replaceWith(nodes.set(clip.job_key, card(clip)).get(clip.job_key));
    }
    kept.push(clip);
  }
  const wanted = new Set(list.map(c => c.job_key));
  for (const key of [...nodes.keys()]) if (!wanted.has(key)) { nodes.get(key).remove(); nodes.delete(key); }
  const prompts = new Set(list.map(c => c.prompt));
  for (const [prompt, box] of [...groups]) if (!prompts.has(prompt)) { box.remove(); groups.delete(prompt); }
  clips = kept;
  return changed;
}

async function refresh() {
  const asked = saves;
  const answer = await fetch("/api/clips", {credentials: "same-origin"});
  if (!answer.ok) { if (version === null) grid.replaceChildren(el("p", "none", "could not load the clips: " + answer.status)); return; }
  const payload = await answer.json();
  if (saves !== asked) return;  // read before a decision this page just saved: the next poll reads again
  const first = version === null;
  const changed = merge(payload.clips);
  version = payload.version;
  document.body.dataset.version = version;
  buildFilters(); applyFilter(false);
  const now = new Date().toISOString().slice(11, 19);
  if (changed) live.textContent = changed + (changed === 1 ? " clip" : " clips") + " new or remade by a run · " + now + " UTC";
  if (selected) select(selected, false);
  if (first) document.body.dataset.ready = "1";
}

async function poll() {
  try {
    const answer = await fetch("/api/version", {credentials: "same-origin"});
    if (answer.ok && (await answer.json()).version !== version) await refresh();
  } catch (err) { /* the server stopped or restarts: ask again later */ }
  setTimeout(poll, POLL_MS);
}

refresh().then(() => setTimeout(poll, POLL_MS));
"""
