"""Does I/O: writes schemas.json, the trimmed copy of openapi.json's video request schemas that
validation (here and in the emulator) reads. Run it when Apiframe publishes a new openapi.json:

    python -m pipeline.models.trim ../shared/apiframe-v2/openapi.json

Only `GenerateVideoRequest` is kept: one JSON schema per model, verbatim from its `oneOf` (each
branch is self-contained: no `$ref`), keyed by the model's name. CONTRACT.md asks that only the
facts we need be copied, never the prose: descriptions are dropped.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).with_name("schemas.json")
DEFAULT_SOURCE = Path(__file__).resolve().parents[3] / "shared" / "apiframe-v2" / "openapi.json"


def _without_prose(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _without_prose(value) for key, value in node.items() if key not in ("description", "example")}
    if isinstance(node, list):
        return [_without_prose(item) for item in node]
    return node


def trimmed(openapi: bytes) -> dict[str, Any]:
    spec = json.loads(openapi)
    branches = spec["components"]["schemas"]["GenerateVideoRequest"]["oneOf"]
    models: dict[str, Any] = {}
    for branch in branches:
        if "$ref" in json.dumps(branch):
            raise SystemExit("a GenerateVideoRequest branch uses $ref: teach trim.py to inline it")
        (name,) = branch["properties"]["model"]["enum"]
        models[name] = _without_prose(branch)
    return {
        "source": "openapi.json components.schemas.GenerateVideoRequest.oneOf (Apiframe v2 "
                  f"{spec['info']['version']}), one schema per model",
        "openapi_sha256": hashlib.sha256(openapi).hexdigest(),
        "generated_by": "python -m pipeline.models.trim PATH/TO/openapi.json",
        "models": dict(sorted(models.items())),
    }


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else DEFAULT_SOURCE
    if not source.is_file():
        print(f"trim: no openapi.json at {source}; pass its path: python -m pipeline.models.trim PATH", file=sys.stderr)
        return 2
    data = trimmed(source.read_bytes())
    SCHEMAS.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    print(f"trim: wrote {len(data['models'])} video models to {SCHEMAS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
