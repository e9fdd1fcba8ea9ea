"""pipeline/run/progress.py: the ETA from observed generation times (a table), the fields the line
and the bar share, the plain line (cron) throttled and forced at the end, and one tqdm bar on a
terminal (a stream that says it is one) with our ETA in place of tqdm's."""

from __future__ import annotations

import io

import pytest

from pipeline.run.progress import (BAR_FORMAT, Counters, Gauge, Progress, eta_seconds, fetch_seconds,
                                   format_eta, generation_seconds, progress_line)

SEEN = {6: (30.0, 60.0), 15: (60.0, 150.0)}  # clip length -> (fastest, slowest) seconds seen

ETA = [  # queued lengths, generating (length, waited), workers, submits/s -> seconds
    ([], [], {}, 10, None, None),  # nothing finished yet: unknown, never invented
    ([6], [], {}, 10, None, None),
    ([], [], SEEN, 10, None, 0.0),  # nothing left to generate
    ([6], [], SEEN, 10, None, 45.0),  # a typical 6 s clip: midway between 30 and 60
    ([], [(6, 15.0)], SEEN, 10, None, 30.0),  # waited 15 of a typical 45
    ([], [(6, 50.0)], SEEN, 10, None, 5.0),  # past the fastest: half the way left to the slowest
    ([], [(6, 90.0)], SEEN, 10, None, 0.0),  # past every time seen: any moment
    ([], [(6, 90.0), (6, 70.0)], SEEN, 10, None, 10.0),  # one still going at 90 s: the slowest is >= 90
    ([10], [], SEEN, 10, None, 75.0),  # a length not seen: the nearest seen (6 s), scaled: 45 * 10 / 6
    ([6] * 4, [], SEEN, 2, None, 90.0),  # 4 rows on 2 slots: two rounds of 45
    ([6] * 4, [], SEEN, 100, None, 45.0),  # every row at once: the longest one
    ([6] * 4, [(15, 5.0)], SEEN, 100, None, 100.0),  # the 15 s clip in flight decides: 105 - 5
    ([6] * 10, [], SEEN, 100, 1.0, 55.0),  # the rate limit: the 10th submit leaves at 10 s, then 45
]


@pytest.mark.parametrize("queued, generating, observed, workers, rate, expected", ETA)
def test_eta_from_the_generation_times_seen(queued, generating, observed, workers, rate, expected):
    got = eta_seconds(queued, generating, observed, workers=workers, submits_per_second=rate)
    assert got == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("left, downloaded, first, now, expected", [
    (10, 0, None, 100.0, None), (10, 1, 90.0, 100.0, None),  # no pace before two downloads
    (10, 5, 90.0, 100.0, 25.0),  # 4 more in 10 s since the first: 10 rows take 25 s
    (0, 5, 90.0, 100.0, 0.0),
])
def test_the_downloads_pace(left, downloaded, first, now, expected):
    assert fetch_seconds(left, downloaded, first, now) == expected


def test_a_length_not_seen_is_scaled_from_the_nearest_seen():
    assert generation_seconds(15, SEEN) == (105.0, 150.0)
    assert generation_seconds(10, SEEN) == pytest.approx((75.0, 100.0))  # 6 s is nearer than 15 s
    assert generation_seconds(10, {}) is None


@pytest.mark.parametrize("seconds, text", [(None, "unknown"), (0.2, "any moment"), (7, "7s"), (130, "2m10s"),
                                           (3600 + 5 * 60 + 7, "1h05m")])
def test_eta_text(seconds, text):
    assert format_eta(seconds) == text


def test_the_line_says_total_done_failed_in_flight_credits_and_eta():
    counters = Counters(planned=100, downloaded=67, failed=3, credits_charged=290, credits_planned=435)
    assert progress_line(counters, Gauge(30, 130.0)) == (
        "progress: 67/100 done (67%), 3 failed, 30 in flight, credits 290/435, ETA 2m10s")
    assert progress_line(counters, Gauge(30, None)).endswith("ETA unknown")
    counters.left_out = 10  # rows --max-credits left out are no longer this run's work
    assert progress_line(counters, Gauge(0, 0.0), final=True) == (
        "progress: 67/90 done (74%), 3 failed, 0 in flight, 10 left out by --max-credits, credits 290/435")
    assert progress_line(Counters(), None, final=True) == "progress: 0/0 done (100%), 0 failed, credits 0/0"


def test_the_plain_line_is_throttled_and_forced_at_close():
    counters = Counters(planned=4, downloaded=1, failed=1, credits_charged=30, credits_planned=40)
    out = io.StringIO()
    progress = Progress(counters, stream=out, interval=3600, bars=False, gauge=lambda: Gauge(2, 12.0))
    progress.update()
    progress.update()  # within the interval: no second line
    assert out.getvalue() == "progress: 1/4 done (25%), 1 failed, 2 in flight, credits 30/40, ETA 12s\n"
    counters.downloaded = 3
    progress.close()  # the last line: no ETA left to give
    assert out.getvalue().splitlines()[-1] == "progress: 3/4 done (75%), 1 failed, 2 in flight, credits 30/40"


def test_no_line_when_the_run_has_no_work():
    # Every row done already, or a run that stopped before any (the API not reached): no `0/0`.
    out = io.StringIO()
    progress = Progress(Counters(), stream=out, interval=0, bars=False)
    progress.update(force=True)
    progress.close()
    assert out.getvalue() == ""
    left_out = Counters(planned=3, left_out=3)  # all of it left out by --max-credits: that is news
    Progress(left_out, stream=out, bars=False).close()
    assert out.getvalue() == "progress: 0/0 done (100%), 0 failed, 3 left out by --max-credits, credits 0/0\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_one_bar_on_a_terminal_with_its_total_percentage_and_our_eta():
    counters = Counters(credits_planned=145)
    out = Terminal()
    progress = Progress(counters, stream=out, gauge=lambda: Gauge(10, 42.0))
    assert progress.bars
    progress.update()
    assert out.getvalue() == ""  # no total yet (the plan is not loaded): no bar
    counters.planned, counters.downloaded, counters.credits_charged = 10, 4, 55
    progress.update()
    drawn = out.getvalue().split("\r")[-1]
    assert drawn.startswith(" 40%|") and "| 4/10 done [00:00, 0 failed, 10 in flight, credits 55/145, ETA 42s]" in drawn
    assert "it/s" not in out.getvalue() and "<" not in out.getvalue()  # neither tqdm's rate nor its remaining
    counters.downloaded = 10
    progress.close()
    last = out.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("100%|") and last.endswith("| 10/10 done [00:00, 0 failed, 10 in flight, credits 55/145]")
    assert "{remaining}" not in BAR_FORMAT and "{rate" not in BAR_FORMAT
