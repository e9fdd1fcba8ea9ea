"""The README and docs/ against the code: every relative link reaches a file (and heading) that
exists, docs/cli.md lists exactly the options of each command, every `videobatch ...` command
they show is one the parser takes, and the README stays the first hour (at most 250 lines).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.cli import build_parser
from pipeline.manifest.load import load_manifest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs" / "models").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)

def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())  # a `# comment` in a code block is no heading
    return {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def _links() -> list[tuple[str, str]]:
    return [(page.relative_to(ROOT).as_posix(), target) for page in PAGES
            for target in LINK.findall(FENCE.sub("", page.read_text()))
            if not re.match(r"^[a-z]+:", target)]  # http:, https:, mailto: are not ours to check


@pytest.mark.parametrize("page, target", _links())
def test_every_relative_link_reaches_a_file_and_heading_that_exist(page, target):
    path, _, anchor = target.partition("#")
    where = (ROOT / page).parent / path if path else ROOT / page
    assert where.exists(), f"{page}: the link {target} points to {where}, which does not exist"
    if anchor:
        assert where.is_file() and where.suffix == ".md", f"{page}: {target}: an anchor into a non-page"
        assert anchor in anchors(where), f"{page}: {target}: no heading gives #{anchor} in {where.name}"


def test_the_pages_link_to_each_other():
    assert len(_links()) > 40  # the parametrised test above has something to check
    reached = {(ROOT / page).parent.joinpath(target.partition("#")[0]).resolve()
               for page, target in _links() if target.partition("#")[0]}
    unlinked = [page.name for page in PAGES[1:] if page.resolve() not in reached]
    assert unlinked == [], "a page of docs/ that nothing links to"


def test_the_github_anchor_of_a_heading():
    assert github_anchor("`--summary-json PATH`") == "--summary-json-path"
    assert github_anchor("From Python: `plan_batch`, `run_batch`") == "from-python-plan_batch-run_batch"
    assert github_anchor("The emulator's dialects") == "the-emulators-dialects"


def test_the_readme_is_the_first_hour():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move reference into docs/"
    first_screen = "\n".join(lines[:40])  # the demo, reviewed and exported, without scrolling
    for step in ("make install", "make demo", "videobatch review", "videobatch export --approved"):
        assert step in first_screen, step


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """The options a command's --help shows (the hidden test tuning of `run` is not for people)."""
    return {flag for action in parser._actions if action.help is not argparse.SUPPRESS
            for flag in action.option_strings if flag.startswith("--")} - {"--help"}


def _documented_options() -> dict[str, set[str]]:
    """docs/cli.md's table under each `## videobatch COMMAND`: the options of its first column."""
    sections = re.split(r"^## ", (ROOT / "docs" / "cli.md").read_text(), flags=re.M)
    documented = {}
    for section in sections:
        command = re.match(r"videobatch (\w+)\n", section)
        if command:
            first_cells = re.findall(r"^\| ([^|]*(?:\\\|[^|]*)*) \|", section, re.M)
            documented[command[1]] = {flag for cell in first_cells for flag in re.findall(r"--[a-z][a-z0-9-]*", cell)}
    return documented


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_docs_cli_lists_exactly_the_options_of_each_command(command):
    documented = _documented_options()
    assert command in documented, f"docs/cli.md has no section `## videobatch {command}`"
    options = _options(_subcommands()[command])
    assert options - documented[command] == set(), f"options of `videobatch {command}` docs/cli.md does not list"
    stale = documented[command] - options
    assert stale == set(), f"docs/cli.md lists options `videobatch {command}` does not take"


def _shown_commands() -> list[tuple[str, str]]:
    """Each `videobatch ...` command of a shell block, or of an inline code span, in every page."""
    shown = []
    for page in PAGES:
        text = page.read_text()
        lines = [line for lang, block in FENCE.findall(text) if lang in ("sh", "")
                 for line in block.replace("\\\n", " ").splitlines()]
        # An inline span with arguments; `videobatch run` alone in a sentence names the command.
        lines += re.findall(r"`(videobatch \w+ [^`]+)`", FENCE.sub("", text))
        for line in lines:
            for command in re.findall(r"(?:^|[\s/])videobatch( [^#|&;]*)", line.split(" #")[0]):
                shown.append((page.relative_to(ROOT).as_posix(), "videobatch" + command.rstrip()))
    return shown


def _parses(argv: list[str]) -> None:
    build_parser().parse_args(argv)


def test_every_command_the_pages_show_is_one_the_parser_takes():
    shown = _shown_commands()
    checked = 0
    for page, command in shown:
        argv = shlex.split(command)[1:]
        if not argv or argv[0] not in _subcommands() or {"--help", "-h"} & set(argv):
            continue  # `videobatch`, `videobatch COMMAND --help`: no command to parse
        if re.search(r"\[|\.\.\.", command):
            continue  # a synopsis with [optional] parts, not a command to type
        try:
            _parses(argv)
        except SystemExit:
            pytest.fail(f"{page}: `{command}` is refused by the parser")
        checked += 1
    assert checked > 20, shown


def test_the_models_example_is_manifests_models_yaml_and_loads(tmp_path):
    """docs/manifest.md's model example is manifests/models.yaml, which loads with both models,
    their params and the keeper's reference image; the matrix example makes the keys it names."""
    text = (ROOT / "docs" / "manifest.md").read_text()
    section = text.split("## Models, params and matrix", 1)[1].split("\n## ", 1)[0]
    example, matrix = [block for lang, block in FENCE.findall(section) if lang == "yaml"]
    shipped = ROOT / "manifests" / "models.yaml"
    assert yaml.safe_load(example) == yaml.safe_load(shipped.read_text())
    rows = load_manifest(shipped)
    assert rows["model"].to_list() == ["veo-3.1-fast", "kling-3.0-omni"]
    assert [json.loads(p) for p in rows["params"]] == [{"resolution": "1080p", "generate_audio": True},
                                                      {"mode": "pro", "negative_prompt": "blurry"}]
    assert rows["duration"].to_list() == [8, 5] and rows["aspect_ratio"].to_list() == ["16:9", "16:9"]
    assert [Path(p).name for p in rows["reference_images"][1]] == ["keeper.png"]
    assert "videobatch plan manifests/models.yaml" in (ROOT / "README.md").read_text()

    grid = tmp_path / "matrix.yaml"
    grid.write_text(matrix)
    keys = load_manifest(grid)["job_key"].to_list()
    assert len(keys) == 6
    for named in re.findall(r"`(beam-[^`]+)`", section):
        assert named in keys
