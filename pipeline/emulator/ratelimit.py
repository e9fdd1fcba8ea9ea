"""Apiframe's rate limit as the emulator enforces it: a sliding window of requests per key."""

from __future__ import annotations

import math
from collections import deque


class SlidingWindow:
    """At most `limit` accepted requests in any `window` seconds.

    Keeps the times of accepted requests; a refused request is not counted, and its
    Retry-After is the whole seconds until the oldest counted request leaves the window.
    """

    def __init__(self, limit: int | None, window: float):
        self.limit = limit
        self.window = window
        self._times: dict[str, deque[float]] = {}

    def admit(self, key: str, now: float) -> int | None:
        """None if the request may go ahead (and it is counted), else Retry-After seconds."""
        if not self.limit:
            return None
        times = self._times.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.limit:
            times.append(now)
            return None
        return max(1, math.ceil(times[0] + self.window - now))
