"""The takes of one prompt side by side: which rows go together, in what order, and what each take
says of itself (pipeline/reports/takes.py), as tables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from pipeline.reports.takes import GROUP, credits_text, duration_text, frame_ratio, grouped, shown_params, take_facts

ORDER = ["manifest", "row", "variation", "job_key"]


def test_the_takes_of_a_prompt_stand_together_where_the_first_of_them_stands():
    rows = pl.DataFrame({
        "job_key": ["boat", "kite-veo-16x9", "kite-grok-16x9", "fog", "boat@1a2b3c4d", "kite-again", "lone"],
        "prompt": ["A boat", "A kite", "A kite", "Fog", "A boat, older words", "A kite", "Alone"],
        "manifest": ["m.yaml"] * 7,
        "row": [1, 2, 2, 3, 1, 5, 4],
        "variation": [1] * 7,
    })
    placed = grouped(rows, ORDER)
    assert placed.select("job_key", GROUP).rows() == [
        ("boat", "A boat"), ("boat@1a2b3c4d", "A boat"),  # an earlier take goes with its row, whatever its words
        ("kite-grok-16x9", "A kite"), ("kite-veo-16x9", "A kite"), ("kite-again", "A kite"),  # a matrix, then a row of the same prompt
        ("fog", "Fog"), ("lone", "Alone"),
    ]
    assert placed.columns == [*rows.columns, GROUP]


def test_an_earlier_take_whose_row_is_out_of_scope_keeps_its_own_words():
    rows = pl.DataFrame({"job_key": ["boat@1a2b3c4d", "fog"], "prompt": ["A boat", "Fog"], "manifest": ["m"] * 2,
                         "row": [1, 2], "variation": [1, 1]})
    assert grouped(rows, ORDER)[GROUP].to_list() == ["A boat", "Fog"]


@pytest.mark.parametrize(("charged", "estimated", "model", "said"), [
    (10, 10, "grok-imagine-video", "10 / 10 cr"),  # the documented price: exact
    (None, 15, None, "– / 15 cr"),  # a row written before models: grok
    (60, 90, "veo-3.1-fast", "60 / up to 90 cr"),  # the catalog's upper bound
    (None, 42, "kling-3.0", "– / up to 42 cr"),
    (None, None, "kling-3.0", "– / ? cr"),  # not priced yet
    (12, 40, "no-such-model", "12 / up to 40 cr"),
])
def test_credits_say_up_to_where_the_estimate_is_a_catalog_bound(charged, estimated, model, said):
    assert credits_text(charged, estimated, model) == said


@pytest.mark.parametrize(("seconds", "said"), [
    (None, None), (0, "0 s"), (41.6, "42 s"), (59.4, "59 s"), (95, "1 m 35 s"), (3599, "59 m 59 s"), (3720, "1 h 02 m")])
def test_generation_time_reads_in_seconds_minutes_or_hours(seconds, said):
    assert duration_text(seconds) == said


def test_a_take_knows_its_generation_time_only_from_both_ends():
    at = datetime(2026, 12, 1, 22, tzinfo=timezone.utc)
    facts = take_facts({"model": "kling-3.0", "submitted_at": at, "completed_at": at + timedelta(seconds=141)})
    assert (facts["generation_s"], facts["generation"]) == (141.0, "2 m 21 s")
    assert take_facts({"submitted_at": at, "completed_at": None})["generation"] is None
    assert take_facts({"submitted_at": at, "completed_at": at - timedelta(seconds=1)})["generation"] is None


@pytest.mark.parametrize(("params", "shown"), [
    (None, []),
    ('{"resolution":"1080p","generate_audio":true}', [("generate_audio", "true", "true"), ("resolution", "1080p", "1080p")]),
    ('{"seed":7,"reference_images":["refs/a.png","refs/b.png"]}',
     [("reference_images", "refs/a.png, refs/b.png", "refs/a.png, refs/b.png"), ("seed", "7", "7")]),
    ('{"negative_prompt":"blurry, low detail, washed-out colours, text overlays"}',
     [("negative_prompt", "blurry, low detail, washed-out…", "blurry, low detail, washed-out colours, text overlays")]),
    ("not json", [("params", "not json", "not json")]),
])
def test_params_are_shown_shortly_with_the_whole_value_kept(params, shown):
    assert shown_params(params) == shown
    assert all(len(short) <= 32 for _, short, _ in shown)


@pytest.mark.parametrize(("row", "ratio"), [
    ({"video_width": 1080, "video_height": 1920, "model": "veo-3.1-fast", "aspect_ratio": "16:9"}, "1080 / 1920"),  # probed wins
    ({"model": "grok-imagine-video", "aspect_ratio": "3:2"}, "1080 / 720"),  # grok's documented size
    ({"model": "kling-3.0", "aspect_ratio": "9:16"}, "9 / 16"),
    ({"model": "veo-3.1-fast", "aspect_ratio": "cinematic"}, "16 / 9"),  # free text: no shape to draw
    ({"model": "midjourney-video", "aspect_ratio": None}, "16 / 9"),
])
def test_a_takes_frame_is_drawn_from_what_is_known_of_it(row, ratio):
    assert frame_ratio(row) == ratio
