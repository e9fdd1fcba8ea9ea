"""pipeline/manifest/identity.py: what makes a row a job. Its outputs are the ledger's keys, so they
are pinned: a change here would make every row of every ledger a new job, paid again."""

from __future__ import annotations

import hashlib

import pytest

from pipeline.manifest.identity import job_key_for, json_text, legacy_slug, request_hash, request_parts, slug

MODEL = "grok-imagine-video"
TRICKY = '« un renard » "quoted" \\ tab\t emoji 🦊'
REFS = ["https://x.test/a.png", "sha256:" + "ab" * 32]


@pytest.mark.parametrize("request_, digest", [
    ((MODEL, "a red fox", 6, "16:9", [], 1), "f2fc6a74c1e7a751b5f3de1c0498c771b6b9a7db5503e06710a6902c6923a7e5"),
    ((MODEL, TRICKY, 10, "9:16", REFS, 3), "60b4adee40e9f622b3ccbb03a257637f6deddbe767bf0f168f2abec881a0484d"),
])
def test_request_hash_is_pinned(request_, digest):
    assert request_hash(*request_) == digest


@pytest.mark.parametrize("prompt", ["a red fox", TRICKY, "", "\x00\x1f control", "ünïcode ✓ \u2028 line"])
@pytest.mark.parametrize("refs", [[], REFS])
def test_the_parts_the_fast_path_hashes_are_request_hash_s_own_text(prompt, refs):
    head, tail = request_parts(MODEL, 15, "1:1", refs)
    for variation in (1, 2, 10):
        digest = hashlib.sha256(f"{head}{json_text(prompt)}{tail}{variation}}}".encode()).hexdigest()
        assert digest == request_hash(MODEL, prompt, 15, "1:1", refs, variation)


def test_every_request_field_changes_the_hash():
    base = (MODEL, "a red fox", 6, "16:9", [], 1)
    changed = [(MODEL, "a red fox!", 6, "16:9", [], 1), (MODEL, "a red fox", 10, "16:9", [], 1),
               (MODEL, "a red fox", 6, "9:16", [], 1), (MODEL, "a red fox", 6, "16:9", REFS[:1], 1),
               (MODEL, "a red fox", 6, "16:9", [], 2), ("other-model", "a red fox", 6, "16:9", [], 1)]
    assert len({request_hash(*base), *(request_hash(*c) for c in changed)}) == len(changed) + 1


# (prompt, slug, legacy_slug): the slug transliterates accents; legacy_slug, the first releases'
# slug, dropped them, and ledgers made then hold keys made with it: both pinned, never to change.
SLUGS = [
    ("A Red Fox, in the SNOW!", "a-red-fox-in-the-snow", "a-red-fox-in-the-snow"),
    ("supercalifragilisticexpialidocious-and-more-words", "supercalifragilisticexpialidocio",
     "supercalifragilisticexpialidocio"),
    ("café au lait à Paris", "cafe-au-lait-a-paris", "caf-au-lait-paris"),
    ("Un café à Paris", "un-cafe-a-paris", "un-caf-paris"),
    ("Straße, Æsir, Øresund, Łódź, Œuvre", "strasse-aesir-oresund-lodz", "stra-e-sir-resund-d-uvre"),  # <= 32
    ("Œuvre", "oeuvre", "uvre"),
    ("naïve Ñandú über İstanbul", "naive-nandu-uber-istanbul", "na-ve-and-ber-i-stanbul"),
    ("Neon koi: Über-fish swim  through İstanbul 🚀", "neon-koi-uber-fish-swim-through",
     "neon-koi-ber-fish-swim-through-i"),
    ("ﬁne ½ x²", "fine-1-2-x2", "ne-x"),  # NFKD's compatibility forms: the ligature, the fraction, the superscript
    ("Привет мир 東京", "", ""),  # other scripts: dropped, as before (no transliteration table is installed)
    ("a Привет fox", "a-fox", "a-fox"),
    ("one two three four five six seven eight nine", "one-two-three-four-five-six", "one-two-three-four-five-six"),
    ("exactly thirty two characters ab cd", "exactly-thirty-two-characters-ab", "exactly-thirty-two-characters-ab"),
    ("!!!", "", ""),
    ("", "", ""),
]


@pytest.mark.parametrize("prompt, expected, legacy", SLUGS)
def test_slug_and_the_first_releases_slug(prompt, expected, legacy):
    assert (slug(prompt), legacy_slug(prompt)) == (expected, legacy)


@pytest.mark.parametrize("job_id, variation, name, expected", [
    ("clip", 1, "ignored", "clip"),
    ("clip", 2, "ignored", "clip-v2"),
    (None, 1, "a-fox", "a-fox-abcdef012345"),
    (None, 3, "", "abcdef012345"),  # a prompt with no letter or digit: the hash alone
])
def test_job_key(job_id, variation, name, expected):
    assert job_key_for(job_id, variation, "abcdef0123456789" * 4, name) == expected
