"""A manifest's rows against the jobs the API keeps: what `videobatch reconcile` reports and adopts.

The API keeps every job with its `input`, the request as it accepted it (CONTRACT.md, "Job
list"), so the books can be rebuilt and audited from the API itself: after the ledger's disk is
lost, or once a month. A job belongs to a row when its `input` is the request the row would send
(`models.request_body`, compared as `wire.same_request` compares: model, prompt, duration,
aspect ratio, references). A local reference image went out as an upload URL that cannot be
rebuilt, so a row with one is matched on everything else and said to be.

The report names three differences: paid jobs no ledger row records, rows the ledger has in
flight that the API does not show, and the ledger's credits against the API's `creditCost`.
`--adopt` records each matching job into the row with no live job of its own (the newest job
that did not fail; never one another row already records), so the next run follows and downloads
it instead of paying for it again.

Pure: `JobCollector` is fed the pages of the job list, `reconcile` takes what the ledger holds
and returns the findings and the ledger changes an adoption makes. Reading the API and writing
the ledger are batch.reconcile_batch's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import polars as pl

from pipeline.run import transitions as t
from pipeline.api.wire import ApiStatus, job_id_of, parse_api_time, request_shape, same_request
from pipeline.models import get_model
from pipeline.run.references import is_remote, row_params
from pipeline.plan.actions import ROW_FIELDS
from pipeline.store.schema import FAILED, IN_FLIGHT, PENDING, REJECTED, SUBMITTED
from pipeline.run.outcome import ExitCode

LOCAL_IMAGE = "<local file>"  # a reference image the run uploads: its URL is the API's to choose
SHOWN = 20  # lines of each kind in the text report (--json has them all)
LEDGER_COLUMNS = ["job_key", "manifest", "request_hash", "status", "job_id", "attempts", "idempotency_key",
                  "request_body", "credits_charged", "credits_prior", "first_sent_at"]


@dataclass(frozen=True)
class ApiJob:
    """A job as the API listed it, with what the books need of it."""

    id: str
    status: str | None
    cost: int | None  # creditCost: what was charged (a FAILED job is refunded: 0)
    created: float | None  # server epoch seconds
    raw: dict[str, Any]

    @classmethod
    def of(cls, job: dict[str, Any]) -> ApiJob | None:
        job_id = job_id_of(job)
        if job_id is None:
            return None
        cost = job.get("creditCost")
        return cls(job_id, job.get("status"), cost if isinstance(cost, int) and not isinstance(cost, bool) else None,
                   parse_api_time(job.get("createdAt")), job)

    @property
    def failed(self) -> bool:
        return self.status in (ApiStatus.FAILED, ApiStatus.CANCELLED)

    @property
    def paid(self) -> bool:
        """Charged, or may be: a cost we cannot read counts unless the job failed."""
        return self.cost > 0 if self.cost is not None else not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.id, "status": self.status, "credit_cost": self.cost,
                "created_at": _iso(self.created)}


@dataclass(frozen=True)
class Wanted:
    """A manifest row: its key, and its fields as the ledger takes them (runner.ROW_FIELDS)."""

    job_key: str
    fields: dict[str, Any]


@dataclass
class Group:
    """The manifest rows that send one request (a row's `count` variations), and its jobs."""

    shape: tuple
    rows: list[Wanted]
    jobs: dict[str, ApiJob] = field(default_factory=dict)

    @property
    def by_prompt_only(self) -> bool:
        """A local reference image: matched on everything but the image URLs."""
        return LOCAL_IMAGE in self.shape[4]

    @property
    def keys(self) -> list[str]:
        return [w.job_key for w in self.rows]


class RequestIndex:
    """Which manifest rows a job's `input` asks for, as their request shape (wire.request_shape)."""

    def __init__(self, rows: pl.DataFrame):
        # (shape, local images): rows that differ only in a local image are not one request.
        self.groups: dict[tuple, Group] = {}
        self._loose: dict[tuple, list[Group]] = {}  # (model, prompt, duration, ratio, n images) -> groups
        for r in rows.iter_rows(named=True):
            refs = r["reference_images"] or []
            shape = request_shape(get_model(r["model"]).request_body(
                r["prompt"], r["duration"], r["aspect_ratio"], [ref if is_remote(ref) else LOCAL_IMAGE for ref in refs],
                params=row_params(r)))  # a local image in params matches no listed URL: never adopted on a guess
            key = (shape, tuple(ref for ref in refs if not is_remote(ref)))
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = Group(shape, [])
                if group.by_prompt_only:
                    self._loose.setdefault(shape[:4] + (len(shape[4]), shape[5]), []).append(group)
            group.rows.append(Wanted(r["job_key"], {name: r[name] for name in ROW_FIELDS}))

    def match(self, listed_input: Any) -> list[Group]:
        """The groups a job's input asks for: none, one, or (uploads told apart by nothing else) several."""
        shape = request_shape(listed_input)
        if shape is None or not isinstance(shape[4], tuple):
            return []
        exact = self.groups.get((shape, ()))
        if exact is not None:
            return [exact]
        return [g for g in self._loose.get(shape[:4] + (len(shape[4]), shape[5]), ())
                if all(mine in (LOCAL_IMAGE, theirs) for mine, theirs in zip(g.shape[4], shape[4]))]


class JobCollector:
    """Fed the job list page by page: keeps the jobs that match a manifest row (one copy each) and
    the ids of every job shown, so an audit of a long history holds only what concerns it."""

    def __init__(self, index: RequestIndex):
        self.index = index
        self.shown: set[str] = set()
        self.ambiguous: dict[str, tuple[ApiJob, list[Group]]] = {}
        self.uncomparable = 0  # listed jobs with no input to compare: they could be ours

    def add_page(self, jobs: list[Any]) -> None:
        for job in jobs:
            self.add(job)

    def add(self, job: Any) -> None:
        found = ApiJob.of(job) if isinstance(job, dict) else None
        if found is None or not isinstance(job.get("input"), dict):
            self.uncomparable += 1
            if found is not None:
                self.shown.add(found.id)
            return
        self.shown.add(found.id)
        groups = self.index.match(job["input"])
        if len(groups) == 1:
            groups[0].jobs[found.id] = found
        elif groups:
            self.ambiguous[found.id] = (found, groups)

    @property
    def matched(self) -> dict[str, ApiJob]:
        jobs = {job_id: job for g in self.index.groups.values() for job_id, job in g.jobs.items()}
        return jobs | {job_id: job for job_id, (job, _) in self.ambiguous.items()}


@dataclass
class Finding:
    """A job no ledger row records, and what becomes of it."""

    job: ApiJob
    rows: list[str]  # the manifest rows it matches
    by_prompt_only: bool
    adopt_into: str | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {**self.job.as_dict(), "rows": self.rows, "by_prompt_only": self.by_prompt_only,
                "adopt_into": self.adopt_into, "note": self.note}


@dataclass
class InFlight:
    """A row the ledger has in flight (a job_id, or an intent that may have made a job)."""

    job_key: str
    status: str
    job_id: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"job_key": self.job_key, "status": self.status, "job_id": self.job_id, "detail": self.detail}


@dataclass
class Credits:
    rows: list[str]
    ledger: int
    api: int

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "ledger": self.ledger, "api": self.api}


@dataclass
class Reconciliation:
    rows: int
    matched_rows: int
    matched_jobs: int
    by_prompt_rows: int  # rows matched on everything but their (local) reference images
    unknown: list[Finding]  # paid jobs no ledger row records
    unpaid: list[Finding]  # failed jobs, refunded, no ledger row records: earlier attempts
    missing: list[InFlight]  # in flight in the ledger, not shown by the API
    unsettled: list[InFlight]  # in flight in the ledger; the pages read could not say
    several: list[tuple[list[str], list[ApiJob]]]  # rows with more jobs than rows, every job
    credits: Credits  # the manifest's rows and the rows that record its jobs, against the API
    credit_lines: list[Credits]  # the rows whose credits differ
    adoptions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return bool(self.unknown or self.missing or self.credit_lines
                    or self.credits.ledger != self.credits.api)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "matched_rows": self.matched_rows, "matched_jobs": self.matched_jobs,
            "rows_matched_by_prompt_only": self.by_prompt_rows, "books_agree": not self.differs,
            "unknown_paid_jobs": [f.as_dict() for f in self.unknown],
            "unknown_failed_jobs": [f.as_dict() for f in self.unpaid],
            "in_flight_not_shown": [m.as_dict() for m in self.missing],
            "in_flight_unsettled": [m.as_dict() for m in self.unsettled],
            "rows_with_several_jobs": [{"rows": keys, "jobs": [j.as_dict() for j in jobs]}
                                       for keys, jobs in self.several],
            "credits": self.credits.as_dict(), "credits_differ": [c.as_dict() for c in self.credit_lines],
            "adopt": [key for key, _ in self.adoptions],
        }


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z") if ts is not None else None


def _newest_first(jobs) -> list[ApiJob]:
    return sorted(jobs, key=lambda j: (j.created is not None, j.created or 0.0), reverse=True)


def _open_for(group: Group, ledger: dict[str, dict[str, Any]], w: Wanted) -> bool:
    """May a job be adopted into this row: it has no live job of its own. An intent in a row of
    several variations is left to the run's replay: its key, not the list, says which job is its."""
    row = ledger.get(w.job_key)
    if row is None or row["status"] in (FAILED, REJECTED):
        return True
    return row["status"] == PENDING and (row["idempotency_key"] is None or len(group.rows) == 1)


def adoption_fields(w: Wanted, job: ApiJob, row: dict[str, Any] | None, earlier: list[ApiJob]) -> dict[str, Any]:
    """The ledger fields that take `job` into row `w`: what the API says of it, read as a run
    reads a job (transitions.after_read), with its cost on top of what the row paid before.
    `earlier`: failed jobs of the row no ledger row records (a row the ledger lost), counted as
    its earlier attempts."""
    intent = row is not None and row["status"] == PENDING and row["idempotency_key"] is not None
    before = int(row["credits_charged"] or 0) if row is not None else sum(j.cost or 0 for j in earlier)
    attempts = int(row["attempts"] or 0) if row is not None else len(earlier)
    fields: dict[str, Any] = {
        **w.fields, "status": SUBMITTED, "job_id": job.id, "attempts": attempts if intent else attempts + 1,
        "credits_prior": before, "credits_charged": before, "video_url": None, "expired": False,
        "output_path": None, "bytes": None, "sha256": None, "error": None, "completed_at": None,
        "submitted_at": datetime.fromtimestamp(job.created, timezone.utc) if job.created is not None else None,
    }
    if not intent:  # the body and key that made this job are not known here: none is claimed
        fields.update(idempotency_key=None, request_body=None, first_sent_at=None)
    seen = t.after_read(t.Row(attempts=fields["attempts"], job_id=job.id, credits_prior=before,
                              credits_charged=before), job.raw, None, t.Limits())
    return {**fields, **seen.fields}


@dataclass
class _Books:
    """What `reconcile` finds, filled in one request (Group) at a time."""

    unknown: list[Finding] = field(default_factory=list)
    unpaid: list[Finding] = field(default_factory=list)
    several: list[tuple[list[str], list[ApiJob]]] = field(default_factory=list)
    adoptions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    credit_lines: list[Credits] = field(default_factory=list)
    counted: set[str] = field(default_factory=set)  # the ledger rows whose credits stand against the API's

    def found(self, finding: Finding) -> None:
        (self.unknown if finding.job.paid else self.unpaid).append(finding)


def reconcile(collector: JobCollector, ledger: dict[str, dict[str, Any]], *, manifest: str,
              not_shown: dict[str, str], unread: dict[str, str], list_complete: bool,
              list_oldest: float | None, clock_offset: float) -> Reconciliation:
    """The books of a manifest against the jobs the API showed.

    `ledger`: the ledger's rows (LEDGER_COLUMNS) of the manifest's keys, of its archived versions
    (same `manifest`), and of every row that records a matched job. `not_shown`: in-flight job
    ids the API answered 404 for, read one by one; `unread`: those it could not be asked about.
    `list_oldest`, `clock_offset`: how far back the list was read, and the server's clock minus ours.
    """
    index = collector.index
    recorded: dict[str, list[str]] = {}
    for key, row in ledger.items():
        if row["job_id"]:
            recorded.setdefault(row["job_id"], []).append(key)
    books = _Books()
    for group in index.groups.values():
        _reconcile_group(group, ledger, recorded, books)
    _reconcile_ambiguous(collector, recorded, books)
    matched = collector.matched
    missing, unsettled = _in_flight(collector, ledger, manifest, not_shown, unread, list_complete,
                                    list_oldest, clock_offset)
    credits = Credits([], sum(int(ledger[k]["credits_charged"] or 0) for k in books.counted),
                      sum(j.cost or 0 for j in matched.values()))
    groups = index.groups.values()
    unsure = {id(g) for _, gs in collector.ambiguous.values() for g in gs}
    hit = [g for g in groups if g.jobs or id(g) in unsure]
    return Reconciliation(
        rows=sum(len(g.rows) for g in groups), matched_rows=sum(len(g.rows) for g in hit),
        matched_jobs=len(matched), by_prompt_rows=sum(len(g.rows) for g in hit if g.by_prompt_only),
        unknown=books.unknown, unpaid=books.unpaid, missing=missing, unsettled=unsettled, several=books.several,
        credits=credits, credit_lines=books.credit_lines, adoptions=books.adoptions)


def _takers(group: Group, ledger: dict[str, dict[str, Any]],
            fresh: list[ApiJob]) -> tuple[dict[str, Wanted], dict[str, list[ApiJob]]]:
    """Of the jobs no row records (`fresh`, newest first): the row each job that did not fail is
    adopted into, and the failed jobs each row the ledger lost counts as its earlier attempts."""
    live = [j for j in fresh if not j.failed]
    failed = [j for j in fresh if j.failed]
    # The newest job that did not fail goes to the first row with no live job of its own.
    taken = {job.id: w for w, job in zip([w for w in group.rows if _open_for(group, ledger, w)], live)}
    # Rows the ledger lost count the failed jobs as their earlier attempts, oldest first, in turn.
    lost = [w.job_key for w in taken.values() if w.job_key not in ledger]
    earlier: dict[str, list[ApiJob]] = {key: [] for key in lost}
    for n, job in enumerate(reversed(failed) if lost else ()):
        earlier[lost[n % len(lost)]].append(job)
    return taken, earlier


def _reconcile_group(group: Group, ledger: dict[str, dict[str, Any]], recorded: dict[str, list[str]],
                     books: _Books) -> None:
    """One request's rows against its jobs: each job no row records is adopted or said why not,
    and the credits of the rows that record the jobs stand against the jobs' costs."""
    jobs = _newest_first(group.jobs.values())
    if len(jobs) > len(group.rows):
        books.several.append((group.keys, jobs))
    fresh = [j for j in jobs if j.id not in recorded]
    taken, earlier = _takers(group, ledger, fresh)
    for job in fresh:
        finding = Finding(job, group.keys, group.by_prompt_only)
        w = taken.get(job.id)
        if w is not None:
            finding.adopt_into = w.job_key
            books.adoptions.append(
                (w.job_key, adoption_fields(w, job, ledger.get(w.job_key), earlier.get(w.job_key, []))))
        elif job.failed:
            finding.note = "failed: an earlier attempt"
        else:  # the account paid for this request more than once
            finding.note = "not adopted: " + ("a newer job of this request was adopted" if taken
                                              else "its row already has a job of its own")
        books.found(finding)
    counted = {k for j in jobs for k in recorded.get(j.id, ())} | {k for k in group.keys if k in ledger}
    books.counted |= counted
    mine = Credits(group.keys, sum(int(ledger[k]["credits_charged"] or 0) for k in counted),
                   sum(j.cost or 0 for j in jobs))
    if mine.ledger != mine.api:
        books.credit_lines.append(mine)


def _reconcile_ambiguous(collector: JobCollector, recorded: dict[str, list[str]], books: _Books) -> None:
    """Jobs whose request matches several rows that differ only in local images: never adopted."""
    for job, groups in collector.ambiguous.values():
        keys = [k for g in groups for k in g.keys]
        books.counted |= set(recorded.get(job.id, ()))
        if job.id not in recorded:
            books.found(Finding(job, keys, True, note="not adopted: its request matches several rows that "
                                                      "differ only in their local reference images"))


def _of_manifest(index: RequestIndex, ledger: dict[str, dict[str, Any]], manifest: str) -> list[tuple[str, dict]]:
    """The ledger rows of this manifest's keys and of its archived versions, by key."""
    keys = {k for g in index.groups.values() for k in g.keys}
    return [(key, row) for key, row in sorted(ledger.items()) if key in keys or row["manifest"] == manifest]


def unlisted_in_flight(collector: JobCollector, ledger: dict[str, dict[str, Any]], manifest: str) -> list[str]:
    """Job ids this manifest's rows have in flight that no page read showed: to read one by one."""
    return sorted({row["job_id"] for _, row in _of_manifest(collector.index, ledger, manifest)
                   if row["status"] in IN_FLIGHT and row["job_id"] and row["job_id"] not in collector.shown})


def _in_flight(collector: JobCollector, ledger: dict[str, dict[str, Any]], manifest: str, not_shown: dict[str, str],
               unread: dict[str, str], list_complete: bool, list_oldest: float | None,
               clock_offset: float) -> tuple[list[InFlight], list[InFlight]]:
    """Rows of this manifest (archived versions too) the ledger has in flight, that the API does not
    show; and those the pages read could not settle."""
    matched = list(collector.matched.values())
    missing, unsettled = [], []
    for key, row in _of_manifest(collector.index, ledger, manifest):
        if row["status"] in IN_FLIGHT and row["job_id"]:
            if row["job_id"] in not_shown:
                missing.append(InFlight(key, row["status"], row["job_id"], not_shown[row["job_id"]]))
            elif row["job_id"] in unread:
                unsettled.append(InFlight(key, row["status"], row["job_id"], unread[row["job_id"]]))
        elif row["status"] == PENDING and row["idempotency_key"] and not row["job_id"]:
            try:
                body = json.loads(row["request_body"] or "")
            except ValueError:
                body = None
            if isinstance(body, dict) and any(same_request(j.raw.get("input"), body) for j in matched):
                continue  # its job is listed (and reported if no row records it)
            sent = row["first_sent_at"]
            # How far back the list was read, on our clock: the API's createdAt minus the offset.
            settled = list_complete or (sent is not None and list_oldest is not None
                                        and list_oldest - clock_offset < sent.timestamp() - t.CLOCK_MARGIN_S)
            if settled:
                missing.append(InFlight(key, row["status"], None, "its submit was journaled, and the API has "
                                        "no job for its request: the next run sends it again under its key"))
            else:
                unsettled.append(InFlight(key, row["status"], None, "its submit was journaled; the pages read "
                                          "do not reach back to it (--max-pages reads further)"))
    return missing, unsettled


# --- the command's answer ------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    """What `videobatch reconcile` found (and adopted): printed for people, JSON for scripts."""

    manifest: str
    ledger: str
    api: str
    exit_code: int
    error: str | None = None  # why nothing could be compared (exit 2 or 3)
    found: Reconciliation | None = None
    after: Reconciliation | None = None  # with --adopt: the books once the jobs were taken in
    adopted: int = 0
    pages: int = 0
    jobs_listed: int = 0
    list_complete: bool = False
    list_stopped: str | None = None  # why the list was not read to its end
    list_oldest: float | None = None
    uncomparable: int = 0
    unread: int = 0  # in-flight jobs that could not be read one by one
    max_pages: int = 0

    @property
    def complete(self) -> bool:
        return self.list_complete and not self.uncomparable and not self.unread

    def as_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest, "ledger": self.ledger, "api": self.api, "exit_code": self.exit_code,
            "error": self.error, "job_list": {
                "pages": self.pages, "jobs": self.jobs_listed, "complete": self.list_complete,
                "stopped": self.list_stopped, "oldest_created_at": _iso(self.list_oldest),
                "uncomparable_jobs": self.uncomparable, "unread_in_flight_jobs": self.unread},
            "found": self.found.as_dict() if self.found else None,
            "adopted": self.adopted, "after_adopting": self.after.as_dict() if self.after else None,
        }


def exit_code(report: ReconcileReport) -> ExitCode:
    """3 when the API's side could not be read whole (the audit is not a proof); else 1 when the
    books disagree (after adopting, if asked to); else 0."""
    if not report.complete:
        return ExitCode.STOPPED
    books = report.after or report.found
    return ExitCode.FAILED_ROWS if books is not None and books.differs else ExitCode.OK


def _job_line(f: Finding) -> str:
    j = f.job
    what = f"adopt into {f.adopt_into}" if f.adopt_into else f.note
    how = " (by prompt and settings only)" if f.by_prompt_only else ""
    return (f"    {', '.join(f.rows[:3])}{' ...' if len(f.rows) > 3 else ''}: job {j.id} {j.status} "
            f"{j.cost if j.cost is not None else '?'} credits, created {_iso(j.created) or '?'}{how}: {what}")


def format_report(report: ReconcileReport, *, adopt: bool) -> str:
    found = report.found
    lines = [f"reconcile {report.manifest} with the jobs of {report.api} (ledger {report.ledger})"]
    reach = f"back to {_iso(report.list_oldest)}" if report.list_oldest is not None else ""
    if report.list_complete:
        lines.append(f"  job list: {report.pages} pages, {report.jobs_listed} jobs, read to its end")
    else:
        lines.append(f"  job list: {report.pages} pages, {report.jobs_listed} jobs {reach}; NOT read to its end: "
                     + (report.list_stopped or f"stopped at --max-pages {report.max_pages}; older jobs were "
                        f"not compared: run again with a larger --max-pages"))
    if report.uncomparable:
        lines.append(f"  {report.uncomparable} listed jobs carry no input to compare: they may be this manifest's")
    if found is None:
        return "\n".join(lines)
    lines.append(f"  matched {found.matched_jobs} jobs to {found.matched_rows} of {found.rows} rows"
                 + (f" ({found.by_prompt_rows} rows by prompt and settings only: their local reference images "
                    "went out as upload URLs that cannot be rebuilt)" if found.by_prompt_rows else ""))
    lines.append(f"  paid jobs the ledger does not know: {len(found.unknown)}")
    lines += [_job_line(f) for f in found.unknown[:SHOWN]]
    if len(found.unknown) > SHOWN:
        lines.append(f"    ... {len(found.unknown) - SHOWN} more (--json lists them all)")
    if found.unpaid:
        lines.append(f"  failed jobs (refunded) no ledger row records, earlier attempts: {len(found.unpaid)}")
    lines.append(f"  rows the ledger has in flight that the API does not show: {len(found.missing)}")
    lines += [f"    {m.job_key} {m.status}{' job ' + m.job_id if m.job_id else ''}: {m.detail}"
              for m in found.missing[:SHOWN]]
    for m in found.unsettled[:SHOWN]:
        lines.append(f"    unsure: {m.job_key} {m.status}{' job ' + m.job_id if m.job_id else ''}: {m.detail}")
    if found.several:
        lines.append(f"  rows with more jobs than rows (earlier attempts, regenerations, paid twice?): {len(found.several)}")
    for keys, jobs in found.several[:SHOWN]:
        lines.append(f"    {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}: {len(jobs)} jobs for "
                     f"{len(keys)} row{'s' if len(keys) > 1 else ''}, newest first: "
                     + ", ".join(f"{j.id} {j.status} {_iso(j.created) or '?'}" for j in jobs))
    c = found.credits
    lines.append(f"  credits: ledger {c.ledger}, API {c.api}"
                 + (f": they differ by {abs(c.api - c.ledger)}" if c.api != c.ledger else ": they agree"))
    for line in found.credit_lines[:SHOWN]:
        lines.append(f"    {', '.join(line.rows[:3])}: ledger {line.ledger}, API {line.api}")
    if adopt:
        lines.append(f"  adopted {report.adopted} jobs into the ledger: the next run follows and downloads "
                     "them, paying nothing again" if report.adopted else "  nothing to adopt")
        after = report.after
        if after is not None:
            lines.append(f"  after adopting: {len(after.unknown)} paid jobs the ledger does not know, "
                         f"{len(after.missing)} rows in flight not shown, credits ledger {after.credits.ledger} "
                         f"and API {after.credits.api}")
    elif found.adoptions:
        lines.append(f"  --adopt takes {len(found.adoptions)} of these jobs into the ledger, so the next run "
                     "downloads them instead of paying for them again")
    books = report.after or found
    if not report.complete:
        lines.append("  the API's side was not read whole: this is not a proof (exit 3)")
    lines.append("  the books agree" if not books.differs else "  the books differ (exit 1)")
    return "\n".join(lines)
