"""pipeline/api/retry.py: the backoff table and the retry loop, with asyncio.sleep recorded, not slept."""

from __future__ import annotations

import random

import pytest

from pipeline.api import retry as retry_module
from pipeline.api.retry import RetryPolicy


class Flaky(Exception):
    pass


class Bug(Exception):
    pass


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    """The delays the loop waited, in order; nothing really sleeps."""
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(retry_module.asyncio, "sleep", record)
    return delays


def failing(times: int, error: type[BaseException] = Flaky, result: str = "done"):
    """An attempt that raises `error` `times` times, then returns `result`; `.calls` counts tries."""
    async def attempt() -> str:
        attempt.calls += 1
        if attempt.calls <= times:
            raise error(f"try {attempt.calls}")
        return result
    attempt.calls = 0
    return attempt


@pytest.mark.parametrize("policy, delays", [
    (RetryPolicy(jitter=False), [0.5, 1, 2, 4, 8, 16, 30, 30, 30]),  # the default: capped at 30 s
    (RetryPolicy(base=1, cap=5, jitter=False), [1, 2, 4, 5, 5]),
    (RetryPolicy(base=0.25, cap=100, jitter=False), [0.25, 0.5, 1, 2, 4, 8]),
    (RetryPolicy(base=3, cap=2, jitter=False), [2, 2, 2]),  # the cap wins even over the first delay
])
def test_delays_without_jitter_double_up_to_the_cap(policy, delays):
    assert [policy.delay(n) for n in range(1, len(delays) + 1)] == delays


def test_the_default_policy_tries_twelve_times():
    assert RetryPolicy().attempts == 12  # ~1.5 minutes of 503s ridden out (the docstring's figure)


@pytest.mark.parametrize("failures, ceiling", [(1, 0.5), (3, 2.0), (7, 30.0), (20, 30.0)])
def test_full_jitter_draws_below_the_backoff_and_spreads_over_it(failures, ceiling):
    random.seed(failures)
    draws = [RetryPolicy().delay(failures) for _ in range(400)]
    assert all(0 <= d <= ceiling for d in draws)
    assert min(draws) < ceiling * 0.1 and max(draws) > ceiling * 0.9  # full jitter, not a fixed wait


async def test_retry_on_failures_are_tried_again_after_each_delay(slept):
    attempt = failing(3)
    seen = []
    result = await RetryPolicy(base=1, jitter=False).run(
        attempt, retry_on=(Flaky,), on_retry=lambda exc, n, delay: seen.append((str(exc), n, delay)))
    assert result == "done" and attempt.calls == 4
    assert seen == [("try 1", 1, 1), ("try 2", 2, 2), ("try 3", 3, 4)]
    assert slept == [1, 2, 4]


async def test_the_last_failure_is_raised_after_attempts_tries_in_all(slept):
    attempt = failing(100)
    with pytest.raises(Flaky, match="try 4"):
        await RetryPolicy(attempts=4, base=1, jitter=False).run(attempt, retry_on=(Flaky,))
    assert attempt.calls == 4 and slept == [1, 2, 4]  # no wait after the last try


@pytest.mark.parametrize("attempts", [1, 0])
async def test_one_attempt_means_no_retry(slept, attempts):
    attempt = failing(1)
    with pytest.raises(Flaky):
        await RetryPolicy(attempts=attempts).run(attempt, retry_on=(Flaky,))
    assert attempt.calls == 1 and slept == []


async def test_other_exceptions_pass_straight_through(slept):
    attempt = failing(1, error=Bug)
    with pytest.raises(Bug):
        await RetryPolicy().run(attempt, retry_on=(Flaky,))
    assert attempt.calls == 1 and slept == []


async def test_a_stopping_run_raises_the_failure_instead_of_waiting(slept):
    attempt = failing(5)
    with pytest.raises(Flaky, match="try 1"):
        await RetryPolicy().run(attempt, retry_on=(Flaky,), should_stop=lambda: True)
    assert attempt.calls == 1 and slept == []


async def test_a_stop_during_the_wait_raises_before_the_next_try(slept):
    attempt = failing(5)
    stopping = iter([False, True])  # asked before the wait (go on), then after it (stop)
    with pytest.raises(Flaky, match="try 1"):
        await RetryPolicy(jitter=False).run(attempt, retry_on=(Flaky,), should_stop=lambda: next(stopping))
    assert attempt.calls == 1 and slept == [0.5]
