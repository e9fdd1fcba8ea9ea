"""docs/storage.md's reads of the Delta ledger, run as written there: the polars, pandas and
offline DuckDB reads (`<!-- run: ledger-reads -->`) and the history (`<!-- run: ledger-history
-->`), on a real Delta table written by deltalake in the ledger's shape: LEDGER_SCHEMA's columns
plus the `night` and `batch` partition columns, two commits (a first write, then a checkpoint's
MERGE into tonight's partition of one manifest). Twice: in a local folder (the page's URL replaced
by its path), and at the page's very URL, `s3://team-videos/ledger`, in a real S3 server (moto's,
in its own process on a free port) with nothing but the store's standard environment set, as the
page says. Each block's printed figures are checked, so a read that stopped working, or that
reads the wrong version or every version, fails here.

The table is written by this test, not by the CLI: when the Delta ledger lands, a table written by
`videobatch run` can take its place (same columns, same partitions). The page's refusal of a URL
holding a secret and its default state folder are checked against store/location.py.

Covers: pipeline/store/location.py
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from pipeline.store.location import LocationError, default_state_dir, parse
from pipeline.store.schema import LEDGER_SCHEMA

DOC = Path(__file__).resolve().parents[1] / "docs" / "storage.md"
DOC_URL = "s3://team-videos/ledger"  # the ledger every example of the page reads
RUN_BLOCK = re.compile(r"^<!-- run: ([\w-]+) -->\n```python\n(.*?)^```", re.M | re.S)
PARTITIONS = ["night", "batch"]
THIRTY_DAYS = {"delta.logRetentionDuration": "interval 30 days",
               "delta.deletedFileRetentionDuration": "interval 30 days"}

# (job_key, night, batch, status, credits_charged) at version 0; the MERGE then finishes tonight's
# two nightly rows (10 and 15 credits). Books: 65 credits at version 0, 90 now.
ROWS = [
    ("nightly-r1", "2026-12-01", "nightly", "DOWNLOADED", 15),
    ("nightly-r2", "2026-12-01", "nightly", "DOWNLOADED", 25),
    ("nightly-r3", "2026-12-01", "nightly", "FAILED", 0),
    ("nightly-r4", "2026-12-02", "nightly", "PROCESSING", 0),
    ("nightly-r5", "2026-12-02", "nightly", "SUBMITTED", 0),
    ("spring-ads-r1", "2026-12-02", "spring-ads", "DOWNLOADED", 25),
]
CHECKPOINT = {"nightly-r4": 10, "nightly-r5": 15}


def _frame(rows: list[tuple]) -> pl.DataFrame:
    """Rows in the ledger's full shape: every LEDGER_SCHEMA column (null where the example has no
    value), then the partition columns."""
    schema = {**LEDGER_SCHEMA, "night": pl.String, "batch": pl.String}
    given = {"job_key": [r[0] for r in rows], "night": [r[1] for r in rows], "batch": [r[2] for r in rows],
             "status": [r[3] for r in rows], "credits_charged": [r[4] for r in rows],
             "manifest": [f"manifests/{r[2]}.yaml" for r in rows], "model": ["grok-imagine-video"] * len(rows)}
    return pl.DataFrame({name: given.get(name, [None] * len(rows)) for name in schema}, schema=schema)


def _write_ledger(path: Path | str) -> None:
    write_deltalake(str(path), _frame(ROWS).to_arrow(), partition_by=PARTITIONS, configuration=THIRTY_DAYS)
    changed = _frame([(key, night, batch, "DOWNLOADED", CHECKPOINT[key])
                      for key, night, batch, _, _ in ROWS if key in CHECKPOINT])
    # A checkpoint's MERGE: its partition in the predicate, so only that partition's files are read and rewritten.
    (DeltaTable(str(path)).merge(changed.to_arrow(), source_alias="s", target_alias="t",
                                 predicate="t.night = '2026-12-02' AND t.batch = 'nightly' AND t.job_key = s.job_key")
     .when_matched_update_all().when_not_matched_insert_all().execute())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env():
    """A moto S3 server in its own process (delta-rs holds the GIL in some calls: an in-process server
    would deadlock), its bucket `team-videos`, and the AWS_* environment pointing at it."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto's server did not start"
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        with pytest.MonkeyPatch.context() as env:
            for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                                "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"}.items():
                env.setenv(name, value)
            import boto3  # only with moto (the test extra): the bucket is made outside the code under test

            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=DOC_URL.split("/")[2])
            yield
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module", params=["local", "s3"])
def ledger(request, tmp_path_factory) -> Path | str:
    if request.param == "s3":
        request.getfixturevalue("s3_env")
        _write_ledger(DOC_URL)
        return DOC_URL
    path = tmp_path_factory.mktemp("storage-doc") / "ledger.parquet"
    _write_ledger(path)
    return path


def _blocks(name: str) -> list[str]:
    return [code for marked, code in RUN_BLOCK.findall(DOC.read_text()) if marked == name]


def _run(code: str, ledger: Path | str) -> str:
    """The block as the page shows it, on this test's ledger (in S3, the very text); what it prints."""
    assert DOC_URL in code, "a documented read that names no ledger URL cannot be pointed at the test's"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code.replace(DOC_URL, str(ledger)), str(DOC), "exec"), {"__name__": "storage_doc"})
    return printed.getvalue()


def test_the_test_ledger_has_the_documented_shape(ledger):
    table = DeltaTable(str(ledger))
    assert table.metadata().partition_columns == PARTITIONS
    assert [field.name for field in table.schema().fields] == [*LEDGER_SCHEMA, *PARTITIONS]
    assert {k: v for k, v in table.metadata().configuration.items() if k in THIRTY_DAYS} == THIRTY_DAYS
    assert table.version() == 1
    for name, value in THIRTY_DAYS.items():  # the page says the properties the tool sets
        assert name in DOC.read_text() and value.split(" ", 1)[1] in DOC.read_text()


def test_the_page_marks_the_reads_it_documents():
    reads = _blocks("ledger-reads")
    assert len(reads) == 3, "polars, pandas and DuckDB (offline, through deltalake)"
    assert "pl.read_delta(" in reads[0] and ".to_pandas()" in reads[1] and "to_pyarrow_dataset()" in reads[2]
    assert len(_blocks("ledger-history")) == 1


def test_polars_reads_the_current_rows_and_one_night(ledger):
    printed = _run(_blocks("ledger-reads")[0], ledger)
    # One row per job_key, as the MERGE left them: 5 DOWNLOADED (90 credits), 1 FAILED.
    assert re.search(r"DOWNLOADED\W+5\W+90\W", printed), printed
    assert re.search(r"FAILED\W+1\W+0\W", printed), printed
    assert "PROCESSING" not in printed and "SUBMITTED" not in printed, "an old version of a row was read"
    assert "tonight: 3 jobs, 50 credits" in printed, printed


def test_pandas_reads_the_current_rows(ledger):
    printed = _run(_blocks("ledger-reads")[1], ledger)
    assert "jobs: 6 credits charged: 90" in printed, printed
    assert re.search(r"^nightly\s+65$", printed, re.M) and re.search(r"^spring-ads\s+25$", printed, re.M), printed


def test_duckdb_reads_the_current_rows_without_its_delta_extension(ledger):
    printed = _run(_blocks("ledger-reads")[2], ledger)
    assert re.search(r"DOWNLOADED\W+5\W+90\W", printed), printed
    assert re.search(r"FAILED\W+1\W+0\W", printed), printed
    assert "PROCESSING" not in printed


def test_the_history_shows_the_merge_touched_one_file_and_version_0_its_books(ledger):
    printed = _run(_blocks("ledger-history")[0], ledger)
    lines = printed.splitlines()
    # The MERGE rewrote tonight's nightly file only: yesterday's and spring-ads' were left alone.
    assert lines[0] == "1 MERGE files rewritten: 1", printed
    assert lines[1] == "0 WRITE files rewritten: 0", printed
    assert "at version 0: 65 credits charged; now: 90" in printed, printed


def test_every_python_block_of_the_page_is_python_and_each_orchestrator_runs_its_shards():
    """Airflow, Prefect, Dagster and Spark are not installed here: their blocks are parsed, and each
    orchestrator's command is checked for what makes N shards safe together (its shard, its share of
    the key's rate, its own state folder, the shared ledger and videos)."""
    blocks = [code for language, code in re.findall(r"^```(\w*)\n(.*?)^```", DOC.read_text(), re.M | re.S)
              if language == "python"]
    for code in blocks:
        compile(code, str(DOC), "exec")  # a SyntaxError names the block's line
    orchestrators = [code for code in blocks if re.search(r"^from (airflow|prefect|dagster)", code, re.M)]
    assert len(orchestrators) == 3, "Airflow, Prefect and Dagster"
    for code in orchestrators:
        for needed in ("--shard", "--rpm", "--state-dir", "/var/lib/videobatch/shard-", "s3://team-videos/ledger",
                       "s3://team-videos/clips"):
            assert needed in code, f"an orchestrator's shard command without {needed}:\n{code}"
        assert re.search(r"retr(y|ies)", code), "the page says the orchestrator's retries are safe: show them"


@pytest.mark.parametrize("url", ["s3://AKIAEXAMPLE:secret@team-videos/ledger", "s3://team-videos/ledger?X-Amz-Signature=abc",
                                 "az://videos/ledger?sv=2024-01-01&sig=abc"])
def test_a_url_holding_a_secret_is_refused_in_the_line_the_page_quotes(url):
    quoted = re.search(r"^videobatch: (--ledger: a URL with a password.*)$", DOC.read_text(), re.M)
    assert quoted, "the page quotes the refusal"
    with pytest.raises(LocationError) as refused:
        parse(url)
    assert str(refused.value) == quoted[1]
    assert "secret" not in str(refused.value) and "sig=" not in str(refused.value)  # never echoes what it refuses


def test_the_default_state_folder_the_page_shows_is_location_pys(monkeypatch):
    monkeypatch.setenv("HOME", "/home/you")
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    folder = default_state_dir(parse("s3://team-videos/ledger"))
    shown = str(folder).replace("/home/you", "~")
    assert f"`{shown}/`" in DOC.read_text(), shown
    assert parse("s3://team-videos/ledger/").url == "s3://team-videos/ledger"  # one folder whichever way it is written
    assert default_state_dir(parse("s3://team-videos/ledger/")) == folder
