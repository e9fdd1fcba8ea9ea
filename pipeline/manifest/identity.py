"""Decides what makes a manifest row a job: its request hash, its job key and the slug in that key.

`job_key` is the row's `id` (variation n >= 2 gets `-v{n}`), else a slug of the prompt (accents
transliterated: "Un café à Paris" -> `un-cafe-a-paris`) plus 12 hex digits of `request_hash`, the
sha256 of the normalized request (model, stripped prompt, duration and aspect ratio after
defaults, reference images with local files named by their content's sha256, the model's other
params as written, local files named the same way, and the variation number). So an edited
prompt, another model or another parameter is a new job, while reordering or adding rows, or
moving the project folder, changes no key. A row with no params hashes without the `params` key
at all: every key made before models had params stays what it was.

Ledgers made before the slug transliterated hold `legacy_slug` keys (`un-caf-paris-...`) for rows
with accented prompts: the plan keeps such a row's old key (plan/actions.py, `keep_ledger_keys`),
since a new key would be a new job, paid again.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any
from json.encoder import encode_basestring as json_text  # json.dumps(ensure_ascii=False)'s own

_SLUG_DROP = re.compile(r"[^a-z0-9]+")


def request_hash(model: str, prompt: str, duration: int | None, aspect_ratio: str | None, ref_ids: list[str],
                 variation: int, params: dict[str, Any] | None = None) -> str:
    """The definition of a request's identity. Job keys come from it: never change its output.

    The fast path (fast.py) builds the same canonical text in pieces (`request_parts`) to save a
    json.dumps per row, and checks those pieces against this function once per distinct request
    shape; if they ever disagree, it uses this function.
    """
    request = {"model": model, "prompt": prompt, "duration": duration, "aspect_ratio": aspect_ratio,
               "reference_images": ref_ids, "variation": variation}
    if params:
        request["params"] = params
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def params_text(params: dict[str, Any] | None) -> str | None:
    """The params as request_hash writes them (keys sorted, no spaces): the ledger's `params`
    column and the fast path's piece of the canonical text; None for no params."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False) if params else None


def request_parts(model: str, duration: int | None, aspect_ratio: str | None, ref_ids: list[str],
                  params: dict[str, Any] | None = None) -> tuple[str, str]:
    """request_hash's canonical JSON around the prompt: head + json(prompt) + tail + variation + "}".

    Keys in sorted order, no spaces, strings escaped by the encoder json.dumps(ensure_ascii=False)
    itself uses, ints as json.dumps writes them (duration is a plain int, never a bool).
    """
    aspect = "null" if aspect_ratio is None else json_text(aspect_ratio)
    length = "null" if duration is None else int.__repr__(duration)
    extra = f'"params":{params_text(params)},' if params else ""
    head = f'{{"aspect_ratio":{aspect},"duration":{length},"model":{json_text(model)},{extra}"prompt":'
    tail = ',"reference_images":[' + ",".join(map(json_text, ref_ids)) + '],"variation":'
    return head, tail


# For ASCII text, lower() and _SLUG_DROP in one cheap pass: A-Z -> a-z, a-z and 0-9 kept, the rest
# (never more than ASCII here) -> space.
_SLUG_ASCII = bytes(c + 32 if 65 <= c <= 90 else c if 48 <= c <= 57 or 97 <= c <= 122 else 32
                    for c in range(256))


def legacy_slug(prompt: str, limit: int = 32) -> str:
    """The slug of the first releases, kept for the keys ledgers already hold: never change its
    output. The prompt's longest run of leading words within `limit` characters, lowercase a-z0-9
    words joined by '-' (any other letter dropped: "café" -> "caf"); if the first word alone is
    longer, its first `limit` characters."""
    if prompt.isascii():
        text = b" ".join(prompt.encode().translate(_SLUG_ASCII).split()).decode()
    else:
        text = _SLUG_DROP.sub(" ", prompt.lower()).strip()
    # `text` is the words joined by single spaces; cut it at the last space that keeps <= limit.
    if len(text) <= limit:
        return text.replace(" ", "-")
    if text[limit] == " ":
        return text[:limit].replace(" ", "-")
    cut = text.rfind(" ", 0, limit)
    return text[:cut].replace(" ", "-") if cut > 0 else text[:limit]


# Letters NFKD does not split into a base letter and a mark, spelled as their languages do in ASCII.
_FOLDS = str.maketrans({"ß": "ss", "æ": "ae", "ø": "o", "ł": "l", "œ": "oe", "đ": "d", "ð": "d",
                        "þ": "th", "ħ": "h", "ı": "i", "ŧ": "t"})


def slug(prompt: str, limit: int = 32) -> str:
    """legacy_slug of the prompt with its Latin letters' accents dropped ("Un café à Paris" ->
    `un-cafe-a-paris`, "Straße" -> `strasse`); letters of other scripts are dropped, as before."""
    if not prompt.isascii():
        text = unicodedata.normalize("NFKD", prompt.lower().translate(_FOLDS))
        prompt = "".join(ch for ch in text if not unicodedata.combining(ch))
    return legacy_slug(prompt, limit)


def job_key_for(job_id: str | None, variation: int, digest: str, name: str) -> str:
    """The row's id (variation n >= 2: `-vn`), else `name` (slug(prompt), made once per row)
    plus 12 hex digits of the request hash."""
    if job_id:
        return job_id if variation == 1 else f"{job_id}-v{variation}"
    return f"{name}-{digest[:12]}" if name else digest[:12]
