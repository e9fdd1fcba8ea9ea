"""Every money decision in one place: (what the row knows, what the API said) -> (fields, next step).

Pure: no I/O, no clock, no randomness. The runner feeds it what happened and carries out what it
returns; tests/run/test_transitions.py checks every cell of the table below.

The rule: only a definite FAILED or CANCELLED status, read from the API for a job this ledger
owns, may start a new paid attempt (`Step.RESUBMIT`). Everything uncertain (an answer we cannot
read, a COMPLETED job whose result we cannot read, a 404 or 409, a timeout, our own exception)
leaves the row in flight with its job_id or its journaled intent (`Step.LEAVE`), after a bounded
number of new reads or replays (`Step.REREAD`, `Step.REPLAY`). Nothing uncertain becomes FAILED,
and nothing is submitted under a new key while an earlier key may have made a job.

| what happened                                  | next step                                      |
|------------------------------------------------|------------------------------------------------|
| submit 2xx with a job id                       | TRACK (READ_NOW if it says it already ended)   |
| submit 2xx without a readable id               | REPLAY same key, then LEAVE (intent kept)      |
| submit 400                                     | FAIL as REJECTED (nothing was made)            |
| submit 402                                     | LEAVE, stop submitting                         |
| submit 401/403                                 | LEAVE, stop the run                            |
| submit 409                                     | REPLAY same key after a pause, then LEAVE      |
| submit timeout / 5xx / other / our exception   | LEAVE (intent kept): "sent, answer not         |
|                                                | received"                                      |
| submit never connected (refused, unreachable)  | LEAVE (intent kept): "not submitted"           |
| job QUEUED / PROCESSING                        | TRACK                                          |
| job COMPLETED, result readable                 | DOWNLOAD                                       |
| job COMPLETED, expired                         | FAIL (expired; --retry-failed makes it again)  |
| job COMPLETED, result unreadable               | REREAD, then LEAVE                             |
| job FAILED / CANCELLED                         | RESUBMIT while retries last, else FAIL         |
| job answer unreadable / unknown status         | REREAD, then LEAVE                             |
| read 404 / timeout / 5xx / other               | REREAD, then LEAVE                             |
| read 401/403                                   | LEAVE, stop the run                            |
| job still generating past --job-timeout        | LEAVE                                          |
| download saved and verified                    | DONE                                           |
| CDN 404                                        | READ_NOW: expired -> FAIL; a new URL ->        |
|                                                | DOWNLOAD; anything else -> LEAVE               |
| download failed every try                      | LEAVE (the video exists; next run fetches it)  |
| intent older than 23 h, no job_id              | FIND it in the job list: found -> ADOPT;       |
|                                                | list read past the first send, no match ->     |
|                                                | RESUBMIT (new key), or FAIL for an archived    |
|                                                | version; list incomplete -> LEAVE              |
|                                                | (incomplete too while the clocks disagree by   |
|                                                | more than CLOCK_MARGIN_S, or none was read)    |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Iterable

from pipeline.api.client import AuthError, Conflict, InsufficientCredits, RejectedRequest, TransientError
from pipeline.store.schema import COMPLETED, DOWNLOADED, FAILED, PROCESSING, REJECTED, SUBMITTED
from pipeline.run.outcome import ExitCode
from pipeline.api.wire import ENDED, GENERATING, ApiStatus, job_id_of, parse_api_time, result_url

KEY_LIFETIME_S = 24 * 3600  # "Replaying the same key within 24 hours returns the original job" (spec)
# How far our clock and the API's may disagree (or their disagreement drift between an intent's
# first send and now) before no comparison between them is trusted to make a new key.
CLOCK_MARGIN_S = 3600.0
REPLAY_WINDOW_S = KEY_LIFETIME_S - CLOCK_MARGIN_S  # 23 h
# What a summary says of a submit that left without an answer coming back: a job may exist.
SENT_NO_ANSWER = "sent, answer not received (the next run asks again under the same Idempotency-Key)"


class Step(StrEnum):
    """The runner's next move with a row after an answer; the plan's `Action` (plan/actions.py) is what a
    run starts with a row, and shares no word with it."""

    FOLLOW = "follow"  # keep following the job
    READ_NOW = "read-now"  # read the job at once (a replay answered with a job that already ended)
    FETCH = "fetch"  # fetch video_url
    REREAD = "reread"  # read the job again after a pause
    REPLAY = "replay"  # send the journaled bytes again under the same key, after a pause
    RESUBMIT = "resubmit"  # a new paid attempt: only after a definite FAILED or CANCELLED
    LEAVE = "leave"  # nothing more this run: the row stays in flight for the next one
    DONE = "done"  # DOWNLOADED
    FAIL = "fail"  # a final FAILED or REJECTED is recorded


class Stop(StrEnum):
    NONE = ""
    SUBMITS = "submits"  # no new submits (402)
    RUN = "run"  # stop everything (401/403)


class SubmitError(StrEnum):
    REFUSED = "refused"  # 400/422: the body was refused, no job made
    NO_CREDITS = "no-credits"  # 402
    AUTH = "auth"  # 401/403
    CONFLICT = "conflict"  # 409: a request under this key may still be in flight
    UNCERTAIN = "uncertain"  # timeout, 5xx after retries, any other answer, our own exception
    UNSENT = "unsent"  # no try got a connection: the request never left this machine


class ReadError(StrEnum):
    NOT_FOUND = "not-found"  # 404: another account, or a read racing the write
    AUTH = "auth"
    UNCERTAIN = "uncertain"


class DownloadOutcome(StrEnum):
    SAVED = "saved"
    CDN_NOT_FOUND = "cdn-not-found"
    FAILED_TRIES = "failed-tries"


@dataclass(frozen=True)
class Limits:
    retries: int = 2  # new paid attempts after a FAILED generation
    rereads: int = 6  # uncertain reads of one job before it is left for the next run
    replays: int = 8  # 409s or id-less answers for one intent before it is left


@dataclass(frozen=True)
class Row:
    """What the row knows, as the runner holds it."""

    attempts: int = 1
    job_id: str | None = None
    video_url: str | None = None
    credits_prior: int = 0
    credits_charged: int = 0  # as the ledger has it now
    pays: bool = True  # the first row to record this job carries its cost
    may_spend: bool = True  # submits are not stopped and the budget allows one more attempt
    superseded: bool = False  # an archived version: followed to its end, never paid for again
    uncertain: int = 0  # uncertain reads or replays so far for the current job or intent
    after_cdn_404: bool = False  # this read follows a CDN 404 for video_url


@dataclass(frozen=True)
class Decision:
    step: Step
    fields: dict[str, Any] = field(default_factory=dict)  # ledger columns to record
    reason: str | None = None  # for the log, the summary and the ledger's `error`
    stop: Stop = Stop.NONE

    def __post_init__(self) -> None:
        if self.step is Step.LEAVE and self.fields.get("status") in (FAILED, REJECTED):
            raise AssertionError("an uncertain outcome may never become FAILED")  # the rule, kept


def _uncertain(row: Row, budget: int, again: Step, reason: str, **fields: Any) -> Decision:
    if row.uncertain < budget:
        return Decision(again, fields, reason)
    return Decision(Step.LEAVE, fields, f"{reason}; left in flight for the next run")


# -- submit --


def submit_error(exc: Exception) -> SubmitError:
    """What a submit's exception means (the table's left column); anything we cannot place,
    our own exceptions included, is uncertain."""
    for kind, error in ((RejectedRequest, SubmitError.REFUSED), (InsufficientCredits, SubmitError.NO_CREDITS),
                        (AuthError, SubmitError.AUTH), (Conflict, SubmitError.CONFLICT)):
        if isinstance(exc, kind):
            return error
    if isinstance(exc, TransientError) and not exc.reached:
        return SubmitError.UNSENT
    return SubmitError.UNCERTAIN


def after_submit(row: Row, answer: dict[str, Any] | None, error: SubmitError | None, limits: Limits,
                 detail: str = "") -> Decision:
    """The answer to POST /v2/videos/generate (or the error class it raised)."""
    if error is None:
        job_id = job_id_of(answer)
        if job_id is None:
            return _uncertain(row, limits.replays, Step.REPLAY,
                              "the API accepted the submit but its answer has no readable job id")
        fields = {"status": SUBMITTED, "job_id": job_id, "error": None}
        status = answer.get("status") if isinstance(answer, dict) else None
        step = Step.READ_NOW if status in ENDED else Step.FOLLOW
        return Decision(step, fields)
    if error is SubmitError.REFUSED:
        return Decision(Step.FAIL, {"status": REJECTED, "error": f"the API refused the request: {detail}"},
                        f"the API refused the request: {detail}")
    if error is SubmitError.NO_CREDITS:
        return Decision(Step.LEAVE, {}, "not submitted: insufficient credits", Stop.SUBMITS)
    if error is SubmitError.AUTH:
        return Decision(Step.LEAVE, {}, "not submitted: authentication failed", Stop.RUN)
    if error is SubmitError.CONFLICT:
        return _uncertain(row, limits.replays, Step.REPLAY,
                          "409: a request under this Idempotency-Key is still being processed")
    if error is SubmitError.UNSENT:
        return Decision(Step.LEAVE, {}, f"not submitted: {detail}")
    # The request may have made a job: the intent stays, and the next run asks under its key.
    return Decision(Step.LEAVE, {}, f"{SENT_NO_ANSWER}: {detail}")


# -- job reads --


def _charged(row: Row, job: dict[str, Any]) -> int:
    cost = job.get("creditCost")
    own = cost if isinstance(cost, int) and not isinstance(cost, bool) and row.pays else 0
    return row.credits_prior + own


def after_read(row: Row, job: Any, error: ReadError | None, limits: Limits, detail: str = "") -> Decision:
    """A read of the row's job: `job` is the API's object, or `error` says why there is none."""
    if error is ReadError.AUTH:
        return Decision(Step.LEAVE, {}, "authentication failed", Stop.RUN)
    if error is not None:
        what = "the API does not know this job (404)" if error is ReadError.NOT_FOUND else "the job could not be read"
        return _uncertain(row, limits.rereads, Step.REREAD, f"{what}{': ' + detail if detail else ''}")
    status = job.get("status") if isinstance(job, dict) else None
    if not isinstance(job, dict) or job_id_of(job) not in (None, row.job_id):
        return _uncertain(row, limits.rereads, Step.REREAD, "the job's answer could not be read")
    charged = _charged(row, job)
    if status in GENERATING:
        fields: dict[str, Any] = {"status": PROCESSING} if status == ApiStatus.PROCESSING else {}
        if charged != row.credits_charged:  # a job charged at its start: the ledger says so now
            fields["credits_charged"] = charged
        return Decision(Step.FOLLOW, fields)
    if status == ApiStatus.COMPLETED:
        completed = parse_api_time(job.get("completedAt"))
        base = {"credits_charged": charged, "expired": bool(job.get("expired"))}
        if completed is not None:
            base["completed_at"] = datetime.fromtimestamp(completed, timezone.utc)
        if job.get("expired") is True:
            reason = ("result expired before it was downloaded; run again with --retry-failed "
                      "to generate it again")
            return Decision(Step.FAIL, {**base, "status": FAILED, "error": reason}, "result expired")
        url = result_url(job.get("result"))
        if url is None:
            return _uncertain(row, limits.rereads, Step.REREAD,
                              "the API reported COMPLETED but its result has no readable video URL",
                              credits_charged=charged)
        if row.after_cdn_404 and url == row.video_url:
            return Decision(Step.LEAVE, {**base, "status": COMPLETED, "video_url": url},
                            "the CDN answered 404 for a result the API still lists; "
                            "run again to download it")
        return Decision(Step.FETCH, {**base, "status": COMPLETED, "video_url": url, "error": None})
    if status in (ApiStatus.FAILED, ApiStatus.CANCELLED):
        reason = str(job.get("error") or status.lower())
        fields = {"status": FAILED, "credits_charged": charged, "error": reason}
        if row.attempts < 1 + limits.retries and row.may_spend:
            return Decision(Step.RESUBMIT, fields, reason)
        return Decision(Step.FAIL, fields, reason)
    return _uncertain(row, limits.rereads, Step.REREAD, f"the job's status {status!r} is not one we know")


def job_timed_out(row: Row, waited_s: float, job_timeout_s: float | None) -> Decision | None:
    """A job still generating `waited_s` after its submit: left for the next run past the timeout."""
    if job_timeout_s is None or waited_s < job_timeout_s:
        return None
    return Decision(Step.LEAVE, {}, f"still generating {int(waited_s)} s after its submit "
                                    f"(--job-timeout {int(job_timeout_s)}); the next run follows it")


def after_last_read(row: Row, job: Any, error: ReadError | None, limits: Limits, timed_out: Decision) -> Decision:
    """The one read a job gets when --job-timeout leaves it: it may have ended meanwhile, and a
    job still generating is left with what it has cost so far on the row."""
    if error is not None:
        return timed_out
    decision = after_read(row, job, None, limits)
    if decision.step is Step.FOLLOW:
        return Decision(Step.LEAVE, decision.fields, timed_out.reason)
    return decision


# -- downloads --


def after_download(row: Row, outcome: DownloadOutcome, detail: str = "", *, limits: Limits) -> Decision:
    if outcome is DownloadOutcome.SAVED:
        return Decision(Step.DONE, {"status": DOWNLOADED, "error": None})
    if outcome is DownloadOutcome.CDN_NOT_FOUND:  # `row.uncertain` counts the CDN 404s so far
        return _uncertain(row, limits.rereads, Step.READ_NOW, "the CDN answered 404: reading the job again")
    reason = f"download failed: {detail}"
    return Decision(Step.LEAVE, {"error": reason}, reason)


# -- intents past the API's replay window --


@dataclass(frozen=True)
class Search:
    """What a look through the job list for an intent's body found."""

    match: dict[str, Any] | None  # the API's job whose `input` is the journaled body
    complete: bool  # the list was read back past the intent's first send
    why: str = ""  # when incomplete, what kept it so (for the reason the row is left)


def clocks_agree(offset: float | None) -> bool:
    """Whether our clock and the API's (offset: theirs minus ours, from the Date header; None:
    not measured) agree within the margin: only then may they be compared to make a new key."""
    return offset is not None and abs(offset) <= CLOCK_MARGIN_S


def replay_allowed(first_sent: float | None, now: float, offset: float | None) -> bool:
    """Within 23 h of its first send, a replay under the same key is settled by the API.

    `first_sent` and `now` are on our clock; the API ages the key on its own. The hour of margin
    covers the offset moving by up to an hour since the send; an offset over the margin now (or
    none measured) may not have been there at the send, so it is counted against the window."""
    if first_sent is None:
        return True
    skew = 0.0 if clocks_agree(offset) else abs(offset) if offset is not None else CLOCK_MARGIN_S
    return now - first_sent + skew <= REPLAY_WINDOW_S


def search_bound(first_sent: float | None, offset: float | None) -> float | None:
    """How far back, on the API's clock, the job list must be read before a missing job proves
    the intent made none: its first send, moved onto the API's clock by the measured offset, less
    the margin. None while the clocks are not known to agree within the margin: then no list
    read proves absence, and no new key is made."""
    if first_sent is None or not clocks_agree(offset):
        return None
    return first_sent + offset - CLOCK_MARGIN_S


def clock_disagreement(offset: float | None) -> str:
    """Why a search cannot be complete under `offset` (clocks_agree is False)."""
    if offset is None:
        return "no answer of the API has said its time yet (Date header)"
    side = "ahead of" if offset > 0 else "behind"
    return (f"the API's clock is {abs(offset) / 3600:.1f} h {side} this machine's (Date header), over the "
            f"{CLOCK_MARGIN_S / 3600:.0f} h margin: set this machine's clock right (NTP) and run again")


def after_search(row: Row, search: Search | None) -> Decision:
    """An intent without a job_id whose first send is more than 23 h old."""
    if search is not None and search.match is not None:
        job_id = job_id_of(search.match)
        return Decision(Step.READ_NOW, {"status": SUBMITTED, "job_id": job_id, "error": None},
                        "adopted the job the list shows for this request")
    if search is not None and search.complete and row.superseded:
        reason = "an earlier version, edited away before the API made its job: not sent again"
        return Decision(Step.FAIL, {"status": FAILED, "error": reason}, reason)
    if search is not None and search.complete and row.may_spend:
        return Decision(Step.RESUBMIT, {}, "no job for this request in the list back past its first "
                                          "send: a new attempt under a new key")
    if search is not None and search.complete:
        return Decision(Step.LEAVE, {}, "no job for this request in the list, and no spending allowed now")
    if search is not None and search.why:
        return Decision(Step.LEAVE, {}, f"its first send is over 23 h old and no job for it was found, "
                                        f"but {search.why}; left unsent, no new key")
    return Decision(Step.LEAVE, {}, "its first send is over 23 h old and the job list could not be "
                                    "read back that far: left unsent; run again, or check the "
                                    "account's jobs by hand before --retry-failed")


# -- the run as a whole --


@dataclass(frozen=True)
class Outcome:
    """Where a run's rows ended."""

    downloaded: int
    failed: frozenset[str]  # FAILED or REJECTED, including rows the plan left failed
    unfinished: frozenset[str]  # still in flight or never sent: the next run goes on with them
    exit_code: ExitCode


def run_outcome(statuses: dict[str, str | None], left_failed: Iterable[str], *, stopped: bool) -> Outcome:
    """`statuses`: each row the run took on, with its ledger status at the end (None: no row)."""
    ended = (DOWNLOADED, FAILED, REJECTED)
    failed = frozenset(k for k, s in statuses.items() if s in (FAILED, REJECTED)) | frozenset(left_failed)
    unfinished = frozenset(k for k, s in statuses.items() if s not in ended)
    return Outcome(sum(1 for s in statuses.values() if s == DOWNLOADED), failed, unfinished,
                   exit_code(stopped=stopped, unfinished=bool(unfinished), failed=bool(failed)))


def exit_code(*, stopped: bool, unfinished: bool, failed: bool) -> ExitCode:
    """A run that stopped early or left rows for the next one: 3, whatever failed; else 1 if a
    row is FAILED or REJECTED; else 0."""
    if stopped or unfinished:
        return ExitCode.STOPPED
    return ExitCode.FAILED_ROWS if failed else ExitCode.OK
