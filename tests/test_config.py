"""pipeline/config.py: the environment over `.env` in the working folder, a key never shown, and the
CLI's default places."""

from __future__ import annotations

import pytest

from pipeline.config import (DEFAULT_BASE_URL, EMULATED_OUT, KEY_VAR, LEDGER_NAME, REAL_OUT, URL_VAR, ApiConfig,
                             load_api_config, read_dotenv)


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean environment (no APIFRAME_ variables) and a working folder of our own."""
    monkeypatch.delenv(KEY_VAR, raising=False)
    monkeypatch.delenv(URL_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.mark.parametrize("environ, dotenv, key, url", [
    ({}, None, None, DEFAULT_BASE_URL),
    ({}, f"{KEY_VAR}=afk_from_file\n{URL_VAR}=http://file:1/\n", "afk_from_file", "http://file:1"),
    ({KEY_VAR: "afk_from_env", URL_VAR: "http://env:2"}, f"{KEY_VAR}=afk_from_file\n{URL_VAR}=http://file:1\n",
     "afk_from_env", "http://env:2"),  # cron overrides a checked-out default
    ({KEY_VAR: "afk_from_env"}, f"{URL_VAR}=http://file:1\n", "afk_from_env", "http://file:1"),  # each its own
    ({KEY_VAR: ""}, f"{KEY_VAR}=afk_from_file\n", "afk_from_file", DEFAULT_BASE_URL),  # empty is unset
    ({}, f"{KEY_VAR}=\n", None, DEFAULT_BASE_URL),  # an empty key is no key, never ""
    ({URL_VAR: "http://env:2///"}, None, None, "http://env:2"),
])
def test_the_environment_wins_over_dotenv_in_the_working_folder(env, tmp_path, environ, dotenv, key, url):
    for name, value in environ.items():
        env.setenv(name, value)
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    assert load_api_config() == ApiConfig(base_url=url, api_key=key)


def test_an_explicit_folder_is_read_instead_of_the_working_one(env, tmp_path):
    (tmp_path / ".env").write_text(f"{KEY_VAR}=afk_here\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".env").write_text(f"{KEY_VAR}=afk_there\n")
    assert load_api_config(elsewhere).api_key == "afk_there"
    assert load_api_config().api_key == "afk_here"


def test_dotenv_lines_comments_quotes_and_export(tmp_path):
    path = tmp_path / ".env"
    path.write_text("\n".join([
        "# a comment", "", "   ", "PLAIN=value", "  SPACED = padded value  ", "export EXPORTED=yes",
        'DOUBLE="quoted # not a comment"', "SINGLE='single'", "MISMATCHED=\"half'", "LONE=\"",
        "EQUALS=a=b=c", "no equals sign here", "EMPTY=", "DUP=first", "DUP=second",
    ]))
    assert read_dotenv(path) == {
        "PLAIN": "value", "SPACED": "padded value", "EXPORTED": "yes", "DOUBLE": "quoted # not a comment",
        "SINGLE": "single", "MISMATCHED": "\"half'", "LONE": '"', "EQUALS": "a=b=c", "EMPTY": "", "DUP": "second",
    }


def test_a_missing_or_undecodable_dotenv_is_read_without_raising(tmp_path):
    assert read_dotenv(tmp_path / ".env") == {}
    (tmp_path / "folder.env").mkdir()  # a folder where the file should be
    assert read_dotenv(tmp_path / "folder.env") == {}
    (tmp_path / ".env").write_bytes(b"KEY=caf\xe9\n")  # Latin-1, not UTF-8
    assert read_dotenv(tmp_path / ".env") == {"KEY": "caf\ufffd"}


def test_the_repr_says_whether_a_key_is_set_never_what_it_is():
    secret = "afk_live_never_printed_123"
    shown = repr(ApiConfig(base_url="http://x", api_key=secret))
    assert secret not in shown and shown == "ApiConfig(base_url='http://x', api_key=set)"
    assert repr(ApiConfig(base_url="http://x", api_key=None)) == "ApiConfig(base_url='http://x', api_key=unset)"
    assert secret not in f"{ApiConfig(base_url='http://x', api_key=secret)}"  # str() falls back to repr


def test_emulated_runs_never_share_the_real_ledger():
    assert EMULATED_OUT != REAL_OUT and EMULATED_OUT.is_relative_to(REAL_OUT)
    assert (REAL_OUT / LEDGER_NAME) != (EMULATED_OUT / LEDGER_NAME)
