"""Regenerate tests/openapi_schemas.json: the few schemas of Apiframe's openapi.json the contract tests use.

Run from the repository root: python tests/make_openapi_schemas.py ../shared/apiframe-v2/openapi.json
"""

import json
import sys
from pathlib import Path

NAMES = ("JobAccepted", "ValidationError", "ErrorResponse", "InsufficientCredits", "Job", "JobList", "Me", "Upload")


def main(source: str) -> None:
    spec = json.loads(Path(source).read_text())
    schemas = spec["components"]["schemas"]
    trimmed = {name: schemas[name] for name in NAMES}
    trimmed["GrokImagineVideoRequest"] = next(
        option for option in schemas["GenerateVideoRequest"]["oneOf"]
        if option["properties"]["model"].get("enum") == ["grok-imagine-video"])
    # The catalog's entries inlined: the trimmed file keeps no $ref to resolve.
    trimmed["ModelCatalog"] = {**schemas["ModelCatalog"], "properties": {
        "models": {"type": "array", "items": schemas["ModelCatalogEntry"]}}}
    out = Path(__file__).with_name("openapi_schemas.json")
    out.write_text(json.dumps({"source": "apiframe openapi.json 2.0.0, components.schemas", "schemas": trimmed},
                              indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/apiframe-v2/openapi.json")
