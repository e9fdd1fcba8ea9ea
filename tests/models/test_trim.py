"""pipeline/models/trim.py: the committed schemas.json is exactly what `trimmed(openapi.json)`
gives (the spec sits beside the repository, not in it: skipped where it is absent), and the
command writes it and refuses a missing source with the one next command."""

from __future__ import annotations

import hashlib
import json

import pytest

from pipeline.models import trim
from tests.conftest import beside_the_clone

OPENAPI = trim.DEFAULT_SOURCE


@pytest.fixture(scope="module")
def openapi() -> bytes:
    return beside_the_clone(OPENAPI).read_bytes()


def test_the_committed_schema_file_is_the_spec_trimmed(openapi):
    committed = json.loads(trim.SCHEMAS.read_text())
    assert committed == trim.trimmed(openapi)  # regenerate: python -m pipeline.models.trim
    assert committed["openapi_sha256"] == hashlib.sha256(openapi).hexdigest()
    spec = json.loads(openapi)
    branches = spec["components"]["schemas"]["GenerateVideoRequest"]["oneOf"]
    assert len(committed["models"]) == len(branches) == 41
    assert list(committed["models"]) == sorted(committed["models"])


def test_trimming_keeps_every_rule_and_drops_only_prose(openapi):
    spec = json.loads(openapi)
    [kling] = [b for b in spec["components"]["schemas"]["GenerateVideoRequest"]["oneOf"]
               if b["properties"]["model"]["enum"] == ["kling-3.0"]]
    kept = trim.trimmed(openapi)["models"]["kling-3.0"]
    assert "description" not in json.dumps(kept) and "example" not in json.dumps(kept)
    mode = kling["properties"]["klingParams"]["properties"]["mode"]
    assert kept["properties"]["klingParams"]["properties"]["mode"] == {
        k: v for k, v in mode.items() if k not in ("description", "example")}
    assert kept["required"] == kling["required"]


def _spec(*branches: dict) -> bytes:
    return json.dumps({"info": {"version": "9.9"}, "components": {"schemas": {
        "GenerateVideoRequest": {"oneOf": list(branches)}}}}).encode()


def _branch(name: str, **params: dict) -> dict:
    return {"type": "object", "required": ["model", "prompt"], "description": "prose",
            "properties": {"model": {"enum": [name]}, "prompt": {"type": "string", "example": "a fox"},
                           "xParams": {"type": "object", "properties": params}}}


def test_a_small_spec_is_trimmed_by_name_without_prose():
    data = trim.trimmed(_spec(_branch("zeta", seed={"type": "integer", "description": "d"}), _branch("alpha")))
    assert list(data["models"]) == ["alpha", "zeta"]
    assert data["models"]["zeta"]["properties"]["xParams"]["properties"] == {"seed": {"type": "integer"}}
    assert "9.9" in data["source"] and data["generated_by"].startswith("python -m pipeline.models.trim")


def test_a_branch_with_a_ref_is_refused_rather_than_copied_half():
    with pytest.raises(SystemExit, match=r"\$ref.*teach trim.py"):
        trim.trimmed(_spec(_branch("alpha", image={"$ref": "#/components/schemas/Url"})))


def test_the_command_writes_the_file_and_names_a_missing_source(tmp_path, monkeypatch, capsys):
    target = tmp_path / "schemas.json"
    monkeypatch.setattr(trim, "SCHEMAS", target)
    assert trim.main([str(tmp_path / "nowhere.json")]) == 2
    assert "pass its path: python -m pipeline.models.trim PATH" in capsys.readouterr().err
    assert not target.exists()
    source = tmp_path / "openapi.json"
    source.write_bytes(_spec(_branch("alpha")))
    assert trim.main([str(source)]) == 0
    assert json.loads(target.read_text()) == trim.trimmed(source.read_bytes())
    assert f"wrote 1 video models to {target}" in capsys.readouterr().out
