"""How a run shows progress: tqdm bars on a terminal, a plain line at a steady interval otherwise (cron)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from tqdm import tqdm


@dataclass
class Counters:
    planned: int = 0  # rows this run has to bring to DOWNLOADED
    submitted: int = 0
    finished: int = 0  # generation ended (COMPLETED or final FAILED)
    downloaded: int = 0
    failed: int = 0
    credits_charged: int = 0


class Progress:
    """Draws Counters. `update()` is cheap to call often; output is throttled."""

    def __init__(self, counters: Counters, *, stream: TextIO | None = None, interval: float = 10.0,
                 bars: bool | None = None):
        self.counters = counters
        self.stream = stream or sys.stdout
        self.interval = interval
        self.bars = self.stream.isatty() if bars is None else bars
        self._last_line = 0.0
        self._tqdm: list[tqdm] = []
        if self.bars:
            total = counters.planned
            self._tqdm = [
                tqdm(total=total, desc=name, unit="job", position=i, leave=True, file=self.stream,
                     dynamic_ncols=True)
                for i, name in enumerate(("submitted ", "finished  ", "downloaded"))
            ]

    def update(self, force: bool = False) -> None:
        c = self.counters
        if self.bars:
            for bar, value in zip(self._tqdm, (c.submitted, c.finished, c.downloaded)):
                if value != bar.n:
                    bar.update(value - bar.n)
            self._tqdm[2].set_postfix(credits=c.credits_charged, failed=c.failed, refresh=False)
            return
        now = time.monotonic()
        if force or now - self._last_line >= self.interval:
            self._last_line = now
            print(
                f"progress: {c.submitted} submitted, {c.finished} finished, "
                f"{c.downloaded}/{c.planned} downloaded, {c.failed} failed, "
                f"{c.credits_charged} credits charged",
                file=self.stream, flush=True,
            )

    def close(self) -> None:
        self.update(force=True)
        for bar in self._tqdm:
            bar.close()
