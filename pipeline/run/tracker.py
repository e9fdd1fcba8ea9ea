"""Follow many in-flight jobs with few requests: the list endpoint reports 100 jobs per call.

Under a rate limit every status poll is a submit we cannot make, so instead of one polling loop
per job (the SDK's way: ~14 requests for a one-minute job) the tracker pages through
`GET /v2/jobs?status=COMPLETED` (and `?status=FAILED` once a job is late enough to have failed),
newest first, and stops as soon as every job it waits for is accounted for or the page has gone
older than the oldest of them. Jobs no list showed for far longer than jobs of their clip
duration take, and jobs an earlier run created, are read one by one (`GET /v2/jobs/{id}`),
which also catches states the lists skip (CANCELLED).

Cadence: no poll before the earliest moment a pending job could be done (learned per clip
duration from the jobs seen so far), and a poll of N requests waits until N requests are a small
share of the rate limit's worth of time (3 % while submits wait for the budget, 6 % after): a
deep poll is rare, a one-page poll near the end of a batch comes every few seconds.

Paging depth: how far back to page is set by the oldest pending job's creation time on the
server's clock. We know when we sent each submit on ours; the offset between the clocks is
bounded from below by every finished job (`createdAt` minus when its submit was answered), so
the bound tightens to the network round trip within the first poll, at any time scale.

Liberal in what it accepts (CONTRACT.md, "Job list"): the spec does not say how strictly
`status` filters, so every listed job's own `status` decides, and once a filtered page shows a
job of another status the filter is taken as ignored and one unfiltered listing per poll serves
every status. A list that answers 4xx (or a body that is not a job list) turns lists off for
the run: every job is then read on its own. A read that fails (404, timeout, an unreadable
answer) is handed back as an Observation with its error: what it means is decided in
pipeline/run/transitions.py, never here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Callable

from pipeline.api.client import ApiClient, ApiError, AuthError, NotFound, TransientError
from pipeline.api.retry import RetryPolicy
from pipeline.models import DEFAULT_MODEL
from pipeline.redact import redact
from pipeline.run.transitions import CLOCK_MARGIN_S, KEY_LIFETIME_S, ReadError, Search
from pipeline.api.wire import ENDED, GENERATING, ApiStatus, job_id_of, parse_api_time, same_request

LIST_STATUSES = (ApiStatus.COMPLETED, ApiStatus.FAILED)
# createdAt may be rounded to the second (the contract does not say), and before any job has
# finished the only clock offset we have is the Date header's, which is whole seconds. Doubled
# (up to a minute) whenever a job the lists should have shown turns up only when read on its own.
CREATED_MARGIN_S = 2.0
MAX_MARGIN_S = 60.0


PER_JOB_GAP_S = 1.0  # with lists off, the least time between two reads of one job
REREAD_PAUSE = RetryPolicy(base=0.5, cap=30.0, jitter=False)  # a job read again waits 0.5, 1, 2, 4 ... 30 s


@dataclass
class Observation:
    """What one poll learnt about one job: its object, or why there is none."""

    job_id: str
    job: Any = None
    error: ReadError | None = None
    detail: str = ""


async def read_job(client: ApiClient, job_id: str) -> Observation:
    """GET /v2/jobs/{id}, with a failure named by what it means (AuthError still raises: the
    caller stops). The one place that sorts a job read's failures."""
    try:
        return Observation(job_id, job=await client.get_job(job_id))
    except AuthError:
        raise
    except NotFound as exc:
        return Observation(job_id, error=ReadError.NOT_FOUND, detail=str(exc))
    except (ApiError, OSError) as exc:
        return Observation(job_id, error=ReadError.UNCERTAIN, detail=redact(str(exc)))


@dataclass
class Pending:
    job_id: str
    job_key: str
    duration: int
    created: float | None  # server epoch seconds, once the API has told us
    since: float  # monotonic time we started waiting
    last_seen: float  # monotonic time the API last told us anything about it
    sent: float  # our epoch seconds when its submit first left (the job cannot be older)
    answered: float  # our epoch seconds when its submit was answered (the job is not younger)
    timed: bool = True  # submitted by this run: its sent/answered times and its wait are real
    read_after: float = 0.0  # monotonic time before which it is not read on its own


class Tracker:
    def __init__(
        self,
        client: ApiClient,
        *,
        rate_per_second: float | None,
        min_interval: float = 1.0,
        max_interval: float = 30.0,
        busy_share: float = 0.03,
        idle_share: float = 0.06,
        model: str | None = DEFAULT_MODEL,
    ):
        self.client = client
        self.model = model  # the list's `model=` filter; None: every model (intake.py sets it)
        self.status_filter_ok = True  # False once a filtered page lists a job of another status
        self.lists_ok = True  # False once the list answers 4xx: every job is read on its own
        self.rate_per_second = rate_per_second
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.busy_share = busy_share
        self.idle_share = idle_share
        self.pending: dict[str, Pending] = {}
        # clip duration -> (fastest, slowest) seconds from submit to seen done
        self.observed: dict[int, tuple[float, float]] = {}
        self.last_poll = 0.0
        self.last_requests = 1
        self.requests = 0
        self.polls = 0
        # Pending jobs a webhook said have news: don't wait for estimates. Ids, not a flag, so
        # news about a job the poll in flight then reports does not buy one more poll.
        self.hinted_ids: set[str] = set()
        self.offset_low: float | None = None  # server clock minus ours is at least this
        self.margin = CREATED_MARGIN_S
        self.missed_by_lists = 0  # jobs found only by reading them one by one

    # -- membership --

    def add(self, job_id: str, job_key: str, duration: int, *, created: float | None = None,
            waited: float = 0.0, sent: float | None = None, resumed: bool = False,
            reread: int = 0) -> None:
        """Follow a job. `created`: its server creation time when known; `sent`: our clock when
        its submit first left (default: now). `resumed`: a job an earlier run may have created (a
        replayed submit, a job left in flight): its times say nothing about our clock or about
        how long jobs take, and unless `created` is given it is read on its own at the next poll,
        since no list depth can be trusted to reach it. `reread`: how many uncertain answers it has
        had; it is read on its own again after a pause that doubles with each."""
        now = time.monotonic()
        answered = time.time()
        pause = REREAD_PAUSE.delay(reread) if reread else 0.0
        self.pending[job_id] = Pending(job_id, job_key, duration, created, now - waited, now,
                                       answered if sent is None else sent, answered,
                                       timed=not resumed and not reread, read_after=now + pause)

    def _created_floor(self, p: Pending) -> float:
        """The earliest server time at which `p` can have been created."""
        if p.created is not None:
            return p.created
        if not p.timed:  # read on its own at the next poll; until then it sets no depth
            return float("inf")
        offset = self.offset_low if self.offset_low is not None else self.client.clock_offset - 1.0
        return p.sent + offset

    def _learn_clock(self, p: Pending, job: dict[str, Any]) -> None:
        created = parse_api_time(job.get("createdAt"))
        if created is None:
            return
        p.created = created
        if p.timed:  # only our own submits bound the clock offset
            low = created - p.answered
            self.offset_low = low if self.offset_low is None else max(self.offset_low, low)

    def discard(self, job_id: str) -> None:
        self.pending.pop(job_id, None)
        self.hinted_ids.discard(job_id)

    @property
    def hinted(self) -> bool:
        return bool(self.hinted_ids)

    def hint(self, job_id: str) -> bool:
        """A webhook named this job: poll at the next moment the budget allows."""
        if job_id in self.pending:
            self.hinted_ids.add(job_id)
        return self.hinted

    # -- cadence --

    def _earliest_done(self, duration: int) -> float:
        seen = self.observed.get(duration)
        if seen:
            return 0.9 * seen[0]
        # Nothing seen for this duration yet: longer clips take at least as long as shorter ones.
        shorter = [fast for d, (fast, _) in self.observed.items() if d < duration]
        return 0.9 * max(shorter) if shorter else 0.0

    def _overdue_after(self, duration: int) -> float:
        seen = self.observed.get(duration)
        return max(60.0, 3 * seen[1]) if seen else 600.0

    def _observe(self, duration: int, seconds: float) -> None:
        fast, slow = self.observed.get(duration, (seconds, seconds))
        self.observed[duration] = (min(fast, seconds), max(slow, seconds))

    def waited(self, job_id: str) -> float:
        """Seconds since the job's submit first left (for --job-timeout)."""
        p = self.pending[job_id]
        if p.created is not None:
            return max(0.0, time.time() + self.client.clock_offset - p.created)
        return max(0.0, time.time() - p.sent) if p.timed else time.monotonic() - p.since

    def next_delay(self, submits_waiting: bool, job_timeout: float | None = None) -> float:
        """Seconds until the next poll is worth its requests, or until the next job reaches
        `job_timeout` and is due its last read."""
        if not self.pending:
            return self.max_interval
        if job_timeout is not None:
            soonest = max(0.0, job_timeout - max(self.waited(j) for j in self.pending)) + 0.01
            return min(self.next_delay(submits_waiting), soonest)
        now = time.monotonic()
        ready = now if self.hinted else min(
            max(p.read_after, p.since + self._earliest_done(p.duration)) for p in self.pending.values())
        delay = max(ready - now, self.last_poll + self.min_interval - now)
        if self.rate_per_second:
            share = self.busy_share if submits_waiting else self.idle_share
            gap = self.last_requests / (share * self.rate_per_second)
            delay = max(delay, self.last_poll + gap - now)
        return min(max(delay, 0.0), self.max_interval)

    def _may_have_failed(self) -> bool:
        """Failures are rare, so the FAILED list is read only when it can tell us something: a
        pending job has waited longer than any job of its clip length took to complete (or none
        has completed yet), or a webhook brought news."""
        if self.hinted:
            return True
        now = time.monotonic()
        for p in self.pending.values():
            seen = self.observed.get(p.duration)
            if seen is None or now - p.since > seen[1]:
                return True
        return False

    # -- polling --

    async def _list(self, status: str | None, finished: dict[str, dict[str, Any]]) -> int:
        """Page one listing as deep as the oldest pending job; returns the requests it took."""
        oldest = min(self._created_floor(p) for p in self.pending.values()) - self.margin
        now = time.monotonic()
        requests, cursor = 0, None
        while True:
            try:
                page = await self.client.list_jobs(status=status, model=self.model, limit=100, cursor=cursor)
            except AuthError:
                raise
            except ApiError as exc:
                if exc.status is None or exc.status >= 500:
                    raise  # transient: the caller waits and polls again
                self.lists_ok = False  # 4xx: this API does not list jobs the way we ask
                return requests + 1
            requests += 1
            jobs = page.get("jobs") if isinstance(page, dict) else None
            if not isinstance(jobs, list):
                self.lists_ok = False  # not a job list: read jobs one by one from now on
                return requests
            for job in jobs:
                job_id = job_id_of(job)
                own = job.get("status") if isinstance(job, dict) else None
                if status is not None and own != status:
                    self.status_filter_ok = False  # its own status decides, never the filter
                p = self.pending.get(job_id) if job_id else None
                if p is None or job_id in finished:
                    continue
                p.last_seen = now
                if own in ENDED:
                    finished[job_id] = job
                else:
                    self._learn_clock(p, job)
            if len(finished) == len(self.pending) or not page.get("hasMore") or not jobs:
                return requests
            last = jobs[-1] if isinstance(jobs[-1], dict) else {}
            last_created = parse_api_time(last.get("createdAt"))
            if last_created is not None and last_created < oldest:
                return requests
            cursor = page.get("nextCursor")
            if not cursor:
                return requests

    async def poll(self) -> list[Observation]:
        """One round: what the API said about pending jobs that ended or could not be read. Those
        jobs leave `pending`; the caller adds back the ones it wants read again."""
        self.last_poll = time.monotonic()
        self.polls += 1
        statuses = self._statuses_to_list()  # before hints clear
        self.hinted_ids.clear()
        finished: dict[str, dict[str, Any]] = {}
        requests = await self._list_pages(statuses, finished)
        now = time.monotonic()
        observations: list[Observation] = []
        reads, first_reads = await self._read_singles(now, finished, observations)
        requests += reads
        self._settle(finished, now, observations)
        self.hinted_ids &= self.pending.keys()  # hints that came in while this poll ran
        # The one-off first reads of jobs an earlier run made set no cadence: after a crash with N
        # jobs in flight, the next poll should not wait as if every poll cost N requests.
        self.last_requests = max(1, requests - first_reads)
        self.requests += requests
        return observations

    def _statuses_to_list(self) -> tuple[str | None, ...]:
        if not self.status_filter_ok:
            return (None,)  # one unfiltered listing shows every status
        return LIST_STATUSES if self._may_have_failed() else (ApiStatus.COMPLETED,)

    async def _list_pages(self, statuses: tuple[str | None, ...], finished: dict[str, dict[str, Any]]) -> int:
        """Page each listing in turn into `finished`, until every pending job is accounted for;
        returns the requests it took."""
        requests = 0
        # Jobs of unknown age are read on their own below: a list cannot be paged deep enough for them.
        listable = any(p.timed or p.created is not None for p in self.pending.values())
        for status in statuses:
            if not listable or not self.lists_ok or len(finished) == len(self.pending):
                break
            requests += await self._list(status if self.status_filter_ok else None, finished)
        return requests

    async def _read_singles(self, now: float, finished: dict[str, dict[str, Any]],
                            observations: list[Observation]) -> tuple[int, int]:
        """Jobs of unknown age, jobs the lists did not show for far too long, jobs to read again,
        and every job when lists are off: read each one on its own. Returns the requests made and
        how many of them were first reads of jobs of unknown age."""
        requests = first_reads = 0
        for p in list(self.pending.values()):
            if p.job_id in finished or now < p.read_after:
                continue
            unknown = not p.timed and p.created is None
            first_reads += unknown
            if self.lists_ok and not unknown and now - p.last_seen < self._overdue_after(p.duration):
                continue
            if not self.lists_ok and p.last_seen > p.since and now - p.last_seen < PER_JOB_GAP_S:
                continue  # lists off: each job read at most once a second, not at every poll
            requests += 1
            p.last_seen = now
            await self._read_single(p, finished, observations)
        return requests, first_reads

    async def _read_single(self, p: Pending, finished: dict[str, dict[str, Any]],
                           observations: list[Observation]) -> None:
        seen = await read_job(self.client, p.job_id)
        if seen.error is not None:
            self.discard(p.job_id)
            observations.append(seen)
            return
        job = seen.job
        status = job.get("status") if isinstance(job, dict) else None
        if status in ENDED:
            finished[p.job_id] = job
            if p.timed and self.lists_ok and status in LIST_STATUSES:
                # The lists should have shown it: page deeper from now on.
                self.missed_by_lists += 1
                self.margin = min(MAX_MARGIN_S, self.margin * 2)
        elif status in GENERATING:
            self._learn_clock(p, job)
            observations.append(Observation(p.job_id, job=job))  # its cost, its state: still pending
        else:  # an answer we cannot read: the transitions decide
            self.discard(p.job_id)
            observations.append(Observation(p.job_id, job=job))

    def _settle(self, finished: dict[str, dict[str, Any]], now: float, observations: list[Observation]) -> None:
        """The jobs that ended leave `pending`; their waits teach the cadence."""
        for job_id, job in finished.items():
            p = self.pending.pop(job_id)
            self.hinted_ids.discard(job_id)
            self._learn_clock(p, job)
            if job.get("status") == ApiStatus.COMPLETED and p.timed:  # only waits this run measured
                self._observe(p.duration, now - p.since)
            observations.append(Observation(job_id, job=job))


SEARCH_PAGES = 50  # job-list pages read looking for an intent past the replay window (5,000 jobs)


@dataclass
class ListRead:
    """How far a read of the whole job list got."""

    pages: int = 0
    jobs: int = 0
    complete: bool = False  # read to the end of the list
    stopped: str | None = None  # why it stopped before the end (None: complete, or the page bound)
    oldest: float | None = None  # createdAt of the oldest job read, on the server's clock


async def job_pages(client: ApiClient, *, model: str | None, max_pages: int, read: ListRead) -> AsyncIterator[list[Any]]:
    """Page `GET /v2/jobs?model=` newest first (CONTRACT.md, "Job list": ordered by createdAt
    desc), yielding each page's jobs, to the list's end or `max_pages` pages: the one pager of the
    job list. `read` says how far it got; a request that fails, or a page that is not a job list,
    ends it with the reason in `read.stopped`."""
    cursor = None
    while read.pages < max_pages:
        try:
            page = await client.list_jobs(model=model, limit=100, cursor=cursor)
        except AuthError as exc:
            read.stopped = exc.stop_reason
            return
        except (ApiError, OSError) as exc:
            read.stopped = f"the job list could not be read: {redact(str(exc))}"
            return
        jobs = page.get("jobs") if isinstance(page, dict) else None
        if not isinstance(jobs, list):
            read.stopped = "the job list's answer is not a list of jobs"
            return
        read.pages += 1
        read.jobs += len(jobs)
        for job in reversed(jobs):
            created = parse_api_time(job.get("createdAt")) if isinstance(job, dict) else None
            if created is not None:
                read.oldest = created if read.oldest is None else min(read.oldest, created)
                break
        yield jobs
        if not page.get("hasMore") or not jobs:
            read.complete = True
            return
        cursor = page.get("nextCursor")
        if not cursor:
            read.stopped = "the job list says it has more, but gives no cursor to read on"
            return


async def read_job_list(client: ApiClient, *, model: str, max_pages: int,
                        on_page: Callable[[list[Any]], None]) -> ListRead:
    """The whole job list (or `max_pages` of it), each page handed to `on_page`; how far it got."""
    read = ListRead()
    async for jobs in job_pages(client, model=model, max_pages=max_pages, read=read):
        on_page(jobs)
    return read


async def find_in_job_list(client: ApiClient, *, model: str, body: dict[str, Any], bound: float | None,
                           taken: Callable[[str | None], bool], why_unbounded: str = "") -> Search:
    """Look for the job a journaled intent (`body`) made, newest first. `bound`: the API's time
    (transitions.search_bound) the list must be read back past; None when our clock and the
    API's cannot be compared (`why_unbounded` says why): a match is still adopted, but no read
    proves absence. `taken(job_id)`: the job already belongs to another row. Complete only when
    every job it read could be compared and it read back past `bound` or to the end of the list;
    what that means for money is transitions.after_search's."""
    read = ListRead()
    async with contextlib.aclosing(job_pages(client, model=model, max_pages=SEARCH_PAGES, read=read)) as pages:
        async for jobs in pages:
            for job in jobs:
                if not isinstance(job, dict) or not isinstance(job.get("input"), dict):
                    return Search(None, complete=False)  # a job we cannot compare: no proof of absence
                if same_request(job["input"], body) and not taken(job.get("id")):
                    return Search(job, complete=True)
            last = parse_api_time(jobs[-1].get("createdAt")) if jobs else None
            if last is not None and bound is not None and last < bound:
                return Search(None, complete=True)  # read back past the first send (API's clock)
    if read.stopped is not None:
        return Search(None, complete=False)
    if read.complete and bound is not None:
        return Search(None, complete=True)
    return Search(None, complete=False, why=why_unbounded if bound is None else "")


MAX_REFERENCE_BYTES = 25 * 1024 * 1024  # the API's upload limit for images (CONTRACT.md, Uploads)


class _Discard:
    def write(self, data: bytes) -> None:
        pass


async def _serves(client: ApiClient, url: Any, sha256: str) -> bool:
    """Does `url` still serve bytes with this sha256? Uploads live about 1-2 hours (CONTRACT.md)."""
    if not isinstance(url, str):
        return False
    try:
        _size, digest = await client.download(url, _Discard(), max_bytes=MAX_REFERENCE_BYTES)
    except (ApiError, TransientError, OSError):
        return False
    return digest == sha256


async def _all_serve(client: ApiClient, refs: list[Any], local: dict[int, str]) -> bool:
    for i, sha256 in local.items():
        if not await _serves(client, refs[i], sha256):
            return False
    return True


async def find_by_content(client: ApiClient, *, body: dict[str, Any], params_field: str, local: dict[int, str],
                          taken: Callable[[str | None], bool]) -> dict[str, Any] | None:
    """The job a 409 says our key already made with another body: after a lost journal, a local
    reference image uploaded again has a new URL, so the body differs while the key (named by
    content) is the same. A job is that one only when its `input` is our body but for the URLs
    of the local images (`local`: position -> sha256), and each of those URLs still serves bytes
    with that sha256: then it was made from this very request. Anything less (the upload expired,
    a list we cannot read) proves nothing: None, and the row stays uncertain.
    Read back over the key's 24 h on the API's clock, with the margin."""
    ours = (body.get(params_field) or {}).get("reference_images") or []
    oldest = time.time() + client.clock_offset - KEY_LIFETIME_S - CLOCK_MARGIN_S
    pages = job_pages(client, model=body.get("model"), max_pages=SEARCH_PAGES, read=ListRead())
    async with contextlib.aclosing(pages):
        async for jobs in pages:
            for job in jobs:
                listed = job.get("input") if isinstance(job, dict) else None
                params = listed.get(params_field) if isinstance(listed, dict) else None
                refs = params.get("reference_images") if isinstance(params, dict) else None
                if not isinstance(refs, list) or len(refs) != len(ours) or taken(job.get("id")):
                    continue
                swapped = {**listed, params_field: {**params, "reference_images": [
                    ours[i] if i in local else ref for i, ref in enumerate(refs)]}}
                if same_request(swapped, body) and await _all_serve(client, refs, local):
                    return job  # the same request to the byte: any such job, no other row's, serves this row
            last = parse_api_time(jobs[-1].get("createdAt")) if jobs and isinstance(jobs[-1], dict) else None
            if last is not None and last < oldest:
                return None
    return None
