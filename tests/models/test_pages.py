"""docs/models/ is what `python -m pipeline.models.pages` writes from schemas.json: the committed
pages are compared with a fresh run of the generator, and each page is read back against the
schemas: every model once, every parameter it takes with the right type, values and local-file
mark, nothing it does not take."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.models import MODELS, SHARED_PARAMS
from pipeline.models.pages import DOCS, PAGES, render

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_pages_are_what_the_generator_writes(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipeline.models.pages", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"pages: wrote {len(PAGES) + 1} pages for {len(MODELS)} models to {tmp_path}"
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.md")}
    committed = {p.name: p.read_text() for p in DOCS.glob("*.md")}
    assert set(committed) == set(fresh), "run `python -m pipeline.models.pages` and commit docs/models/"
    stale = [name for name in fresh if committed[name] != fresh[name]]
    assert stale == [], f"docs/models/{stale[0]} differs: run `python -m pipeline.models.pages` and commit it"


def test_a_page_of_a_family_openapi_no_longer_has_is_removed(tmp_path):
    (tmp_path / "gone.md").write_text("# a family that left\n")
    done = subprocess.run([sys.executable, "-m", "pipeline.models.pages", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "removed gone.md" in done.stdout, done.stdout + done.stderr
    assert not (tmp_path / "gone.md").exists()


def _sections() -> dict[str, tuple[str, str]]:
    """{model: (page, its section's text)} from the rendered pages."""
    found: dict[str, tuple[str, str]] = {}
    for name, text in render().items():
        if name == "README.md":
            continue
        for section in re.split(r"^## ", text, flags=re.M)[1:]:
            heading, _, body = section.partition("\n")
            for model in heading.split(", "):
                assert model not in found, f"{model} listed twice ({found[model][0]}, {name})"
                found[model] = (name, body)
    return found


def test_every_model_is_listed_once_and_the_index_names_every_page():
    sections = _sections()
    assert sorted(sections) == sorted(MODELS)
    index = render()["README.md"]
    for page in {page for page, _ in sections.values()}:
        assert f"]({page})" in index
    for model in MODELS:
        assert re.search(rf"[|,] {re.escape(model)}[ ,]", index), model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_parameter_of_a_model_is_on_its_page_as_the_schema_says(name):
    model = MODELS[name]
    _, body = _sections()[name]
    assert f"`{model.params_field}`" in body
    assert f"to {model.prompt_max_chars} characters" in body
    assert ('"up to"' in body) == (not model.credits)
    rows = {cells[0].split("`")[1]: cells for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in body.splitlines()
             if line.startswith("| `"))}
    assert sorted(rows) == sorted(model.params), "the page lists exactly the parameters the schema has"
    for param, (_, where, kind, allowed, local) in rows.items():
        schema = model.params[param]
        assert (f"`{param}:` on the row" in where) == (param in SHARED_PARAMS)
        assert (local == "yes, uploaded") == (param in model.upload_params)
        assert (local == "no: an https URL") == (param in model.image_params and param not in model.upload_params)
        for value in schema.get("enum", ()):
            assert f"`{value}`" in allowed
        if "maxItems" in schema:
            assert f"at most {schema['maxItems']} items" in allowed
        if "maxLength" in schema:
            assert f"at most {schema['maxLength']} characters" in allowed
        if schema.get("type") == "integer" and "maximum" in schema:
            assert f"{schema['minimum']} to {schema['maximum']}" in allowed
        assert kind != "any"
    for duration in model.durations:
        assert f"`{duration}`" in rows["duration"][3] or "to" in rows["duration"][3]
