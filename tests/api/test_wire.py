"""pipeline/api/wire.py: reading the shapes the spec leaves open, liberally and without raising."""

from __future__ import annotations

import email.utils
from datetime import datetime, timezone

import pytest

from pipeline.run.account import Account, account_of, balance_of
from pipeline.api.wire import job_id_of, parse_api_time, parse_retry_after, result_url, same_request

URL = "https://cdn.apiframe.ai/v/1.mp4"


@pytest.mark.parametrize("result, url", [
    (URL, URL), (f"  {URL} ", URL), ([URL, "https://other"], URL), ([{"url": URL}], URL),
    ({"videoUrl": URL}, URL), ({"url": URL}, URL), ({"videos": [URL]}, URL), ({"videos": [{"url": URL}]}, URL),
    ({"videos": [{"videoUrl": URL}]}, URL), ([None, {}, URL], URL),
    (None, None), ("", None), ([], None), ({}, None), ({"videos": []}, None), (42, None), ({"videoUrl": 3}, None),
])
def test_result_url_accepts_every_shape_seen(result, url):
    assert result_url(result) == url


@pytest.mark.parametrize("answer, job_id", [
    ({"jobId": "a"}, "a"), ({"id": "b"}, "b"), ({"jobId": "", "id": "c"}, "c"), ({"jobId": None}, None),
    ({"jobId": 7}, None), (None, None), ("a", None), ([{"jobId": "a"}], None),
])
def test_job_id_of(answer, job_id):
    assert job_id_of(answer) == job_id


EPOCH = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("value", [
    "2026-11-25T06:00:00.000Z", "2026-11-25T06:00:00Z", "2026-11-25T06:00:00+00:00", "2026-11-25T07:00:00+01:00",
    "2026-11-25T06:00:00",  # no offset: UTC, never the local zone
    "2026-11-25 06:00:00", EPOCH, int(EPOCH), str(int(EPOCH)), EPOCH * 1000,
])
def test_parse_api_time(value):
    assert parse_api_time(value) == pytest.approx(EPOCH)


@pytest.mark.parametrize("value", [None, "", "yesterday", True, {}, []])
def test_parse_api_time_unreadable(value):
    assert parse_api_time(value) is None


def test_retry_after_seconds_dates_and_garbage():
    now = 1_800_000_000.0
    assert parse_retry_after("7", now=now) == 7
    assert parse_retry_after("0.5", now=now) == 0.5
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0  # in the past
    assert parse_retry_after("86400", now=now) == 300  # clamped
    assert parse_retry_after("-5", now=now) == 0
    for unreadable in (None, "", "soon", "nan", "Mon, 99 Foo"):
        assert parse_retry_after(unreadable, now=now) is None  # the caller backs off instead


def test_same_request_compares_what_makes_the_video():
    body = {"model": "grok-imagine-video", "prompt": "a koi", "grokImagineVideoParams": {"duration": 6},
            "webhookUrl": "https://hooks.example/x"}
    assert same_request({"model": "grok-imagine-video", "prompt": "a koi",
                         "grokImagineVideoParams": {"duration": 6, "aspect_ratio": "16:9"}}, body)
    assert not same_request({"model": "grok-imagine-video", "prompt": "a koi",
                             "grokImagineVideoParams": {"duration": 10}}, body)
    assert not same_request({"model": "grok-imagine-video", "prompt": "a carp",
                             "grokImagineVideoParams": {"duration": 6}}, body)
    assert not same_request(None, body) and not same_request({}, body)


@pytest.mark.parametrize("me, account, balance", [
    ({"user": {"id": "u1"}, "team": {"id": "t1", "credits": 30}, "apiKey": {"id": "k1"}},
     Account("u1", "t1", "k1"), 30),
    ({"user": {"id": "u1"}, "team": {"id": "t1", "credits": "30"}}, Account("u1", "t1"), None),  # not a number
    ({"team": {"credits": True}}, None, None),  # a bool is not a credit count; no ids, no account
    ({}, None, None),
    ("garbage", None, None),
])
def test_the_account_and_balance_are_read_from_v2_me_or_not_at_all(me, account, balance):
    # An unreadable balance is None, never 0: `plan` then says it does not know, not that it is short.
    assert (account_of(me), balance_of(me)) == (account, balance)
