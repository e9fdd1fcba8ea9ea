"""The holder of a ledger's jobs: the rules that let a key go on or refuse it, and the account file.

The runs that lose the account file and let the runs table or the jobs read back name the holder
are tests/scenarios/test_pay_once.py's; here are the rules as tables, and settle_account against
the emulator for the cases no scenario takes.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from pipeline.api.client import FIRST_CONTACT_TRIES, ApiClient
from pipeline.api.retry import RetryPolicy
from pipeline.run.account import (Account, AccountFileError, NoContact, account_of, account_path, balance_of,
                                  read_account_file, refusal, settle_account, unknown_account_refusal,
                                  write_account_file)
from pipeline.run.outcome import ExitCode
from pipeline.run.runlog import RunLog
from pipeline.store.ledger import Ledger
from tests.harness import TEST_KEY, free_port

MINE = Account("u1", "t1", "k1")
MY_OTHER_KEY = Account("u1", "t1", "k2")  # one user and team: one account, whatever the key
THEIRS = Account("u2", "t2", "k3")


# --- the answer of GET /v2/me --------------------------------------------------------------------


@pytest.mark.parametrize("me, account", [
    ({"user": {"id": "u1"}, "team": {"id": "t1"}, "apiKey": {"id": "k1"}}, MINE),
    ({"user": {"id": 7}, "team": {"id": None}}, Account("7", None, None)),  # ids read as text
    ({"team": {"id": "t1"}}, Account(None, "t1", None)),
    ({"user": {"id": ""}, "team": {}}, None),  # names nobody
    ({"user": "u1"}, None),
    ([], None),
    (None, None),
])
def test_the_account_of_a_me_answer(me, account):
    assert account_of(me) == account


@pytest.mark.parametrize("me, balance", [
    ({"team": {"credits": 120}}, 120),
    ({"team": {"credits": True}}, None),  # a bool is not a count of credits
    ({"team": {"credits": "120"}}, None),
    ({"team": None}, None),
    ("credits", None),
])
def test_the_balance_of_a_me_answer(me, balance):
    assert balance_of(me) == balance


# --- whether a key may go on ----------------------------------------------------------------------


@pytest.mark.parametrize("holder, current, in_flight, says", [
    (None, THEIRS, 5, None),  # no holder named: nothing ties the ledger yet
    (MINE, THEIRS, 0, None),  # nothing in flight: only in-flight jobs tie a ledger to an account
    (MINE, MINE, 5, None),
    (MINE, MY_OTHER_KEY, 5, None),
    (MINE, THEIRS, 5, ["this key belongs to user u2, team t2 (key id k3)", "5 jobs of this ledger are in flight "
                       "under user u1, team t1 (key id k1)", "Nothing was sent", "another --ledger"]),
    (MINE, None, 3, ["3 jobs of this ledger are in flight under user u1", "GET /v2/me did not say",
                     "nothing was sent"]),
])
def test_a_key_of_another_account_is_refused_while_jobs_are_in_flight(holder, current, in_flight, says):
    reason = refusal(holder, current, in_flight)
    if says is None:
        assert reason is None
    else:
        assert reason is not None and all(part in reason for part in says), reason


PROBLEM = "outputs/ledger.account.json is missing"


@pytest.mark.parametrize("named, current, says", [
    (MINE, MINE, None),  # the runs table names this key's account: it may go on
    (MINE, MY_OTHER_KEY, None),
    (MINE, THEIRS, ["the runs table names user u1, team t1 (key id k1) as their account",
                    "this key belongs to user u2", "Run with that account's key"]),
    (MINE, None, ["the runs table names user u1", "GET /v2/me did not say which account", "Run with that"]),
    (None, MINE, ["no account is known for them (the runs table is silent)", "this key belongs to user u1",
                  "Restore the file from a backup"]),
])
def test_with_the_account_file_lost_only_the_account_the_runs_table_names_goes_on(named, current, says):
    reason = unknown_account_refusal(PROBLEM, 4, named, "the runs table is silent", current)
    if says is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(f"{PROBLEM}, and 4 jobs of this ledger are in flight: ")
        assert "Nothing was sent." in reason and all(part in reason for part in says), reason


# --- the account file -------------------------------------------------------------------------------


def test_the_account_file_sits_beside_the_ledger_and_reads_back(tmp_path):
    ledger_path = tmp_path / "night.parquet"
    assert account_path(ledger_path) == tmp_path / "night.account.json"
    assert read_account_file(ledger_path) is None  # no file: no holder yet
    write_account_file(ledger_path, MINE)
    assert read_account_file(ledger_path) == MINE


@pytest.mark.parametrize("content, says", [
    (b'{"user_id": "u1", "team_', "is corrupt (not the JSON this program writes)"),  # cut mid-write
    (b"[1, 2]", "is corrupt (not the JSON this program writes)"),
    (b"", "is corrupt (not the JSON this program writes)"),
    (b'{"user_id": null, "team_id": "", "key_id": "k1"}', "is corrupt (it names no user and no team)"),
    (b"{}", "is corrupt (it names no user and no team)"),
    (b'\xff\xfe{"user_id": "u1"}', "cannot be read"),
])
def test_a_damaged_account_file_is_never_taken_as_absent(tmp_path, content, says):
    ledger_path = tmp_path / "ledger.parquet"
    account_path(ledger_path).write_bytes(content)
    with pytest.raises(AccountFileError) as raised:
        read_account_file(ledger_path)
    assert str(raised.value).startswith(f"{account_path(ledger_path)} {says}")


def test_an_account_file_that_is_a_folder_cannot_be_read(tmp_path):
    ledger_path = tmp_path / "ledger.parquet"
    account_path(ledger_path).mkdir()
    with pytest.raises(AccountFileError, match="cannot be read"):
        read_account_file(ledger_path)


# --- settle_account against the emulator ------------------------------------------------------------


def _events(log_path) -> list[dict]:
    return [json.loads(line) for line in log_path.read_text().splitlines()]


@pytest.fixture
def books(tmp_path):
    """A ledger, and a run log to read the events of settle_account in."""
    ledger = Ledger.open(tmp_path / "ledger.parquet", run_id="r1")
    log = RunLog(tmp_path / "logs" / "r1.jsonl")
    yield ledger, log
    log.close()
    ledger.close()


def _in_flight(ledger: Ledger) -> None:
    ledger.record("hero", status="SUBMITTED", job_id="job-1", attempts=1,
                  submitted_at=datetime(2026, 11, 24, tzinfo=timezone.utc))


async def test_a_rerun_with_nothing_to_follow_or_pay_for_sends_no_request(emulator, books):
    emu = await emulator()
    ledger, log = books
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        assert await settle_account(client, ledger, ledger.path, 0, False, log) == (None, None)
    assert emu.stats()["requests"] == {} and not account_path(ledger.path).exists()


async def test_the_first_run_that_spends_writes_its_account_beside_the_ledger(emulator, books):
    emu = await emulator()
    ledger, log = books
    state = emu.state
    mine = Account(state.user_id, state.team_id, state.key_id)
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        assert await settle_account(client, ledger, ledger.path, 0, True, log) == (mine, None)
    assert read_account_file(ledger.path) == mine
    assert emu.stats()["requests"] == {"GET /v2/me": 1}


async def test_a_key_of_another_account_is_refused_and_the_file_kept(emulator, books):
    emu = await emulator(seed=99)  # another user and team than the file names
    ledger, log = books
    _in_flight(ledger)
    write_account_file(ledger.path, MINE)
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        account, reason = await settle_account(client, ledger, ledger.path, 1, True, log)
    assert account is not None and not account.same_account(MINE)
    assert reason == refusal(MINE, account, 1)
    assert read_account_file(ledger.path) == MINE  # never overwritten by the refused key
    log.flush()
    assert [e["event"] for e in _events(log.path)] == ["account_refused"]


async def test_a_damaged_account_file_with_nothing_in_flight_is_written_again(emulator, books):
    emu = await emulator()
    ledger, log = books
    account_path(ledger.path).write_text("{not json")
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        account, reason = await settle_account(client, ledger, ledger.path, 0, True, log)
    assert reason is None and read_account_file(ledger.path) == account
    log.flush()
    events = _events(log.path)
    assert [e["event"] for e in events] == ["account_file_replaced"] and "is corrupt" in events[0]["reason"]


# --- the first request: a refused key, an API not there --------------------------------------------


async def test_a_refused_key_is_a_configuration_error_before_anything_is_sent(emulator, books):
    emu = await emulator()
    ledger, log = books
    async with ApiClient(emu.base_url, "afk_wrong_key_0000") as client:
        with pytest.raises(NoContact) as refused:
            await settle_account(client, ledger, ledger.path, 0, True, log)
    assert refused.value.exit_code == ExitCode.BAD_INPUT
    assert "APIFRAME_API_KEY is wrong, inactive or lacks permission" in str(refused.value)
    assert "afk_wrong_key_0000" not in str(refused.value)
    assert emu.stats()["requests"] == {"GET /v2/me": 1} and not account_path(ledger.path).exists()


async def test_an_api_that_cannot_be_connected_to_fails_fast_only_with_nothing_in_flight(books):
    ledger, log = books
    nowhere = f"http://user:secret@127.0.0.1:{free_port()}"
    fast = RetryPolicy(attempts=4, base=0.01, cap=0.01)
    async with ApiClient(nowhere, TEST_KEY, retry=fast) as client:
        with pytest.raises(NoContact) as unreachable:
            await settle_account(client, ledger, ledger.path, 0, True, log)
        assert client.gate.requests == FIRST_CONTACT_TRIES  # not the policy's 4: the API was never there
    said = str(unreachable.value)
    assert unreachable.value.exit_code == ExitCode.UNREACHABLE
    assert said.startswith(f"could not connect to the API at {nowhere.replace('user:secret@', '')} (connection refused; ")
    assert "nothing was submitted" in said and "APIFRAME_BASE_URL" in said and "secret" not in said
    # A job in flight from an earlier run: a blip is ridden out as before (every try), never exit 4,
    # and the in-flight rows keep their holder's rules (here: the key's account is unknown, refused).
    _in_flight(ledger)
    write_account_file(ledger.path, MINE)
    async with ApiClient(nowhere, TEST_KEY, retry=fast) as client:
        account, reason = await settle_account(client, ledger, ledger.path, 1, True, log)
        assert client.gate.requests == 4
    assert account is None and reason == refusal(MINE, None, 1)
