"""Does the manifest's I/O: reads a YAML or CSV file and turns its rows into one Polars DataFrame
row per wanted video, every row checked (rules.py) before any spend.

Formats: YAML (a `defaults:` mapping plus a `jobs:` list, or a bare list of jobs) and CSV (a
header row; cells separated by `,`, `;` or tabs, as a spreadsheet exports them; `reference_images`
separated by `|`; rows numbered as the spreadsheet shows them, the header being row 1; a header
problem said once). What a row may hold and what each problem says is rules.py's; what makes a
row a job (request hash, job key) is identity.py's; most rows of a big manifest take the fast
path (fast.py), which gives the very same rows, keys and problems.

Every problem in the file is collected and reported at once (`FILE:ROW: FIELD: problem; what to
do`); ManifestError carries them all. Nothing here talks to the network.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import io
import math
import re
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from pipeline.manifest.fast import Rows
from pipeline.manifest.matrix import combinations
from pipeline.manifest.identity import job_key_for, json_text, request_hash, slug
from pipeline.manifest.rules import (
    KNOWN_FIELDS,
    MAX_METADATA_BYTES,
    MAX_SHOWN_ISSUES,
    Checker,
    ManifestError,
    ManifestIssue,
    RowProblem,
    meant_field,
)

# YAML aliases (`*name`) repeat a node without repeating its text: nine aliases of nine aliases
# ... ("billion laughs") make gigabytes of a 1 KB file. So a row may expand to at most this once
# its aliases are written out, and the whole file to at most EXPANSION_FACTOR times its own size.
MAX_ROW_EXPANDED = 64 * 1024
EXPANSION_FACTOR = 16
# What an anchor (`&name`) and an alias (`*name`) look like, to skip the alias check when a file
# has none ("salt & pepper" has no anchor). A literal first keeps the search at memchr speed.
_ANCHOR = re.compile(r"&[^\s\[\]{},]")
_ALIAS = re.compile(r"\*[^\s\[\]{},]")
_MERGE = "tag:yaml.org,2002:merge"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster

COLUMNS: dict[str, pl.DataType] = {
    "manifest": pl.String, "row": pl.Int64, "variation": pl.Int64, "job_key": pl.String,
    "request_hash": pl.String, "key_source": pl.String, "model": pl.String, "prompt": pl.String,
    "duration": pl.Int64, "aspect_ratio": pl.String, "reference_images": pl.List(pl.String),
    "metadata": pl.String, "credits_estimated": pl.Int64, "params": pl.String,
}



# --- reading --------------------------------------------------------------------------------


def _decode(data: bytes, file: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):  # Excel's UTF-8 BOM: harmless, drop it
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ManifestError(file, [ManifestIssue(
            file, f"line {line}", None,
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            "save the file as UTF-8 (from a spreadsheet: Save As, \"CSV UTF-8\")")]) from None


def _read_yaml(text: str, file: str) -> tuple[dict[str, Any], list[tuple[int, Any]]]:
    try:
        loader = _Loader(text)  # yaml.load's own steps, with the aliases checked in between
        try:
            node = loader.get_single_node()
            if node is not None and _ALIAS.search(text) and _ANCHOR.search(text):  # else nothing can expand
                _check_expansion(node, len(text), file)
            doc = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except RecursionError:
        raise ManifestError(file, [ManifestIssue(file, None, None, "nested too deeply to read",
                                                 "write jobs as flat `field: value` mappings")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(file, [ManifestIssue(file, where, None, f"not valid YAML: {problem}",
                                                 "check indentation and quoting near that line")]) from None
    defaults: Any = {}
    if isinstance(doc, dict):
        extra = sorted(set(doc) - {"defaults", "jobs", "matrix"}, key=str)
        if extra or "jobs" not in doc:
            raise ManifestError(file, [ManifestIssue(
                file, None, ", ".join(map(str, extra)) or "jobs",
                "a YAML manifest is a list of jobs, or a mapping with `defaults:`, `matrix:` and `jobs:` only",
                "put the jobs under `jobs:`")])
        defaults, jobs = doc.get("defaults") or {}, doc.get("jobs")
        if "matrix" in doc and isinstance(defaults, dict):  # the file's matrix travels with its defaults
            defaults = {**defaults, "matrix": doc["matrix"]}
    else:
        jobs = doc
    if not isinstance(jobs, list):
        raise ManifestError(file, [ManifestIssue(file, None, "jobs", "expected a list of jobs",
                                                 "write each job as a `- prompt: ...` item")])
    if not isinstance(defaults, dict):
        raise ManifestError(file, [ManifestIssue(file, None, "defaults", "expected a mapping",
                                                 "write `defaults:` as field: value lines")])
    return defaults, list(enumerate(jobs, start=1))


def _expanded_size(node: yaml.Node, sizes: dict[int, float], open_nodes: set[int]) -> float:
    """At most the characters `node` stands for once every alias in it is written out. Memoised
    by node, so the walk is linear in the nodes however far they expand; a node that contains
    itself is endless (inf). A merge key (`<<: [*a, *a]`) adds each mapping it merges once: the
    merged keys are a union, which that bounds."""
    if node.__class__ is yaml.ScalarNode:
        return len(node.value) + 2
    key = id(node)
    size = sizes.get(key)
    if size is not None:
        return size
    if key in open_nodes:
        return math.inf
    open_nodes.add(key)
    if node.__class__ is yaml.MappingNode:
        size = 2
        for name, value in node.value:
            size += _expanded_size(name, sizes, open_nodes)
            if name.tag == _MERGE and value.__class__ is yaml.SequenceNode:
                merged = {id(item): item for item in value.value}.values()
                size += 2 + sum(_expanded_size(item, sizes, open_nodes) for item in merged)
            else:
                size += _expanded_size(value, sizes, open_nodes)
    else:
        size = 2 + sum(_expanded_size(item, sizes, open_nodes) for item in node.value)
    open_nodes.discard(key)
    sizes[key] = size
    return size


def _check_expansion(doc: yaml.Node, text_size: int, file: str) -> None:
    """Refuse, before anything is built, a YAML file whose aliases expand past MAX_ROW_EXPANDED in
    a row or past EXPANSION_FACTOR times the file in all; name the row and its largest field."""
    sizes: dict[int, float] = {}
    open_nodes: set[int] = set()
    budget = EXPANSION_FACTOR * text_size + MAX_ROW_EXPANDED
    sections = [(key.value if isinstance(key, yaml.ScalarNode) else str(key.tag), value)
                for key, value in doc.value] if isinstance(doc, yaml.MappingNode) else [("jobs", doc)]
    # (row, field, node): each job is a row; `defaults:` is one too; any other section is its own field.
    places: list[tuple[int | str | None, str | None, yaml.Node]] = []
    for name, section in sections:
        if name == "jobs" and isinstance(section, yaml.SequenceNode):
            places.extend((row, None, job) for row, job in enumerate(section.value, start=1))
        else:
            places.append(("defaults", None, section) if name == "defaults" else (None, name, section))
    issues, total = [], 0.0
    for row, field, node in places:
        size = _expanded_size(node, sizes, open_nodes)
        total += size
        if size <= MAX_ROW_EXPANDED and total <= budget:
            continue
        if field is None and isinstance(node, yaml.MappingNode) and node.value:
            key, _ = max(node.value, key=lambda pair: _expanded_size(pair[1], sizes, open_nodes))
            field = key.value if isinstance(key, yaml.ScalarNode) else None
        if size == math.inf:
            problem = "a YAML alias (*name) in it refers to the value that holds it: it never ends"
        else:
            over = (f"over the {MAX_ROW_EXPANDED // 1024} KiB a row may take" if size > MAX_ROW_EXPANDED
                    else f"and the file so far {int(total)}, over {EXPANSION_FACTOR} times its own size")
            problem = f"{int(size)} characters once its YAML aliases (*name) are written out, {over}"
        issues.append(ManifestIssue(
            file, row, field, problem,
            f"write the values out, or shorten them (metadata may be at most {MAX_METADATA_BYTES // 1024} KiB "
            "of JSON a row); aliases are for repeating a small value"))
        if total > budget or len(issues) >= MAX_SHOWN_ISSUES:
            break
    if issues:
        raise ManifestError(file, issues)



# A spreadsheet's CSV export separates cells with "," or, where "," is the decimal mark (much of
# Europe), ";"; "Unicode text" uses tabs. Anything else is read as ",".
CSV_DELIMITERS = ",;\t"
_FIRST_LINE = re.compile(r"[^\r\n]*")


def _csv_delimiter(text: str) -> str:
    """The cell separator of a CSV file, told from its header line alone (csv.Sniffer among
    CSV_DELIMITERS): a header with no separator at all (one column) is read with ","."""
    try:
        return csv.Sniffer().sniff(_FIRST_LINE.match(text).group(), delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _read_csv(text: str, file: str) -> tuple[list[str], list[tuple[int, list[str] | str]]]:
    """(header, [(row number, cells)]); a row of the wrong width comes as the problem's text instead.

    Rows are numbered as a spreadsheet shows them: the header is row 1, and each record (a quoted
    cell may hold line breaks, a blank line is an empty row) is the next row, whatever the lines.
    Cells stay a list: `_csv_job` makes a row's {field: value} (blank cells left out) only where
    the full per-row check needs one.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_csv_delimiter(text))
    try:
        header = next(reader)
    except StopIteration:
        return [], []
    except csv.Error as exc:
        raise ManifestError(file, [ManifestIssue(file, "line 1", None, f"not valid CSV: {exc}", "")]) from None
    header = [name.strip() for name in header]
    named = len(header)
    while named and not header[named - 1]:
        named -= 1  # Excel's export may end each line with empty cells past the last column used
    unnamed_tail, header = len(header) - named, header[:named]
    issues = []
    blank = [i + 1 for i, name in enumerate(header) if not name]
    if blank:
        issues.append(ManifestIssue(file, 1, None, f"header column {blank[0]} has no name",
                                    "name every column, or delete the empty one"))
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        issues.append(ManifestIssue(file, 1, repeated[0], "column appears twice in the header",
                                    "keep one column per field"))
    if issues:
        raise ManifestError(file, issues)
    rows: list[tuple[int, list[str] | str]] = []
    append = rows.append
    width = len(header)
    try:
        for number, cells in enumerate(reader, start=2):
            if len(cells) == width > 1:  # the usual row (a blank line has 0 or 1 cells)
                append((number, cells))
                continue
            if unnamed_tail and len(cells) > width:
                beyond = [i + 1 for i, cell in enumerate(cells[width:], start=width) if cell.strip()]
                if beyond:
                    append((number, RowProblem(f"has a value in column {beyond[0]}, which has no name in the "
                                               "header", "name that column in the header, or empty the cell")))
                    continue
                cells = cells[:width]  # the empty cells of the header's unnamed tail
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # a blank line
            if len(cells) != width:
                append((number, f"has {len(cells)} cells, the header has {width}"))
                continue
            append((number, cells))
    except csv.Error as exc:
        raise ManifestError(file, [ManifestIssue(file, f"line {reader.line_num}", None,
                                                 f"not valid CSV: {exc}", "check the quoting")]) from None
    return header, rows


def _meant_columns(checker: Checker, header: list[str]) -> list[str]:
    """The header with each column that looks like a typo of a known field (`promt`) renamed to
    the field it most likely means, reported once, at row 1: the column's values are then checked
    under the meant name, so one pass shows every problem. A typo whose field has a column of its
    own is reported, and its values kept out of the check (as metadata: nothing runs anyway). A
    header with no prompt column is said once too, with the columns as read, not once a row."""
    meant_header = list(header)
    for name in header:
        meant = meant_field(name)
        if meant is None:
            continue
        column = f'column "{name}"'
        if meant in meant_header:
            checker.issue(1, column, f'unknown column (did you mean "{meant}"? the header has a "{meant}" column)',
                          "delete this column, or give it a name of its own")
            checker.reported_typos.add(name)
        else:
            checker.issue(1, column, f'unknown column (did you mean "{meant}"?)',
                          f'rename the header cell to "{meant}" (its values were checked as {meant})')
            meant_header[meant_header.index(name)] = meant
    if "prompt" not in meant_header:
        shown = ", ".join(f'"{name}"' for name in header[:6]) + (", ..." if len(header) > 6 else "")
        one = len(header) == 1  # the cells may be split at something else than , ; or tab
        checker.issue(1, None, f'the header has no "prompt" column (its columns as read: {shown})',
                      'name the column of prompts "prompt"' + (", and separate the cells with commas or "
                                                               "semicolons (a spreadsheet's CSV export)") * one)
        checker.no_prompt_column = True
    return meant_header


def _csv_job(header: list[str], cells: list[str] | str | dict) -> dict[str, str] | str:
    """A CSV row as the job mapping the checker reads: blank cells are left out."""
    if isinstance(cells, (str, dict)):
        return cells  # the row's width problem, or a matrix's combination (matrix.py)
    return {name: cell for name, cell in zip(header, cells) if cell.strip() != ""}


# --- loading --------------------------------------------------------------------------------


# The tests turn the fast path (fast.py) off to prove both paths give the very same rows,
# keys and problems.
FAST_PATH = True


def load_manifest(path: str | Path, *, refs_root: str | Path | None = None) -> pl.DataFrame:
    """Read, check and expand a manifest; raise ManifestError listing every problem. Local
    reference images must lie under the manifest's own folder, or under `refs_root`."""
    enabled = gc.isenabled()
    # A big manifest makes millions of objects and no reference cycles: cyclic collections would
    # only rescan them, over and over (a third of a 100,000-row CSV's load, most of a YAML's).
    gc.disable()
    try:
        return _load_manifest(Path(path), Path(refs_root) if refs_root is not None else None)
    finally:
        if enabled:
            gc.enable()


def _load_manifest(path: Path, refs_root: Path | None) -> pl.DataFrame:
    file = str(path)
    defaults, header, jobs = _read_jobs(path, refs_root, file)
    folder = path.resolve().parent
    checker = Checker(file, folder, from_csv=header is not None,
                      image_folders=(folder,) if refs_root is None else (folder, refs_root.resolve()))
    if not jobs:
        checker.issue(None, "jobs", "no jobs", "list at least one job with a prompt")
    matrix = defaults.pop("matrix", None)
    _check_defaults(checker, defaults)
    if header is not None:
        header = _meant_columns(checker, header)
    manifest_text = str(path.resolve())
    rows = Rows(checker, defaults, header)
    columns, template_ids = _expand(combinations(jobs, header, matrix, checker), header, defaults, checker, rows)
    if checker.issues:
        raise ManifestError(file, checker.issues)
    return _frame(rows, manifest_text, columns, template_ids)


def _read_jobs(path: Path, refs_root: Path | None,
               file: str) -> tuple[dict[str, Any], list[str] | None, list[tuple[int, Any]]]:
    """(defaults, CSV header or None for YAML, [(row number, job)]) of a readable manifest file."""
    if refs_root is not None and not refs_root.is_dir():
        raise ManifestError(file, [ManifestIssue(file, None, None, f"--refs-root {refs_root} is not a folder",
                                                 "name the folder that holds the reference images")])
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(file, [ManifestIssue(file, None, None, "no such file", "check the path")]) from None
    except OSError as exc:
        raise ManifestError(file, [ManifestIssue(file, None, None, f"cannot read it ({exc.strerror})",
                                                 "check the path and its permissions")]) from None
    text = _decode(data, file)
    if not text.strip():
        raise ManifestError(file, [ManifestIssue(file, None, None, "the file is empty",
                                                 "list at least one job with a prompt")])
    suffix = path.suffix.lower()
    if suffix == ".csv":
        header, jobs = _read_csv(text, file)
        return {}, header, jobs
    if suffix in (".yaml", ".yml"):
        defaults, jobs = _read_yaml(text, file)
        return defaults, None, jobs
    raise ManifestError(file, [ManifestIssue(file, None, None, f"unknown manifest type {suffix!r}",
                                             "name it .yaml, .yml or .csv")])


def _check_defaults(checker: Checker, defaults: dict[str, Any]) -> None:
    for name, value in defaults.items():
        if name in ("prompt", "id"):
            checker.issue("defaults", str(name), "cannot have a default", "give it on each job")
        elif name not in KNOWN_FIELDS:
            close = meant_field(name)
            if close:
                checker.issue("defaults", str(name), f"unknown field; did you mean '{close}'?",
                              f"rename it to '{close}'")


def _expand(jobs: list[tuple[int, Any, str | None, str]], header: list[str] | None, defaults: dict[str, Any], checker: Checker,
            rows: Rows) -> tuple[dict[str, list], list[int]]:
    """Every checked row as its variations' columns (job keys, request hashes...), and for each
    the template its request fields come from; a problem goes to `checker`."""
    fast, key_of, learn = (rows.fast if FAST_PATH else lambda job: None), rows.key, rows.learn
    sha256, quoted = hashlib.sha256, json_text  # as locals: looked up once, not per row
    row_nos: list[int] = []
    variations: list[int] = []
    job_keys: list[str] = []
    digests: list[str] = []
    key_sources: list[str] = []
    prompts: list[str] = []
    metadatas: list[str] = []
    template_ids: list[int] = []
    seen_keys: dict[str, tuple[int, int | str]] = {}  # -> (entry, the row as problems name it)
    seen_requests: dict[str, tuple[int, int | str]] = {}
    for entry, (row_no, job, label, suffix) in enumerate(jobs):
        where = label or row_no  # a matrix's combination is named in its problems
        hit = fast(job)
        if hit is None:
            row = checker.check(where, _csv_job(header, job) if header is not None else job, defaults)
            if row is None:
                continue
            template = learn(key_of(job), row)
            prompt, job_id, metadata = row["prompt"], row["id"], row["metadata"]
        else:
            template, prompt, job_id, metadata = hit
        head = template.head
        middle = quoted(prompt) + template.tail
        name = "" if job_id else slug(prompt)
        job_id = job_id and job_id + suffix
        for variation in range(1, template.count + 1):
            if head is not None:
                digest = sha256(f"{head}{middle}{variation}}}".encode()).hexdigest()
            else:
                digest = request_hash(template.model, prompt, template.duration, template.aspect_ratio,
                                      template.ref_ids, variation, template.param_ids)
            key = job_key_for(job_id, variation, digest, name)
            if digest in seen_requests and seen_requests[digest][0] != entry:
                checker.issue(where, "prompt", f"row {seen_requests[digest][1]} asks for exactly the same video",
                              "remove one of them, or use `count:` for variations")
                break
            if key in seen_keys and seen_keys[key][0] != entry:
                checker.issue(where, "id", f"job key {key!r} is also made by row {seen_keys[key][1]}",
                              "give each row its own id")
                break
            seen_keys[key] = seen_requests[digest] = (entry, where)
            row_nos.append(row_no)
            variations.append(variation)
            job_keys.append(key)
            digests.append(digest)
            key_sources.append("id" if job_id else "hash")
            prompts.append(prompt)
            metadatas.append(metadata)
            template_ids.append(template.index)
    return {"row": row_nos, "variation": variations, "job_key": job_keys, "request_hash": digests,
            "key_source": key_sources, "prompt": prompts, "metadata": metadatas}, template_ids


def _frame(rows: Rows, manifest_text: str, columns: dict[str, list], template_ids: list[int]) -> pl.DataFrame:
    """The manifest's frame: each row's own columns beside its template's request fields."""
    own = pl.DataFrame(columns, schema={name: COLUMNS[name] for name in columns})
    templates = pl.DataFrame(
        {"model": rows.models, "duration": rows.durations, "aspect_ratio": rows.aspect_ratios,
         "reference_images": rows.references, "credits_estimated": rows.credits, "params": rows.params},
        schema={name: COLUMNS[name] for name in
                ("model", "duration", "aspect_ratio", "reference_images", "credits_estimated", "params")})
    picked = templates.select(pl.all().gather(pl.Series(template_ids, dtype=pl.UInt32)))
    return pl.concat([own, picked], how="horizontal").with_columns(
        manifest=pl.lit(manifest_text, dtype=pl.String)).select(list(COLUMNS))
