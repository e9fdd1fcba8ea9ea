"""pipeline/run/progress.py: the plain progress line (cron, no terminal) says the counters, at most
once per interval unless forced, and tqdm bars follow the counters on a terminal."""

from __future__ import annotations

import io

from pipeline.run.progress import Counters, Progress

LINE = "progress: 3 submitted, 2 finished, 1/4 downloaded, 1 failed, 30 credits charged\n"


def test_the_plain_line_is_throttled_and_forced_at_close():
    counters = Counters(planned=4, submitted=3, finished=2, downloaded=1, failed=1, credits_charged=30)
    out = io.StringIO()
    progress = Progress(counters, stream=out, interval=3600, bars=False)
    progress.update()
    progress.update()  # within the interval: no second line
    assert out.getvalue() == LINE
    counters.downloaded = 2
    progress.close()
    assert out.getvalue().splitlines()[-1] == LINE.strip().replace("1/4", "2/4")


def test_bars_follow_the_counters():
    counters = Counters(planned=4)
    out = io.StringIO()
    progress = Progress(counters, stream=out, bars=True)
    counters.submitted, counters.finished, counters.downloaded = 4, 3, 2
    progress.update()
    assert [bar.n for bar in progress._tqdm] == [4, 3, 2]
    progress.close()
    assert "downloaded" in out.getvalue()
