"""Observes how far a run is: one live tqdm bar on a terminal, a plain line at a steady interval
otherwise (cron), both with the same fields: rows done of the run's total, failed, in flight,
credits charged against the plan's estimate, and an ETA from the generation times seen so far.

The total is the rows this run must bring to DOWNLOADED: rows already done are not its work, and a
row --max-credits leaves out stops being its work. The ETA is the run's own, not tqdm's (tqdm's
measures the rate of finished rows, which says nothing until the first generations end, then
everything ends at once): each row left needs a clip of its length's typical generation time
(the tracker's observed table, the one --deadline reads), less what it has already waited, and
the rows share --concurrency slots; once downloads have a pace, the rows left at that pace, if
longer. Before any generation has finished it is "unknown".
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple, TextIO

from tqdm import tqdm

from pipeline.run.work import Run

# tqdm's own remaining time and rate are left out on purpose: the postfix carries our ETA.
BAR_FORMAT = "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} done [{elapsed}{postfix}]"
FALLBACK_SCREEN = (100, 24)  # columns, rows


@dataclass
class Counters:
    planned: int = 0  # rows this run has to bring to DOWNLOADED
    submitted: int = 0
    finished: int = 0  # generation ended (COMPLETED or final FAILED)
    downloaded: int = 0
    failed: int = 0
    credits_charged: int = 0
    credits_planned: int = 0  # what the plan expects this run's attempts (and followed jobs not yet charged) to cost
    left_out: int = 0  # rows --max-credits left unsent: no longer this run's work
    first_download_at: float | None = None  # monotonic time of the first download: the downloads' pace

    @property
    def total(self) -> int:
        return max(0, self.planned - self.left_out)

    @property
    def rows_left(self) -> int:
        return max(0, self.total - self.downloaded - self.failed)


class Gauge(NamedTuple):
    """What the counters do not hold: rows in flight now, and seconds to go (None: unknown)."""

    in_flight: int
    eta: float | None


# -- the ETA (pure) --


def generation_seconds(duration: int, observed: dict[int, tuple[float, float]]) -> tuple[float, float] | None:
    """(typical, slowest) seconds a clip of this length takes, from `observed[duration] = (fastest,
    slowest)`; a length not seen yet is scaled from the nearest one seen; None before any."""
    if not observed:
        return None
    seen = duration if duration in observed else min(observed, key=lambda d: (abs(d - duration), d))
    fast, slow = observed[seen]
    scale = duration / seen if seen else 1.0
    return (fast + slow) / 2 * scale, slow * scale


def _still_to_wait(duration: int, waited: float, observed: dict[int, tuple[float, float]],
                   longest_wait: float) -> float:
    """Seconds a generation that has waited `waited` may still take: the typical time less the
    wait; once past the fastest seen, half the way to the slowest (what is left of an even spread
    between the two). A job of its length still generating after `longest_wait` proves the slowest
    is at least that (only the quick ones have finished early in a run); past both: 0."""
    typical, seen_slowest = generation_seconds(duration, observed)
    fastest = 2 * typical - seen_slowest
    slowest = max(seen_slowest, longest_wait)
    if waited < fastest:
        return typical - waited
    return max(0.0, (slowest - waited) / 2)


def eta_seconds(queued: list[int], generating: list[tuple[int, float]], observed: dict[int, tuple[float, float]],
                *, workers: int, submits_per_second: float | None = None) -> float | None:
    """Seconds until the rows left are generated: `queued` (clip lengths not yet submitted, in
    submit order) and `generating` ((clip length, seconds waited so far)). Each needs its typical
    time (a generating one, less what it waited; past that, until the slowest seen); they share
    `workers` slots, so it is the longer of the longest single row and the work over the slots;
    and the last queued row cannot start before the rate limit lets it. None before any
    generation was seen to finish; 0 when the rows left are past every time seen (any moment)."""
    if not observed:
        return None
    longest: dict[int, float] = {}
    for duration, waited in generating:
        longest[duration] = max(waited, longest.get(duration, 0.0))
    need = [_still_to_wait(duration, waited, observed, longest[duration]) for duration, waited in generating]
    need += [generation_seconds(duration, observed)[0] for duration in queued]
    if not need:
        return 0.0
    eta = max(max(need), sum(need) / max(1, min(workers, len(need))))
    if queued and submits_per_second:
        eta = max(eta, len(queued) / submits_per_second + need[-1])
    return eta


def fetch_seconds(rows_left: int, downloaded: int, first_download_at: float | None, now: float) -> float | None:
    """Seconds until the rows left are downloaded at the pace downloads have kept since the first
    (the downloads, not the generations, may be what a run waits for); None before two."""
    if first_download_at is None or downloaded < 2 or now <= first_download_at:
        return None
    return rows_left * (now - first_download_at) / (downloaded - 1)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 1:
        return "any moment"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def gauge(run: Run) -> Gauge:
    """Rows in flight and the ETA, read off a running run (its queue, its tracker, its options)."""
    tracker = run.follower.tracker
    now = time.monotonic()
    generating = [(p.duration, now - p.since) for p in tracker.pending.values()]
    queued = [] if run.control.submits_stopped else [work.duration for work, _ in run.submitter.queue]
    options = run.options
    rate = options.rpm / options.rate_period if options.rpm else None
    eta = eta_seconds(queued, generating, tracker.observed, workers=options.concurrency, submits_per_second=rate)
    c = run.events.counters
    fetch = fetch_seconds(c.rows_left, c.downloaded, c.first_download_at, now)
    if eta is not None and fetch is not None:
        eta = max(eta, fetch)
    return Gauge(len(run.active), eta)


# -- the display --


def describe(counters: Counters, now: Gauge | None, *, final: bool = False) -> str:
    """`3 failed, 30 in flight, credits 290/435, ETA 2m10s`: what the bar's postfix and the line say."""
    c = counters
    parts = [f"{c.failed} failed"]
    if now is not None:
        parts.append(f"{now.in_flight} in flight")
    if c.left_out:
        parts.append(f"{c.left_out} left out by --max-credits")
    parts.append(f"credits {c.credits_charged}/{c.credits_planned}")
    if not final and c.rows_left and now is not None:
        parts.append(f"ETA {format_eta(now.eta)}")
    return ", ".join(parts)


def progress_line(counters: Counters, now: Gauge | None, *, final: bool = False) -> str:
    c = counters
    percent = 100 * c.downloaded // c.total if c.total else 100
    return f"progress: {c.downloaded}/{c.total} done ({percent}%), {describe(c, now, final=final)}"


def _screen(stream: TextIO) -> tuple[int, int] | None:
    """None: tqdm follows the terminal's size as it changes. (columns, rows) where the terminal
    does not say (`script`, a serial console, a test's stream): there tqdm reads 0 columns or -1
    rows, and draws nothing."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):  # not a real terminal (io.UnsupportedOperation is an OSError)
        return FALLBACK_SCREEN
    if size.columns > 0 and size.lines > 0:
        return None
    return (size.columns or FALLBACK_SCREEN[0], size.lines or FALLBACK_SCREEN[1])


class Progress:
    """Draws Counters. `update()` is cheap to call often; output is throttled. `gauge` reads the
    running run (rows in flight, the ETA); without it those fields are left out."""

    def __init__(self, counters: Counters, *, stream: TextIO | None = None, interval: float = 10.0,
                 bars: bool | None = None, gauge: Callable[[], Gauge] | None = None):
        self.counters = counters
        self.stream = stream or sys.stdout
        self.interval = interval
        self.bars = self.stream.isatty() if bars is None else bars
        self.gauge = gauge
        self._last_line: float | None = None  # never printed: the first line goes out at once, whatever the clock
        self._bar: tqdm | None = None  # made at the first draw, once the run knows its total

    def update(self, force: bool = False, *, final: bool = False) -> None:
        if self.bars:
            self._draw(self._now(), final)
            return
        if not self.counters.total and not self.counters.left_out:
            return  # nothing to do (all done, or stopped before any work): the summary says so, as the bar's absence does
        clock = time.monotonic()
        if force or self._last_line is None or clock - self._last_line >= self.interval:
            self._last_line = clock
            print(progress_line(self.counters, self._now(), final=final), file=self.stream, flush=True)

    def _now(self) -> Gauge | None:
        return self.gauge() if self.gauge is not None else None

    def _draw(self, now: Gauge | None, final: bool) -> None:
        c = self.counters
        if self._bar is None:
            if not c.total:
                return  # nothing to do: the summary says so
            fixed = _screen(self.stream)
            columns, rows = fixed or (None, None)
            self._bar = tqdm(total=c.total, file=self.stream, bar_format=BAR_FORMAT, leave=True, mininterval=0,
                             dynamic_ncols=fixed is None, ncols=columns, nrows=rows,
                             postfix=describe(c, now, final=final))
        bar = self._bar
        bar.total, bar.n = c.total, c.downloaded
        bar.set_postfix_str(describe(c, now, final=final), refresh=False)
        bar.refresh()

    def close(self) -> None:
        self.update(force=True, final=True)
        if self._bar is not None:
            self._bar.close()
