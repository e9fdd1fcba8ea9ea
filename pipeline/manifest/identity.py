"""Decides what makes a manifest row a job: its request hash, its job key and the slug in that key.

`job_key` is the row's `id` (variation n >= 2 gets `-v{n}`), else a slug of the prompt (accents
transliterated: "Un café à Paris" -> `un-cafe-a-paris`) plus 12 hex digits of `request_hash`, the
sha256 of the normalized request (model, stripped prompt, duration and aspect ratio after
defaults, reference images with local files named by their content's sha256, and the variation
number). So an edited prompt is a new job, while reordering or adding
rows, or moving the project folder, changes no key.

Ledgers made before the slug transliterated hold `legacy_slug` keys (`un-caf-paris-...`) for rows
with accented prompts: the plan keeps such a row's old key (plan/actions.py, `keep_ledger_keys`),
since a new key would be a new job, paid again.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from json.encoder import encode_basestring as json_text  # json.dumps(ensure_ascii=False)'s own

_SLUG_DROP = re.compile(r"[^a-z0-9]+")


def request_hash(model: str, prompt: str, duration: int, aspect_ratio: str, ref_ids: list[str],
                 variation: int) -> str:
    """The definition of a request's identity. Job keys come from it: never change its output.

    The fast path (fast.py) builds the same canonical text in pieces (`request_parts`) to save a
    json.dumps per row, and checks those pieces against this function once per distinct request
    shape; if they ever disagree, it uses this function.
    """
    canonical = json.dumps(
        {"model": model, "prompt": prompt, "duration": duration, "aspect_ratio": aspect_ratio,
         "reference_images": ref_ids, "variation": variation},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def request_parts(model: str, duration: int, aspect_ratio: str, ref_ids: list[str]) -> tuple[str, str]:
    """request_hash's canonical JSON around the prompt: head + json(prompt) + tail + variation + "}".

    Keys in sorted order, no spaces, strings escaped by the encoder json.dumps(ensure_ascii=False)
    itself uses, ints as json.dumps writes them (duration is a plain int, never a bool).
    """
    head = (f'{{"aspect_ratio":{json_text(aspect_ratio)},"duration":{int.__repr__(duration)},'
            f'"model":{json_text(model)},"prompt":')
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
