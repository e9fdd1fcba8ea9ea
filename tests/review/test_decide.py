"""What a reviewer may decide, as a table: each verdict asked of a ledger row, and what make_verdict
answers (the record for the log, or VerdictError with its message and HTTP status). Pure: no
server, no file."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest

from pipeline.manifest.identity import request_hash
from pipeline.review.decide import MAX_NOTE_CHARS, MAX_REVIEWER_CHARS, VerdictError, make_verdict
from pipeline.store.archive import archived_name
from pipeline.store.verdicts import LOG_SCHEMA

MODEL = "grok-imagine-video"
PROMPT = "A paper boat in a puddle"
EDITED = "A paper boat sails through a sunlit rain puddle"
SOURCE = request_hash(MODEL, PROMPT, 6, "1:1", [], 1)
NOW = datetime(2026, 12, 2, 6, 0, tzinfo=timezone.utc)
NO_VERDICTS = pl.DataFrame(schema=LOG_SCHEMA)


def row(status: str = "DOWNLOADED", **more) -> dict:
    """A ledger row of job `boat` whose run finished it (status and Idempotency-Key set)."""
    return {"job_key": "boat", "status": status, "idempotency_key": "idem-1", "job_id": "job-1",
            "prompt": PROMPT, "duration": 6, "aspect_ratio": "1:1", "model": MODEL, "variation": 1,
            "request_hash": SOURCE, "manifest": None, "reference_images": None, **more}


def decide(found: dict | None = row(), decision: str = "approve", *, key: str = "boat", verdicts=NO_VERDICTS,
           reviewer="ana", **more) -> dict:
    return make_verdict(found, key, decision, reviewer=reviewer, decisions=verdicts, now=NOW, **more)


ALLOWED = [
    # (what is asked, the record's fields that matter)
    ("approve a downloaded clip", {},
     {"decision": "approve", "prompt": None, "request_hash": None, "source_hash": SOURCE}),
    ("reject a failed one", {"found": row("FAILED"), "decision": "reject"}, {"decision": "reject"}),
    ("regenerate a refused one", {"found": row("REJECTED"), "decision": "regenerate"}, {"decision": "regenerate"}),
    ("note and reviewer are trimmed", {"note": "  too dark \n", "reviewer": " ana "},
     {"note": "too dark", "reviewer": "ana"}),
    ("a blank note is no note", {"note": "   "}, {"note": None}),
    ("a note of the most characters", {"note": "n" * MAX_NOTE_CHARS}, {"note": "n" * MAX_NOTE_CHARS}),
    ("a note keeps its lines and tabs", {"note": "one\n\ttwo"}, {"note": "one\n\ttwo"}),
    ("the prompt unchanged is no edit", {"decision": "regenerate", "prompt": f" {PROMPT} "},
     {"prompt": None, "request_hash": None}),
    ("an edited prompt, checked and hashed", {"decision": "regenerate", "prompt": f"  {EDITED}  "},
     {"prompt": EDITED, "request_hash": request_hash(MODEL, EDITED, 6, "1:1", [], 1), "source_hash": SOURCE}),
]


@pytest.mark.parametrize("asked, given, expected", ALLOWED, ids=[case[0] for case in ALLOWED])
def test_what_a_reviewer_may_decide(asked, given, expected):
    record = decide(**given)
    assert {name: record[name] for name in expected} == expected
    assert record["job_key"] == "boat" and record["at"] == NOW.isoformat()
    assert (record["reviewed"], record["reviewed_job_id"]) == ("idem-1", "job-1")  # the attempt judged


REFUSED = [
    # (what is asked, status, the message says)
    ("a row the ledger does not have", {"found": None}, 404, "unknown job_key 'boat': no such row"),
    ("an earlier version", {"key": archived_name("boat", SOURCE)}, 409, "decide on boat instead"),
    ("a clip its run has not finished", {"found": row("PROCESSING")}, 409, "boat is PROCESSING: review it once"),
    ("a row never submitted", {"found": row("FAILED", idempotency_key=None)}, 409, "review it once its run"),
    ("approve a failed clip", {"found": row("FAILED")}, 409, "boat is FAILED: there is no clip to approve"),
    ("a word that is no verdict", {"decision": "maybe"}, 400, "decision must be one of approve, reject, regenerate"),
    ("a note over the limit", {"note": "n" * (MAX_NOTE_CHARS + 1)}, 400,
     f"note is {MAX_NOTE_CHARS + 1} characters, at most {MAX_NOTE_CHARS}"),
    ("a note that is not text", {"note": 3}, 400, "note must be text"),
    ("a control character", {"note": "bell\x07"}, 400, "note contains control characters"),
    ("no reviewer", {"reviewer": "  "}, 400, "a decision needs a reviewer name"),
    ("a reviewer over the limit", {"reviewer": "r" * (MAX_REVIEWER_CHARS + 1)}, 400,
     f"reviewer is {MAX_REVIEWER_CHARS + 1} characters"),
    ("a reviewer on two lines", {"reviewer": "ana\nbob"}, 400, "reviewer must be one line"),
    ("an edited prompt with approve", {"prompt": EDITED}, 400, "an edited prompt goes with regenerate only"),
    ("a prompt that is not text", {"decision": "regenerate", "prompt": 7}, 400, "prompt must be text"),
    ("an edited prompt the manifest refuses", {"decision": "regenerate", "prompt": "p" * 5001}, 400,
     "edited prompt of boat"),
]


@pytest.mark.parametrize("asked, given, status, message", REFUSED, ids=[case[0] for case in REFUSED])
def test_what_a_reviewer_may_not_decide(asked, given, status, message):
    with pytest.raises(VerdictError) as refused:
        decide(**given)
    assert refused.value.status == status
    assert message in str(refused.value)


def test_a_row_that_is_already_an_edit_stands_for_the_manifest_row_it_replaced():
    edited_hash = request_hash(MODEL, EDITED, 6, "1:1", [], 1)
    earlier = decide(row(), "regenerate", prompt=EDITED)
    verdicts = pl.DataFrame([{**earlier, "seq": 1, "at": NOW}], schema=LOG_SCHEMA, orient="row")
    # The next run made the edit: the row's request is now the edited one.
    record = decide(row(prompt=EDITED, request_hash=edited_hash, idempotency_key="idem-2"), verdicts=verdicts)
    assert record["source_hash"] == SOURCE and record["reviewed"] == "idem-2"
