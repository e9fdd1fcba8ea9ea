"""Manifests: loading, defaults, keys, and a corpus of broken files that must each be caught."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipeline.manifest.load import ManifestError, load_manifest
from tests.harness import cli_env, run_cli

HERE = Path(__file__).resolve().parents[1]  # tests/
BROKEN = HERE / "manifests" / "broken"
EXPECTED = yaml.safe_load((BROKEN / "EXPECTED.yaml").read_text())
EXAMPLES = HERE.parent / "manifests"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_manifest_names_file_row_and_field(name):
    expected = EXPECTED[name]
    with pytest.raises(ManifestError) as caught:
        load_manifest(BROKEN / name)
    issue = next((i for i in caught.value.issues if expected["contains"] in i.problem), None)
    assert issue is not None, str(caught.value)
    assert issue.row == expected["row"] and issue.field == expected["field"], str(issue)
    message = str(caught.value)
    assert str(BROKEN / name) in message and "nothing was submitted" in message
    if expected["row"] is not None:
        assert f"{BROKEN / name}:{expected['row']}: " in message


def test_corpus_is_at_least_thirty_files():
    assert len(EXPECTED) >= 30


def test_every_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text("jobs:\n  - prompt: ''\n  - prompt: a\n    duration: 7\n  - prompt: b\n    aspect_ratio: '5:4'\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert [(i.row, i.field) for i in caught.value.issues] == [(1, "prompt"), (2, "duration"), (3, "aspect_ratio")]
    assert "fix these 3 problems" in str(caught.value)


def test_one_bad_row_among_100000(tmp_path):
    path = tmp_path / "big.csv"
    lines = ["prompt,duration,aspect_ratio"] + [f"scene {i} of the long night,6,16:9" for i in range(100_000)]
    lines[73_456] = "scene bad,8,16:9"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    # lines[73_456] is the file's line 73,457: the spreadsheet's row, the header being row 1.
    assert [(i.row, i.field) for i in caught.value.issues] == [(73_457, "duration")]


def test_yaml_with_defaults_counts_and_metadata():
    rows = load_manifest(EXAMPLES / "example.yaml")
    assert rows.height == 10
    assert set(rows["aspect_ratio"]) == {"1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"}
    assert set(rows["duration"]) == {6, 10, 15}
    assert rows.filter(pl.col("row") == 5)["variation"].to_list() == [1, 2]
    koi = rows.filter(pl.col("job_key") == "koi-street").row(0, named=True)
    assert len(koi["reference_images"]) == 2 and all(Path(p).is_absolute() for p in koi["reference_images"])
    boat = rows.filter(pl.col("job_key") == "paper-boat").row(0, named=True)
    assert (boat["duration"], boat["credits_estimated"]) == (10, 15)
    assert '"owner": "ana"' in boat["metadata"] and '"campaign": "spring-launch"' in boat["metadata"]


def test_csv_and_bare_list_and_bom(tmp_path):
    rows = load_manifest(EXAMPLES / "example.csv")
    assert rows.height == 5 and rows.filter(pl.col("job_key") == "csv-boat").height == 1
    assert len(rows.filter(pl.col("duration") == 10)["reference_images"][0]) == 2
    bare = tmp_path / "bare.yml"
    bare.write_text("- prompt: one\n- prompt: two\n  aspect_ratio: 9:16\n")  # unquoted ratio: YAML's 556
    assert load_manifest(bare)["aspect_ratio"].to_list() == ["16:9", "9:16"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfprompt,duration\nhello,6\n")
    assert load_manifest(bom)["prompt"].to_list() == ["hello"]


# -- CSV as a spreadsheet writes it --


def _problems(path: Path, monkeypatch, fast_path: bool) -> list[tuple]:
    import pipeline.manifest.load as manifest

    monkeypatch.setattr(manifest, "FAST_PATH", fast_path)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    return [(i.row, i.field, i.problem) for i in caught.value.issues]


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_header_typo_is_reported_once_and_its_column_checked_under_the_meant_name(tmp_path, monkeypatch,
                                                                                    fast_path):
    path = tmp_path / "x.csv"
    lines = ["promt,duraton,aspect_ratio"] + [f"scene {i},6,16:9" for i in range(300)]
    lines[5] = "scene bad,7,16:9"  # the spreadsheet's row 6
    lines[200] = ",10,1:1"  # row 201: no prompt, under the meant name too
    path.write_text("\n".join(lines) + "\n")
    assert _problems(path, monkeypatch, fast_path) == [
        (1, 'column "promt"', 'unknown column (did you mean "prompt"?)'),
        (1, 'column "duraton"', 'unknown column (did you mean "duration"?)'),
        (6, "duration", "7 is not a clip length this model makes"),
        (201, "prompt", "missing"),
    ]
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert str(caught.value).splitlines()[0] == (
        f'{path}:1: column "promt": unknown column (did you mean "prompt"?); '
        'rename the header cell to "prompt" (its values were checked as prompt)')
    path.write_text("\n".join(lines).replace("promt,duraton", "prompt,duration") + "\n")
    assert [row for row, *_ in _problems(path, monkeypatch, fast_path)] == [6, 201]  # fixed: the same rows


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_typo_beside_the_column_it_means_is_reported_once_and_left_unchecked(tmp_path, monkeypatch, fast_path):
    path = tmp_path / "x.csv"
    path.write_text("prompt,promt,durration\n" + "".join(f"scene {i},x,\n" for i in range(50)))
    assert _problems(path, monkeypatch, fast_path) == [
        (1, 'column "promt"', 'unknown column (did you mean "prompt"? the header has a "prompt" column)'),
        (1, 'column "durration"', 'unknown column (did you mean "duration"?)'),  # its cells all blank: still wrong
    ]


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_header_without_a_prompt_column_is_said_once_and_the_other_columns_checked(tmp_path, monkeypatch,
                                                                                      fast_path):
    path = tmp_path / "x.csv"
    path.write_text("title,duration\n" + "".join(f"scene {i},6\n" for i in range(40)) + "scene x,7\n")
    assert _problems(path, monkeypatch, fast_path) == [
        (1, None, 'the header has no "prompt" column (its columns as read: "title", "duration")'),
        (42, "duration", "7 is not a clip length this model makes"),
    ]


@pytest.mark.parametrize("fast_path", [True, False])
def test_rows_are_numbered_as_a_spreadsheet_shows_them(tmp_path, monkeypatch, fast_path):
    # A spreadsheet numbers records, not lines: the header is row 1, a quoted cell's line breaks
    # stay in its row, and a blank line is an empty row of its own.
    path = tmp_path / "x.csv"
    path.write_text('prompt,duration\n"a calm lake,\nat dawn,\nin fog",6\n\na storm,12\na calm lake,6\n'
                    '"a calm lake,\nat dawn,\nin fog",6\n')
    assert _problems(path, monkeypatch, fast_path) == [
        (4, "duration", "12 is not a clip length this model makes"),
        (6, "prompt", "row 2 asks for exactly the same video"),
    ]


def _comma_twin(tmp_path: Path) -> pl.DataFrame:
    path = tmp_path / "comma.csv"
    path.write_text('id,prompt,duration,aspect_ratio,campaign\nboat,"a boat, at dawn; slowly",10,9:16,spring\n'
                    ',Un café à Paris,6,16:9,\n')
    return load_manifest(path).drop("manifest")


@pytest.mark.parametrize("name, data", [
    ("semicolon", 'id;prompt;duration;aspect_ratio;campaign\nboat;"a boat, at dawn; slowly";10;9:16;spring\n'
                  ';Un café à Paris;6;16:9;\n'),
    ("excel (BOM, ;, CRLF)", '\ufeffid;prompt;duration;aspect_ratio;campaign\r\nboat;"a boat, at dawn; slowly";10;'
                              '9:16;spring\r\n;Un café à Paris;6;16:9;\r\n'),
    ("tab", 'id\tprompt\tduration\taspect_ratio\tcampaign\nboat\t"a boat, at dawn; slowly"\t10\t9:16\tspring\n'
            '\tUn café à Paris\t6\t16:9\t\n'),
    # Excel ends each line with empty cells when a column past the last one was ever touched.
    ("excel (empty columns past the last)", 'id;prompt;duration;aspect_ratio;campaign;;\nboat;"a boat, at dawn; slowly";'
                                            '10;9:16;spring;;\n;Un café à Paris;6;16:9;;;\n'),
])
def test_a_semicolon_or_tab_separated_csv_reads_as_its_comma_twin(tmp_path, name, data):
    path = tmp_path / "x.csv"
    path.write_bytes(data.encode())
    rows = load_manifest(path)
    assert rows.drop("manifest").equals(_comma_twin(tmp_path)), name
    assert rows["prompt"].to_list() == ["a boat, at dawn; slowly", "Un café à Paris"]
    assert rows["job_key"][1].startswith("un-cafe-a-paris-")


def test_a_value_under_an_unnamed_column_past_the_last_is_named_with_its_row(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("prompt;duration;;\na boat at dawn;6;;\na fox in snow;6;;late\n")
    with pytest.raises(ManifestError) as raised:
        load_manifest(path)
    assert (f"{path}:3: this row has a value in column 4, which has no name in the header; name that column "
            "in the header, or empty the cell") in str(raised.value)


def test_a_one_column_csv_with_semicolons_in_its_prompts_stays_one_column(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("prompt\nfog; then rain; then sun\n")
    assert load_manifest(path)["prompt"].to_list() == ["fog; then rain; then sun"]


def test_the_cli_names_a_semicolon_csv_s_header_typo_once_and_submits_nothing(emulator_thread, tmp_path):
    emu = emulator_thread()
    path = tmp_path / "x.csv"
    path.write_bytes("\ufeffpromt;duration\r\n".encode() + "".join(f"scène {i};6\r\n" for i in range(20)).encode()
                     + b"une temp\xc3\xaate;7\r\n")
    done = run_cli("run", str(path), "--ledger", str(tmp_path / "ledger.parquet"), "--out", str(tmp_path / "out"),
                   env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count('column "promt"') == 1 and "Traceback" not in done.stderr
    assert f'{path}:22: duration: 7 is not a clip length' in done.stderr
    assert "fix these 2 problems" in done.stderr
    assert emu.stats()["requests"] == {}


def test_keys_are_stable_under_reordering_and_adding(tmp_path):
    first = tmp_path / "a.yaml"
    first.write_text("jobs:\n  - prompt: alpha\n  - prompt: beta\n    duration: 10\n")
    second = tmp_path / "b.yaml"
    second.write_text("jobs:\n  - prompt: gamma\n  - prompt: beta\n    duration: 10\n  - prompt: alpha\n")
    keys_a = dict(zip(load_manifest(first)["prompt"], load_manifest(first)["job_key"]))
    keys_b = dict(zip(load_manifest(second)["prompt"], load_manifest(second)["job_key"]))
    assert keys_a["alpha"] == keys_b["alpha"] and keys_a["beta"] == keys_b["beta"]
    edited = tmp_path / "c.yaml"
    edited.write_text("jobs:\n  - prompt: alpha!\n")
    assert load_manifest(edited)["job_key"][0] != keys_a["alpha"]


def test_changed_image_content_is_a_new_job_and_keys_are_file_safe(tmp_path):
    shutil.copy(EXAMPLES / "refs" / "koi.png", tmp_path / "ref.png")
    path = tmp_path / "m.yaml"
    path.write_text("jobs:\n  - prompt: koi\n    reference_images: [ref.png]\n  - id: Clip_01.final\n    prompt: x\n    count: 3\n")
    before = load_manifest(path)
    shutil.copy(EXAMPLES / "refs" / "paper-texture.png", tmp_path / "ref.png")
    after = load_manifest(path)
    assert before["job_key"][0] != after["job_key"][0]
    assert after["job_key"].to_list()[1:] == ["Clip_01.final", "Clip_01.final-v2", "Clip_01.final-v3"]
    for key in after["job_key"]:
        assert "/" not in key and ".." not in key and not key.startswith(".")


@pytest.mark.parametrize("name", ["duplicate_ids.yaml", "refs_ftp.yaml", "empty.yaml", "ragged.csv", "latin1.csv",
                                  "csv_typo_header_value.csv"])
def test_cli_exits_2_sends_nothing_and_leaves_the_ledger_alone(emulator_thread, tmp_path, name):
    emu = emulator_thread()
    ledger = tmp_path / "ledger.parquet"
    ledger.write_bytes(b"not touched")
    done = run_cli("run", str(BROKEN / name), "--ledger", str(ledger), "--out", str(tmp_path / "out"),
                   env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(BROKEN / name) in done.stderr and "nothing was submitted" in done.stderr
    assert emu.stats()["requests"] == {}
    assert ledger.read_bytes() == b"not touched" and not (tmp_path / "out").exists()


def test_job_keys_are_pinned(tmp_path):
    # Keys are users' money: a changed key resubmits finished jobs. These were computed by the
    # first release of the loader; any change to how keys are made must keep them.
    path = tmp_path / "pin.yaml"
    path.write_text(yaml.safe_dump({"jobs": [
        {"prompt": "A paper boat sails across a rain puddle at dawn, macro lens"},
        {"prompt": "Neon koi: Über-fish swim  through İstanbul 🚀", "duration": 10, "aspect_ratio": "9:16",
         "reference_images": ["https://example.com/style.jpg"]},
        {"prompt": "x", "count": 2},
        {"id": "launch-teaser", "prompt": "teaser"},
    ]}, allow_unicode=True))
    # The accented prompt's key changed once, when slugs began to transliterate (it was
    # "neon-koi-ber-fish-swim-through-i-7b1afa362f37"): a ledger that holds the old key keeps it
    # (plan.actions.keep_ledger_keys, tests/scenarios/test_legacy_slugs.py).
    assert load_manifest(path)["job_key"].to_list() == [
        "a-paper-boat-sails-across-a-rain-6a49f603f557", "neon-koi-uber-fish-swim-through-7b1afa362f37",
        "x-ba35f81db64c", "x-c2cc08668d36", "launch-teaser"]


def _outcome(path: Path):
    try:
        return load_manifest(path)
    except ManifestError as exc:
        return [(i.row, i.field, i.problem, i.hint) for i in exc.issues]


def _mixed_rows(n: int) -> list[dict]:
    """Rows that repeat a few request shapes (the fast path's case), with bad ones among them."""
    rows = []
    for i in range(n):
        row = {"prompt": f"shot {i}: the tide comes in", "duration": (6, 10, 15)[i % 3],
               "aspect_ratio": ("16:9", "1:1")[i % 2], "campaign": ("spring", "fall")[i % 2]}
        if i % 7 == 3:
            row["id"] = f"hero-{i}"
        if i % 11 == 5:
            row["prompt"] = ""  # empty prompt
        if i % 13 == 6:
            row["id"] = "../escape"
        if i % 17 == 8:
            row["promt"] = "typo"
        if i % 19 == 9:
            row["duration"] = 7
        rows.append(row)
    return rows


@pytest.mark.parametrize("kind", ["yaml", "csv"])
def test_the_fast_path_and_the_full_check_agree(tmp_path, monkeypatch, kind):
    # load_manifest reuses the full check's result for rows whose request fields repeat; with it
    # off, every row goes through the full check. Both must give the same rows, keys and problems.
    import csv

    import pipeline.manifest.load as manifest

    files = sorted(p for p in BROKEN.iterdir() if p.name != "EXPECTED.yaml") + sorted(EXAMPLES.glob("example.*"))
    for good in (True, False):
        rows = [r for r in _mixed_rows(300) if not good or (r["prompt"] and "promt" not in r
                                                            and r["duration"] != 7 and r.get("id") != "../escape")]
        path = tmp_path / f"mixed-{good}.{kind}"
        if kind == "yaml":
            path.write_text(yaml.safe_dump({"defaults": {"team": "video"}, "jobs": rows}))
        else:
            fields = sorted({name for row in rows for name in row})
            with open(path, "w", newline="") as out:
                writer = csv.DictWriter(out, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
        files.append(path)
    for path in files:
        fast = _outcome(path)
        monkeypatch.setattr(manifest, "FAST_PATH", False)
        full = _outcome(path)
        monkeypatch.setattr(manifest, "FAST_PATH", True)
        if isinstance(full, pl.DataFrame):
            assert isinstance(fast, pl.DataFrame) and fast.equals(full), path.name
        else:
            assert fast == full, path.name
    assert isinstance(_outcome(files[-1]), list) and isinstance(_outcome(files[-2]), pl.DataFrame)
