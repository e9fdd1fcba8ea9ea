"""pipeline/config.py: where the key and base URL come from (the environment over `.env`), a key
never shown, and the CLI's default places."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import (DEFAULT_BASE_URL, EMULATED_OUT, KEY_VAR, LEDGER_NAME, REAL_OUT, URL_VAR, load_api_config,
                             read_dotenv)


def test_dotenv_lines(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# comment\n\nexport APIFRAME_API_KEY='afk_1'\nAPIFRAME_BASE_URL = \"http://x/\"\nnot a line\n")
    assert read_dotenv(env) == {"APIFRAME_API_KEY": "afk_1", "APIFRAME_BASE_URL": "http://x/"}
    assert read_dotenv(tmp_path / "missing") == {}


def test_the_environment_wins_over_dotenv_and_the_key_is_never_shown(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("APIFRAME_API_KEY=afk_from_file\nAPIFRAME_BASE_URL=http://file/\n")
    monkeypatch.delenv(KEY_VAR, raising=False)
    monkeypatch.delenv(URL_VAR, raising=False)
    config = load_api_config(tmp_path)
    assert (config.api_key, config.base_url) == ("afk_from_file", "http://file")
    monkeypatch.setenv(KEY_VAR, "afk_from_env")
    config = load_api_config(tmp_path)
    assert config.api_key == "afk_from_env" and "afk_from_env" not in repr(config) and "set" in repr(config)
    assert load_api_config(tmp_path / "nowhere").base_url == DEFAULT_BASE_URL


def test_emulated_runs_never_share_the_real_ledger():
    assert EMULATED_OUT != REAL_OUT and EMULATED_OUT.is_relative_to(REAL_OUT)
    assert (REAL_OUT / LEDGER_NAME) != (EMULATED_OUT / LEDGER_NAME) and isinstance(REAL_OUT, Path)
