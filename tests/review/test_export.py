"""`videobatch export`: approved.csv opens in a spreadsheet as text, never as formulas (OWASP's CSV
injection advice), while approved.json keeps every value exactly. A real run, real review decisions
over HTTP, the real export command."""

from __future__ import annotations

import csv
import json

import pytest

from pipeline.review.export import spreadsheet_safe
from tests.harness import cli_env, ledger, run_args, run_cli, write_manifest
from tests.review.server_cli import OFFLINE

# Cells a spreadsheet would run: prompts that start with = - + @ (the manifest and the review page
# trim the whitespace of prompts, notes and names, so tab and CR are checked on their own below).
HOSTILE = {
    "link": '=HYPERLINK("http://x","y")',
    "sum": "-2+3",
    "plus": "+1 lighthouse at dusk",
    "at": "@SUM(A1:A9) of waves",
}
NOTES = {"link": "-minus", "sum": "@at", "plus": "=1", "at": "plain note"}
REVIEWER = "=cmd|' /C calc'!A0"


def test_cells_that_start_a_formula_are_quoted_and_the_json_keeps_them(emulator_thread, review_server,
                                                                       tmp_path):
    emu = emulator_thread()
    jobs = [{"id": key, "prompt": prompt} for key, prompt in HOSTILE.items()]
    jobs.append({"id": "calm", "prompt": "A quiet harbour at dawn", "campaign": "=1+1"})
    manifest = write_manifest(tmp_path / "m.yaml", jobs)
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    server = review_server(tmp_path, "--reviewer", REVIEWER)
    csrf = server.csrf()
    for key in [*HOSTILE, "calm"]:
        status, answer = server.decide({"job_key": key, "decision": "approve", "note": NOTES.get(key, "")}, csrf=csrf)
        assert status == 200 and answer["saved"], answer

    dest = tmp_path / "approved"
    exported = run_cli("export", "--approved", str(dest), "--ledger", str(tmp_path / "ledger.parquet"),
                       env=OFFLINE, cwd=tmp_path)
    assert exported.returncode == 0, exported.stdout + exported.stderr

    with open(dest / "approved.csv", newline="") as handle:
        cells = {row["job_key"]: row for row in csv.DictReader(handle)}
    exact = {record["job_key"]: record for record in json.loads((dest / "approved.json").read_text())}
    assert set(cells) == set(exact) == {*HOSTILE, "calm"}
    for key, prompt in HOSTILE.items():
        assert cells[key]["prompt"] == "'" + prompt  # shown as text
        assert exact[key]["prompt"] == prompt  # the sidecar keeps the exact value
        note = NOTES[key]
        assert exact[key]["note"] == note
        assert cells[key]["note"] == (note if note == "plain note" else "'" + note)
        assert cells[key]["reviewer"] == "'" + REVIEWER and exact[key]["reviewer"] == REVIEWER
    # A harmless cell is left alone, numbers stay numbers, and metadata (JSON, starting with `{`) is untouched.
    calm = cells["calm"]
    assert calm["prompt"] == "A quiet harbour at dawn"
    assert json.loads(calm["metadata"]) == exact["calm"]["metadata"] == {"campaign": "=1+1"}
    rows = {r["job_key"]: r for r in ledger(tmp_path).iter_rows(named=True)}
    assert int(calm["credits_charged"]) == rows["calm"]["credits_charged"] == exact["calm"]["credits_charged"]
    # No cell of the CSV starts a formula.
    for row in cells.values():
        assert not [name for name, value in row.items() if value and value[0] in "=+-@\t\r"], row


@pytest.mark.parametrize("value, cell", [
    ("\rcarriage return", "'\rcarriage return"), ("\ttab", "'\ttab"), ("=A1", "'=A1"), ("a=b", "a=b"),
    ("", ""), (None, None), (-5, -5), (12, 12),
])
def test_spreadsheet_safe_quotes_only_text_that_starts_a_formula(value, cell):
    assert spreadsheet_safe(value) == cell


def test_the_sidecars_carry_model_params_duration_and_aspect_ratio(emulator_thread, review_server, tmp_path):
    """Each clip's model and params (JSON in the CSV, an object in the JSON) travel with it: a
    real run of a grok row and a kling-3.0 row with params, both approved in review."""
    emu = emulator_thread()
    params = {"mode": "pro", "negative_prompt": "=blurry"}  # a formula-looking value stays exact in the JSON
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"id": "beam", "prompt": "A lighthouse beam", "duration": 10, "aspect_ratio": "9:16"},
        {"id": "keeper", "prompt": "A keeper on the stairs", "model": "kling-3.0", "duration": 5, "params": params}])
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    server = review_server(tmp_path)
    csrf = server.csrf()
    for key in ("beam", "keeper"):
        status, answer = server.decide({"job_key": key, "decision": "approve"}, csrf=csrf)
        assert status == 200 and answer["saved"], answer

    dest = tmp_path / "approved"
    exported = run_cli("export", "--approved", str(dest), "--ledger", str(tmp_path / "ledger.parquet"),
                       env=OFFLINE, cwd=tmp_path)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    exact = {record["job_key"]: record for record in json.loads((dest / "approved.json").read_text())}
    with open(dest / "approved.csv", newline="") as handle:
        cells = {row["job_key"]: row for row in csv.DictReader(handle)}
    assert (exact["keeper"]["model"], exact["keeper"]["params"], exact["keeper"]["duration"]) == ("kling-3.0", params, 5)
    assert exact["keeper"]["aspect_ratio"] is None  # kling-3.0 was given none: none is sent, none exported
    rows = {r["job_key"]: r for r in ledger(tmp_path).iter_rows(named=True)}
    assert exact["keeper"]["credits_charged"] == rows["keeper"]["credits_charged"] > 0
    assert (exact["beam"]["model"], exact["beam"]["params"]) == ("grok-imagine-video", {})
    assert (exact["beam"]["duration"], exact["beam"]["aspect_ratio"]) == (10, "9:16")
    assert json.loads(cells["keeper"]["params"]) == params and cells["keeper"]["model"] == "kling-3.0"
    assert cells["beam"]["params"] == "{}" and (cells["beam"]["duration"], cells["beam"]["aspect_ratio"]) == ("10", "9:16")
    assert list(cells["beam"])[:8] == ["job_key", "file", "prompt", "duration", "aspect_ratio", "model", "params",
                                      "metadata"]
