"""Every cell of pipeline/run/transitions.py's table: what the row knows x what the API said."""

from __future__ import annotations

import pytest

from pipeline.run import transitions as t
from pipeline.api.client import AuthError, Conflict, InsufficientCredits, NotFound, RejectedRequest, TransientError
from pipeline.store.schema import COMPLETED, DOWNLOADED, FAILED, PROCESSING, REJECTED, SUBMITTED

LIMITS = t.Limits(retries=2, rereads=3, replays=4)
JOB = "7f1c1e49-5f36-4b0e-9d4e-0c2f7a9d3b11"
URL = "https://cdn.example/v.mp4"


def job(status: str, **extra) -> dict:
    return {"id": JOB, "status": status, "creditCost": 15, "createdAt": "2026-11-25T00:00:00.000Z",
            "completedAt": "2026-11-25T00:01:00Z" if status in ("COMPLETED", "FAILED") else None, **extra}


ROW = t.Row(attempts=1, job_id=JOB, credits_prior=10)


# -- submit: (answer, error) -> step, status recorded, stop --

SUBMITS = [
    ("accepted", {"jobId": JOB, "status": "QUEUED"}, None, t.Step.FOLLOW, SUBMITTED, t.Stop.NONE),
    ("accepted with id", {"id": JOB, "status": "QUEUED"}, None, t.Step.FOLLOW, SUBMITTED, t.Stop.NONE),
    ("replay of an ended job", {"jobId": JOB, "status": "COMPLETED"}, None, t.Step.READ_NOW, SUBMITTED, t.Stop.NONE),
    ("replay of a failed job", {"jobId": JOB, "status": "FAILED"}, None, t.Step.READ_NOW, SUBMITTED, t.Stop.NONE),
    ("2xx without an id", {"status": "QUEUED"}, None, t.Step.REPLAY, None, t.Stop.NONE),
    ("2xx not JSON", None, None, t.Step.REPLAY, None, t.Stop.NONE),
    ("2xx a list", [JOB], None, t.Step.REPLAY, None, t.Stop.NONE),
    ("400", None, t.SubmitError.REFUSED, t.Step.FAIL, REJECTED, t.Stop.NONE),
    ("402", None, t.SubmitError.NO_CREDITS, t.Step.LEAVE, None, t.Stop.SUBMITS),
    ("401", None, t.SubmitError.AUTH, t.Step.LEAVE, None, t.Stop.RUN),
    ("409", None, t.SubmitError.CONFLICT, t.Step.REPLAY, None, t.Stop.NONE),
    ("timeout or 5xx", None, t.SubmitError.UNCERTAIN, t.Step.LEAVE, None, t.Stop.NONE),
    ("never connected", None, t.SubmitError.UNSENT, t.Step.LEAVE, None, t.Stop.NONE),
]


@pytest.mark.parametrize("name, answer, error, step, status, stop", SUBMITS, ids=[c[0] for c in SUBMITS])
def test_after_submit(name, answer, error, step, status, stop):
    decision = t.after_submit(t.Row(attempts=1), answer, error, LIMITS, "detail")
    assert (decision.step, decision.fields.get("status"), decision.stop) == (step, status, stop)
    if status == SUBMITTED:
        assert decision.fields["job_id"] == JOB


@pytest.mark.parametrize("answer, error", [({"status": "QUEUED"}, None), (None, t.SubmitError.CONFLICT)])
def test_replays_are_bounded_then_the_intent_is_left(answer, error):
    assert t.after_submit(t.Row(uncertain=LIMITS.replays - 1), answer, error, LIMITS).step is t.Step.REPLAY
    left = t.after_submit(t.Row(uncertain=LIMITS.replays), answer, error, LIMITS)
    assert left.step is t.Step.LEAVE and "left in flight" in left.reason and "status" not in left.fields


# -- reads: (job or error) x (row) -> step, status, credits --

READS = [
    ("queued", job("QUEUED"), None, ROW, t.Step.FOLLOW, None, 25),
    ("processing", job("PROCESSING"), None, ROW, t.Step.FOLLOW, PROCESSING, 25),
    ("completed, object", job("COMPLETED", result={"videoUrl": URL}), None, ROW, t.Step.FETCH, COMPLETED, 25),
    ("completed, url", job("COMPLETED", result={"url": URL}), None, ROW, t.Step.FETCH, COMPLETED, 25),
    ("completed, string", job("COMPLETED", result=URL), None, ROW, t.Step.FETCH, COMPLETED, 25),
    ("completed, list", job("COMPLETED", result=[URL]), None, ROW, t.Step.FETCH, COMPLETED, 25),
    ("completed, videos of objects", job("COMPLETED", result={"videos": [{"url": URL}]}), None, ROW,
     t.Step.FETCH, COMPLETED, 25),
    ("completed, unreadable result", job("COMPLETED", result={"weird": 1}), None, ROW, t.Step.REREAD, None, 25),
    ("completed, no result", job("COMPLETED"), None, ROW, t.Step.REREAD, None, 25),
    ("completed, expired", job("COMPLETED", expired=True, result=URL), None, ROW, t.Step.FAIL, FAILED, 25),
    ("failed, retries left", job("FAILED", creditCost=0), None, ROW, t.Step.RESUBMIT, FAILED, 10),
    ("cancelled, retries left", job("CANCELLED", creditCost=0), None, ROW, t.Step.RESUBMIT, FAILED, 10),
    ("failed, retries spent", job("FAILED", creditCost=0), None, t.Row(attempts=3, job_id=JOB), t.Step.FAIL,
     FAILED, 0),
    ("failed, spending stopped", job("FAILED", creditCost=0), None, t.Row(job_id=JOB, may_spend=False),
     t.Step.FAIL, FAILED, 0),
    ("unknown status", job("PAUSED"), None, ROW, t.Step.REREAD, None, None),
    ("not an object", "garbage", None, ROW, t.Step.REREAD, None, None),
    ("another job's answer", {**job("COMPLETED", result=URL), "id": "someone-else"}, None, ROW, t.Step.REREAD,
     None, None),
    ("404", None, t.ReadError.NOT_FOUND, ROW, t.Step.REREAD, None, None),
    ("timeout", None, t.ReadError.UNCERTAIN, ROW, t.Step.REREAD, None, None),
    ("401", None, t.ReadError.AUTH, ROW, t.Step.LEAVE, None, None),
    ("a reused job is paid by its first row", job("COMPLETED", result=URL), None,
     t.Row(job_id=JOB, pays=False), t.Step.FETCH, COMPLETED, 0),
    ("cdn 404, same url", job("COMPLETED", result=URL), None,
     t.Row(job_id=JOB, video_url=URL, after_cdn_404=True), t.Step.LEAVE, COMPLETED, 15),
    ("cdn 404, a new url", job("COMPLETED", result=URL + "?fresh"), None,
     t.Row(job_id=JOB, video_url=URL, after_cdn_404=True), t.Step.FETCH, COMPLETED, 15),
    ("cdn 404, expired", job("COMPLETED", result=URL, expired=True), None,
     t.Row(job_id=JOB, video_url=URL, after_cdn_404=True), t.Step.FAIL, FAILED, 15),
]


@pytest.mark.parametrize("name, answer, error, row, step, status, charged", READS, ids=[c[0] for c in READS])
def test_after_read(name, answer, error, row, step, status, charged):
    decision = t.after_read(row, answer, error, LIMITS)
    assert (decision.step, decision.fields.get("status"), decision.fields.get("credits_charged")) == \
        (step, status, charged)
    if step is t.Step.FETCH:
        assert decision.fields["video_url"].startswith(URL)
    if error is t.ReadError.AUTH:
        assert decision.stop is t.Stop.RUN


@pytest.mark.parametrize("answer, error", [(None, t.ReadError.NOT_FOUND), (None, t.ReadError.UNCERTAIN),
                                           (job("COMPLETED", result=None), None), ("garbage", None)])
def test_uncertain_reads_are_bounded_then_left_in_flight_never_failed(answer, error):
    assert t.after_read(t.Row(job_id=JOB, uncertain=LIMITS.rereads - 1), answer, error, LIMITS).step is t.Step.REREAD
    left = t.after_read(t.Row(job_id=JOB, uncertain=LIMITS.rereads), answer, error, LIMITS)
    assert left.step is t.Step.LEAVE and left.fields.get("status") not in (FAILED, REJECTED)


def test_an_uncertain_outcome_can_never_be_recorded_as_failed():
    with pytest.raises(AssertionError):
        t.Decision(t.Step.LEAVE, {"status": FAILED})


@pytest.mark.parametrize("waited, timeout, left", [(10, 1800, False), (1800, 1800, True), (5000, None, False)])
def test_job_timeout(waited, timeout, left):
    decision = t.job_timed_out(ROW, waited, timeout)
    assert (decision is not None) == left
    if left:
        assert decision.step is t.Step.LEAVE and "--job-timeout" in decision.reason and not decision.fields


DOWNLOADS = [
    (t.DownloadOutcome.SAVED, t.Row(), t.Step.DONE, DOWNLOADED),
    (t.DownloadOutcome.CDN_NOT_FOUND, t.Row(), t.Step.READ_NOW, None),
    (t.DownloadOutcome.CDN_NOT_FOUND, t.Row(uncertain=LIMITS.rereads), t.Step.LEAVE, None),
    (t.DownloadOutcome.FAILED_TRIES, t.Row(), t.Step.LEAVE, None),
]


@pytest.mark.parametrize("outcome, row, step, status", DOWNLOADS)
def test_after_download(outcome, row, step, status):
    decision = t.after_download(row, outcome, "cut short", limits=LIMITS)
    assert (decision.step, decision.fields.get("status")) == (step, status)


DAY = 24 * 3600


@pytest.mark.parametrize("first_sent, now, offset, allowed", [
    (None, 1e9, None, True), (1e9, 1e9 + 3600, 0.4, True), (1e9, 1e9 + 23 * 3600, -0.4, True),
    (1e9, 1e9 + DAY, 0.0, False),
    (1e9, 1e9 + 21 * 3600, 2 * 3600.0, True), (1e9, 1e9 + 22 * 3600, -2 * 3600.0, False),  # skew counted
    (1e9, 1e9 + 22 * 3600, None, True), (1e9, 1e9 + 22.5 * 3600, None, False),  # none measured: the margin
])
def test_replay_window(first_sent, now, offset, allowed):
    assert t.replay_allowed(first_sent, now, offset) is allowed


@pytest.mark.parametrize("offset, bound", [
    (0.0, 1e9 - 3600), (-1800.0, 1e9 - 1800 - 3600), (1800.0, 1e9 + 1800 - 3600),  # on the API's clock
    (2 * 3600.0, None), (-2 * 3600.0, None), (None, None),  # clocks apart, or unknown: nothing proves absence
])
def test_the_search_bound_is_on_the_apis_clock_with_a_margin(offset, bound):
    assert t.search_bound(1e9, offset) == bound


SEARCHES = [
    ("found", t.Search(job("QUEUED"), complete=True), t.Row(), t.Step.READ_NOW),
    ("read back, no match", t.Search(None, complete=True), t.Row(), t.Step.RESUBMIT),
    ("read back, no match, no spending", t.Search(None, complete=True), t.Row(may_spend=False), t.Step.LEAVE),
    ("list incomplete", t.Search(None, complete=False), t.Row(), t.Step.LEAVE),
    ("list unreadable", None, t.Row(), t.Step.LEAVE),
]


@pytest.mark.parametrize("name, search, row, step", SEARCHES, ids=[c[0] for c in SEARCHES])
def test_after_search(name, search, row, step):
    decision = t.after_search(row, search)
    assert decision.step is step
    if step is t.Step.READ_NOW:
        assert decision.fields == {"status": SUBMITTED, "job_id": JOB, "error": None}


@pytest.mark.parametrize("answer, error, step, status", [
    (job("PROCESSING"), None, t.Step.LEAVE, PROCESSING),  # still generating: left, its state recorded
    (job("COMPLETED", result=URL), None, t.Step.FETCH, COMPLETED),  # it ended meanwhile
    (job("FAILED", creditCost=0), None, t.Step.RESUBMIT, FAILED),  # a definite FAILED, as in any read
    (None, t.ReadError.NOT_FOUND, t.Step.LEAVE, None),  # no readable answer: the timeout stands
    (None, t.ReadError.AUTH, t.Step.LEAVE, None),
])
def test_the_last_read_at_the_job_timeout(answer, error, step, status):
    timed_out = t.job_timed_out(ROW, 1900, 1800)
    decision = t.after_last_read(ROW, answer, error, LIMITS, timed_out)
    assert (decision.step, decision.fields.get("status")) == (step, status)
    if step is t.Step.LEAVE:
        assert decision.reason == timed_out.reason


@pytest.mark.parametrize("exc, error", [
    (RejectedRequest("bad prompt", 400), t.SubmitError.REFUSED),
    (InsufficientCredits("no credits", 402), t.SubmitError.NO_CREDITS),
    (AuthError("bad key", 401), t.SubmitError.AUTH),
    (Conflict("in progress", 409), t.SubmitError.CONFLICT),
    (NotFound("what", 404), t.SubmitError.UNCERTAIN),  # a 404 to a submit proves nothing
    (TransientError("timeout"), t.SubmitError.UNCERTAIN),
    (ConnectionResetError(), t.SubmitError.UNCERTAIN),
    (KeyError("our own bug"), t.SubmitError.UNCERTAIN),
])
def test_a_submits_exception_is_placed_in_the_table(exc, error):
    assert t.submit_error(exc) is error


def unsent(message: str) -> TransientError:
    error = TransientError(message)
    error.reached = False
    return error


@pytest.mark.parametrize("error, says", [
    (t.SubmitError.UNCERTAIN, "sent, answer not received (the next run asks again under the same Idempotency-Key): "),
    (t.SubmitError.UNSENT, "not submitted: "),
])
def test_a_submit_left_without_an_answer_is_said_to_be_sent_and_one_that_never_connected_is_not(error, says):
    assert t.submit_error(unsent("connection failed")) is t.SubmitError.UNSENT
    decision = t.after_submit(t.Row(attempts=1), None, error, LIMITS, "POST /v2/videos/generate: no answer in time")
    assert decision.step is t.Step.LEAVE and decision.fields == {}
    assert decision.reason == says + "POST /v2/videos/generate: no answer in time"


@pytest.mark.parametrize("statuses, left_failed, stopped, code, failed, unfinished", [
    ({"a": DOWNLOADED, "b": DOWNLOADED}, [], False, 0, set(), set()),
    ({"a": DOWNLOADED, "b": REJECTED}, [], False, 1, {"b"}, set()),
    ({"a": DOWNLOADED}, ["old"], False, 1, {"old"}, set()),  # left FAILED by the plan still counts
    ({"a": DOWNLOADED, "b": PROCESSING, "c": None}, [], False, 3, set(), {"b", "c"}),  # c: never sent
    ({"a": FAILED, "b": SUBMITTED}, [], False, 3, {"a"}, {"b"}),  # left rows outrank failed ones
    ({"a": DOWNLOADED}, [], True, 3, set(), set()),  # stopped early (402, deadline, Ctrl-C)
])
def test_where_a_runs_rows_ended_decides_its_exit_code(statuses, left_failed, stopped, code, failed, unfinished):
    outcome = t.run_outcome(statuses, left_failed, stopped=stopped)
    assert (int(outcome.exit_code), set(outcome.failed), set(outcome.unfinished)) == (code, failed, unfinished)
    assert outcome.downloaded == sum(1 for s in statuses.values() if s == DOWNLOADED)
