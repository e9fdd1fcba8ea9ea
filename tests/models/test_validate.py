"""pipeline/models/validate.py: a params block checked against its model's own schema, each
problem in the manifest's words (the field as the manifest spells it, the model named, what to do
with the values it allows), and whole request bodies answered the way the API's 400 does."""

from __future__ import annotations

import pytest

from pipeline.models import MODELS, get_model
from pipeline.models.validate import Problem, body_errors, manifest_field, problems

# (model, params block, [(field, problem; hint)])
BLOCKS = [
    ("kling-3.0", {"duration": 5, "aspect_ratio": "9:16", "mode": "pro", "negative_prompt": "blurry"}, []),
    ("veo-3.1-fast", {"aspect_ratio": "21:9", "resolution": "1080p", "generate_audio": True, "seed": 7}, []),
    ("midjourney-video", {"start_image": "https://cdn.test/a.png", "motion": "high"}, []),
    ("kling-3.0", {"mode": "ultra"}, [
        ("params.mode", "'ultra' is not a value kling-3.0 takes; use one of standard, pro, 4k")]),
    ("kling-3.0", {"duration": 2}, [
        ("duration", "2 is not a value kling-3.0 takes; use a whole number from 3 to 15 (seconds)")]),
    ("sora-2", {"duration": 6}, [
        ("duration", "6 is not a value sora-2 takes; use one of 4, 8, 10, 12, 15 (seconds)")]),
    ("sora-2", {"aspect_ratio": "1:1"}, [
        ("aspect_ratio", "'1:1' is not a value sora-2 takes; use one of 16:9, 9:16")]),
    ("sora-2", {"seed": 1}, [
        ("params.seed", "sora-2 has no parameter 'seed'; sora-2 takes: aspect_ratio, duration, resolution, "
                        "start_image")]),
    ("sora-2", {"reference_images": ["https://cdn.test/a.png"]}, [
        ("reference_images", "sora-2 has no parameter 'reference_images'; sora-2 takes: aspect_ratio, duration, "
                             "resolution, start_image")]),
    ("veo-3", {"generate_audio": "yes"}, [
        ("params.generate_audio", "expected boolean for veo-3, got str; write the value as the model's parameter "
                                  "takes it (see docs/models/)")]),
    ("veo-3", {"negative_prompt": "n" * 2001}, [
        ("params.negative_prompt", "2001 characters, veo-3 takes at most 2000; adjust the text")]),
    ("veo-3", {"reference_images": ["https://cdn.test/a.png"] * 4}, [
        ("reference_images", "4 items, veo-3 takes at most 3; adjust the list")]),
    ("happyhorse-1.0", {"seed": -1}, [
        ("params.seed", "-1 is under 0, the minimum happyhorse-1.0 takes; use a value within it")]),
    ("luma-ray-2", {"concepts": ["zoom_in", "moonwalk"]}, [
        ("params.concepts", "'moonwalk' is not a value luma-ray-2 takes; use one of truck_left, truck_right, pan_left, "
                            "pan_right, pedestal_up, pedestal_down, tilt_up, tilt_down, roll_left, roll_right, "
                            "zoom_in, zoom_out, push_in, pull_out, dolly_zoom, orbit_left, orbit_right, crane_up, "
                            "crane_down, aerial, aerial_drone, low_angle, high_angle, eye_level, ground_level, "
                            "over_the_shoulder, pov, selfie, handheld, static, bolt_cam, overhead, elevator_doors, "
                            "tiny_planet")]),
    ("midjourney-video", {}, [("params.start_image", "midjourney-video needs start_image; add it under params")]),
    ("kling-3.0-motion-control", {"image": "https://cdn.test/a.png"}, [
        ("params.video", "kling-3.0-motion-control needs video; add it under params")]),
]


@pytest.mark.parametrize("name, block, expected", BLOCKS, ids=[f"{b[0]}-{'-'.join(b[1]) or 'empty'}" for b in BLOCKS])
def test_a_params_block_s_problems_in_the_manifest_s_words(name, block, expected):
    found = problems(get_model(name), block)
    assert [(p.field, f"{p.problem}; {p.hint}") for p in found] == expected


def test_every_problem_of_a_block_is_said_in_the_order_of_its_fields():
    found = problems(get_model("seedance-1-pro"), {"seed": "x", "resolution": "4k", "camera_fixed": 1})
    assert [p.field for p in found] == ["params.camera_fixed", "params.resolution", "params.seed"]
    assert all(isinstance(p, Problem) and "seedance-1-pro" in p.problem + p.hint for p in found)


def test_the_shared_fields_keep_their_names_and_the_rest_live_under_params():
    assert [manifest_field(n) for n in ("duration", "aspect_ratio", "reference_images", "seed")] == [
        "duration", "aspect_ratio", "reference_images", "params.seed"]


def test_every_model_takes_a_minimal_body_of_its_own_and_refuses_another_family_s_block():
    for name, model in MODELS.items():
        required = model.schema["properties"][model.params_field].get("required", [])
        block = {param: "https://cdn.test/x.png" for param in required}
        assert problems(model, block) == [], name
        assert body_errors(model.request_body("a fox", None, None, params=block)) == {}, name
        alien = "soraParams" if model.params_field != "soraParams" else "veoParams"
        body = {"model": name, "prompt": "a fox", model.params_field: block, alien: {}}
        assert body_errors(body) == {alien: ["Unrecognized key"]}, name


@pytest.mark.parametrize("body, details", [
    ([], {"": ["Expected object"]}),
    ({"prompt": "a fox"}, {"model": ["Required"]}),
    ({"model": "sora-9", "prompt": "a fox"}, {"model": [f"Invalid enum value. Expected one of: {', '.join(MODELS)}"]}),
    ({"model": "grok-imagine-video"}, {"prompt": ["Required"]}),
    ({"model": "kling-3.0", "prompt": "a fox", "klingParams": {"mode": "pro", "fps": 30}},
     {"klingParams.fps": ["Unrecognized key"]}),
    ({"model": "midjourney-video", "prompt": "a fox", "midjourneyVideoParams": {}},
     {"midjourneyVideoParams.start_image": ["Required"]}),
    ({"model": "midjourney-video", "prompt": "a fox"}, {"midjourneyVideoParams": ["Required"]}),
])
def test_a_whole_body_is_answered_as_the_api_s_400_details(body, details):
    assert body_errors(body) == details


def test_a_body_s_value_errors_are_keyed_by_their_json_path():
    errors = body_errors({"model": "sora-2", "prompt": "a fox", "soraParams": {"duration": 6, "resolution": "4k"}})
    assert set(errors) == {"soraParams.duration", "soraParams.resolution"}
    assert all(messages for messages in errors.values())
