"""Storage and the durable inbox on both databases: SQLite (default) and PostgreSQL (PG_TEST_URL).

Each test gets its own database (a new SQLite file, or a new PostgreSQL database dropped afterwards). Two Inbox
objects with their own engines and owner ids stand for two bot processes sharing the database.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.inbox import Inbox, owner_is_dead, process_identity
from bot.storage import Database
from bot.storage.models import InboxItem
from tests.conftest import make_settings
from tests.fakes.openai_server import ScriptedOpenAI, Text


def msg(update_id: int, chat_id: int, text: str = "hi") -> dict:
    return {"update_id": update_id, "message": {"message_id": update_id, "date": 0, "text": text,
                                                "chat": {"id": chat_id, "type": "private"},
                                                "from": {"id": chat_id, "is_bot": False, "first_name": "U"}}}


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.create_all()
    yield database
    await database.dispose()


@pytest.fixture
async def second_db(database_url: str, db: Database) -> AsyncIterator[Database]:
    """Another engine on the same database: what a second bot process would have."""
    database = Database(database_url)
    yield database
    await database.dispose()


# --- the chat service's storage -------------------------------------------------------------------------------


async def test_memory_modes_prompts_and_usage_round_trip(database_url: str, tmp_path: Path,
                                                         llm: ScriptedOpenAI) -> None:
    from bot.app import create_services

    services = await create_services(make_settings(tmp_path, None, llm, database_url=database_url,
                                                   default_mode="zero-shot"))
    chat = services.chat
    try:
        assert (await chat.set_mode(7, ["prompt"])).level == "prompt"
        await chat.set_mode(7, ["zero-shot"])
        llm.enqueue(Text("first answer"), Text("second answer"))
        for n, text in enumerate(("one", "two")):
            async for _ in chat.reply(7, text, user_id=70, update_id=100 + n):
                pass
        assert [(t.role, t.content) for t in await chat.history(7)] == [
            ("user", "one"), ("assistant", "first answer"), ("user", "two"), ("assistant", "second answer")]
        stored = await chat.stored_answer(7, 101)
        assert stored is not None and stored.text == "second answer" and stored.complete
        assert await chat.stored_answer(7, 999) is None
        (_, messages, tokens), = await chat.usage(70)
        assert messages == 2 and tokens == 30  # the scripted model reports 15 tokens a call
        await chat.set_system_prompt("You are terse.")
        assert await chat.system_prompt() == ("You are terse.", True)
        assert await chat.reset(7) == 4
        assert await chat.history(7) == [] and (await chat.get_mode(7)).level == "zero-shot"
    finally:
        await services.aclose()
    # a new process on the same database sees the same state
    services = await create_services(make_settings(tmp_path, None, llm, database_url=database_url))
    try:
        assert (await services.chat.get_mode(7)).level == "zero-shot"
        assert (await services.chat.system_prompt())[0] == "You are terse."
    finally:
        await services.aclose()


# --- the inbox ------------------------------------------------------------------------------------------------


async def test_replicas_starting_together_create_the_tables_once(database_url: str) -> None:
    replicas = [Database(database_url) for _ in range(4)]
    try:
        await asyncio.gather(*(r.create_all() for r in replicas))  # none fails on a half-created catalogue
        assert await Inbox(replicas[0], "a").add([msg(1, 1)]) == [1]
    finally:
        await asyncio.gather(*(r.dispose() for r in replicas))


async def test_replicas_starting_together_on_a_new_sqlite_file_all_start(tmp_path: Path) -> None:
    # each round is a race on a new file: switching it to WAL and creating the tables (one round lost it rarely)
    for round_ in range(20):
        url = f"sqlite+aiosqlite:///{(tmp_path / f'round{round_}' / 'adaptbot.db').as_posix()}"
        replicas = [Database(url) for _ in range(4)]
        try:
            await asyncio.gather(*(r.create_all() for r in replicas))
            assert await Inbox(replicas[-1], "a").add([msg(1, 1)]) == [1]
        finally:
            await asyncio.gather(*(r.dispose() for r in replicas))


async def test_duplicates_are_recorded_once(db: Database) -> None:
    inbox = Inbox(db, "a")
    assert await inbox.add([msg(1, 5), msg(2, 5), msg(1, 5)]) == [1, 2]
    assert await inbox.add([msg(2, 5), msg(3, 6)]) == [3]
    assert await inbox.counts() == {"pending": 3}


async def test_one_chat_runs_in_order_and_in_one_place(db: Database, second_db: Database) -> None:
    a, b = Inbox(db, "owner-a"), Inbox(second_db, "owner-b")
    await a.add([msg(1, 5), msg(2, 5), msg(3, 6)])
    first = await a.claim("c5")
    assert first is not None and first.update_id == 1 and first.attempts == 1
    assert await b.claim("c5") is None  # chat 5 is busy under a's live lease
    assert await b.pending_chats() == ["c6"]  # and b's scan does not even look at it
    other = await b.claim("c6")
    assert other is not None and other.update_id == 3
    await a.finish(1)
    second = await b.claim("c5")
    assert second is not None and second.update_id == 2
    await b.finish(2)
    await b.finish(3)
    assert await a.claim("c5") is None
    assert await a.counts() == {"done": 3}


async def test_expired_lease_is_claimed_again(db: Database, second_db: Database) -> None:
    a, b = Inbox(db, "owner-a", lease_seconds=-1), Inbox(second_db, "owner-b")  # a's leases are born expired
    await a.add([msg(1, 5)])
    assert (await a.claim("c5")) is not None
    assert await b.pending_chats() == ["c5"]
    again = await b.claim("c5")
    assert again is not None and again.update_id == 1 and again.attempts == 2
    a.lease_seconds = 60
    assert await a.renew([1]) == set()  # a lost it: its renewal must not steal it back
    assert await b.renew([1]) == {1}


async def test_a_process_that_lost_its_lease_cannot_finish_or_run_on(db: Database, second_db: Database) -> None:
    a, b = Inbox(db, "owner-a", lease_seconds=-1), Inbox(second_db, "owner-b")  # a's leases are born expired
    await a.add([msg(1, 5), msg(2, 5)])
    assert (await a.claim("c5")) is not None
    assert (await b.claim("c5")) is not None  # a stalled past its lease: b runs update 1 now
    # a comes back and finishes: that must neither mark b's work done nor start the chat's next update beside it
    assert await a.finish(1, then_claim="c5") is None
    assert await a.counts() == {"processing": 1, "pending": 1}
    following = await b.finish(1, then_claim="c5")
    assert following is not None and following.update_id == 2


async def test_renewed_lease_keeps_the_chat(db: Database, second_db: Database) -> None:
    a, b = Inbox(db, "owner-a", lease_seconds=-1), Inbox(second_db, "owner-b")
    await a.add([msg(1, 5)])
    await a.claim("c5")
    a.lease_seconds = 60
    assert await a.renew([1]) == {1}
    assert await b.claim("c5") is None and await b.pending_chats() == []


async def test_release_gives_work_back_without_counting_an_attempt(db: Database, second_db: Database) -> None:
    a, b = Inbox(db, "owner-a"), Inbox(second_db, "owner-b")
    await a.add([msg(1, 5)])
    await a.claim("c5")
    await a.release(1)
    taken = await b.claim("c5")
    assert taken is not None and taken.attempts == 1
    await b.release(1, failed=True)
    assert (await a.claim("c5")).attempts == 2  # type: ignore[union-attr]


async def test_an_update_that_keeps_failing_is_given_up(db: Database) -> None:
    inbox = Inbox(db, "owner-a", lease_seconds=-1, max_attempts=3)
    await inbox.add([msg(1, 5), msg(2, 5)])
    for attempt in (1, 2, 3):
        item = await inbox.claim("c5")
        assert item is not None and item.update_id == 1 and item.attempts == attempt
    nxt = await inbox.claim("c5")  # the fourth try of update 1 is refused; the chat moves on
    assert nxt is not None and nxt.update_id == 2
    assert (await inbox.counts())["failed"] == 1


async def test_urgent_update_out_of_order_only_where_the_chat_runs(db: Database, second_db: Database) -> None:
    a, b = Inbox(db, "owner-a"), Inbox(second_db, "owner-b")
    await a.add([msg(1, 5), msg(2, 5), msg(3, 5, "/stop")])
    assert (await a.claim("c5")).update_id == 1  # type: ignore[union-attr]
    assert await b.take(3, "c5") is None  # b cannot stop a's answer: a must take it
    assert await a.urgent_for(["c5", "c6"]) == [(3, "c5")]
    taken = await a.take(3, "c5")
    assert taken is not None and taken.payload["message"]["text"] == "/stop"
    assert await a.take(3, "c5") is None  # taken once
    assert await a.urgent_for(["c5"]) == []


async def test_stop_withdraws_only_the_senders_questions_still_waiting(db: Database, second_db: Database) -> None:
    a, b = Inbox(db, "owner-a"), Inbox(second_db, "owner-b")
    in_group = [msg(i, -5, text) for i, text in ((1, "q1"), (2, "q2"), (3, "/mode"), (4, "q4"), (5, "/stop"),
                                                  (6, "q6"))]
    for raw, sender in zip(in_group, (7, 7, 7, 8, 7, 7), strict=True):
        raw["message"]["from"]["id"] = sender
    await a.add(in_group)
    assert (await b.claim("c-5")).update_id == 1  # type: ignore[union-attr]  # being answered by the other process
    # user 7's questions before the /stop that nobody took: not 1 (taken), 3 (a command), 4 (user 8's), 6 (later)
    assert await a.withdraw("c-5", 5, 7) == [2]
    assert await a.withdraw("c-5", 5, 7) == []
    assert await a.withdraw("c-5", 5, None) == [4]  # a private chat's /stop: anyone's (its user's)
    await b.finish(1)
    assert (await b.claim("c-5")).update_id == 3  # type: ignore[union-attr]  # the withdrawn ones never run
    await b.finish(3)
    assert (await b.claim("c-5")).update_id == 5  # type: ignore[union-attr]


def test_what_stop_counts_as_a_question_waiting_for_its_answer() -> None:
    from bot.inbox import is_question

    def update(text: str, chat_type: str = "group", sender: int = 7, reply_to: int | None = None) -> dict:
        message = {"text": text, "chat": {"id": -5, "type": chat_type}, "from": {"id": sender}}
        if reply_to is not None:
            message["reply_to_message"] = {"from": {"id": reply_to}}
        return {"update_id": 1, "message": message}

    bot = (99, "adapt_test_bot")
    assert is_question(update("hi", "private"), None, None)  # a private chat: every text is for the bot
    assert is_question(update("@Adapt_Test_Bot how much?"), 7, bot)
    assert is_question(update("and then?", reply_to=99), 7, bot)
    assert not is_question(update("talking to friends"), 7, bot)  # in a group: not addressed to the bot
    assert not is_question(update("and then?", reply_to=5), 7, bot)
    assert not is_question(update("@adapt_test_bot how much?", sender=8), 7, bot)  # someone else's
    assert not is_question(update("/mode rag"), 7, bot)
    assert is_question(update("/retry"), 7, bot) and is_question(update("/retry@adapt_test_bot"), 7, bot)
    assert not is_question({"update_id": 1, "edited_message": update("x")["message"]}, None, bot)


async def test_dead_owner_on_this_machine_is_reaped(db: Database, second_db: Database) -> None:
    # a real process that holds a claim and dies
    code = "from bot.inbox import process_identity; print(process_identity(), flush=True); input()"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=Path(__file__).resolve().parent.parent)
    assert child.stdout is not None
    dead_owner = child.stdout.readline().strip()
    alive_owner = process_identity()
    foreign_owner = "4026530000.aaaaaaaaaaaa.1.12345.deadbeef"  # another pid namespace: cannot be judged
    for owner, update_id, chat in ((dead_owner, 1, 5), (alive_owner, 2, 6), (foreign_owner, 3, 7)):
        inbox = Inbox(db, owner)
        await inbox.add([msg(update_id, chat)])
        assert await inbox.claim(f"c{chat}") is not None
    assert not owner_is_dead(dead_owner)
    child.kill()
    child.wait()
    assert owner_is_dead(dead_owner) and not owner_is_dead(alive_owner) and not owner_is_dead(foreign_owner)
    survivor = Inbox(second_db, process_identity())
    assert await survivor.reap() == 1
    assert await survivor.pending_chats() == ["c5"]
    item = await survivor.claim("c5")
    assert item is not None and item.update_id == 1


async def test_finished_updates_are_pruned_after_a_while(db: Database) -> None:
    inbox = Inbox(db, "owner-a")
    await inbox.add([msg(1, 5), msg(2, 6), msg(3, 7)])
    for key, update_id in (("c5", 1), ("c6", 2)):
        await inbox.claim(key)
        await inbox.finish(update_id)
    await db.run(lambda s: s.execute(update(InboxItem).where(InboxItem.update_id == 1)
                                     .values(created_at=datetime.now(UTC) - timedelta(days=5))))
    assert await inbox.prune(3 * 86400) == 1
    assert await inbox.counts() == {"done": 1, "pending": 1}


async def test_two_processes_racing_answer_each_update_once_in_order(db: Database, second_db: Database) -> None:
    """Two owners with their own engines claim the same 12 chats x 8 updates at once, with random pauses."""
    owners = [Inbox(db, "owner-a"), Inbox(second_db, "owner-b")]
    chats = [f"c{c}" for c in range(12)]
    updates = [msg(uid, c) for uid, c in enumerate([c for _ in range(8) for c in range(12)], start=1)]
    await owners[0].add(updates)
    handled: list[tuple[str, int, str]] = []
    running: set[str] = set()
    overlaps: list[str] = []
    rng = random.Random(7)

    async def worker(inbox: Inbox, key: str) -> None:
        while True:
            item = await inbox.claim(key)
            if item is None:
                if not set(await inbox.counts()) - {"done"}:
                    return  # everything is done
                await asyncio.sleep(0.005)  # the other owner holds this chat, or the work is elsewhere
                continue
            if key in running:
                overlaps.append(key)
            running.add(key)
            await asyncio.sleep(rng.random() * 0.01)
            handled.append((key, item.update_id, inbox.owner))
            running.discard(key)
            await inbox.finish(item.update_id)

    await asyncio.gather(*(worker(inbox, key) for key in chats for inbox in owners))
    ids = [uid for _, uid, _ in handled]
    assert sorted(ids) == list(range(1, len(updates) + 1))  # every update once
    for key in chats:
        mine = [uid for k, uid, _ in handled if k == key]
        assert mine == sorted(mine)  # in order within the chat
    assert not overlaps
    assert {owner for *_, owner in handled} == {"owner-a", "owner-b"}  # both did work


async def test_a_database_of_the_previous_release_gets_the_new_columns_and_keeps_its_rows(database_url: str) -> None:
    from sqlalchemy import insert, text

    from bot.storage import repo
    from bot.storage.models import Message

    old = Database(database_url)
    await old.create_all()
    await old.run(lambda s: s.execute(text("ALTER TABLE messages DROP COLUMN sources")))  # as the last release had it
    await old.run(lambda s: s.execute(insert(Message.__table__).values(
        chat_id=1, role="assistant", content="an answer from before", complete=True, update_id=10)))
    await old.dispose()
    db = Database(database_url)  # the next start
    try:
        await db.create_all()
        await db.create_all()  # and the one after: nothing left to add
        row = await db.run(lambda s: repo.stored_answer(s, 1, 10))
        assert row is not None and row.content == "an answer from before" and row.sources is None
        await db.run(lambda s: repo.add_turn(s, [dict(chat_id=1, role="assistant", content="cited", update_id=11,
                                                      sources='[{"index": 1, "name": "a.pdf"}]')]))
        cited = await db.run(lambda s: repo.stored_answer(s, 1, 11))
        assert cited is not None and cited.sources == '[{"index": 1, "name": "a.pdf"}]'
    finally:
        await db.dispose()


async def test_a_database_of_the_previous_release_gets_the_export_index(database_url: str) -> None:
    """The export walks feedback by (chat, message): a database made before that index gets it at the next start."""
    from sqlalchemy import inspect, text

    old = Database(database_url)
    await old.create_all()
    await old.run(lambda s: s.execute(text("DROP INDEX ix_feedback_chat_message")))  # as the last release had it
    await old.dispose()

    def indexes(s) -> set[str]:  # type: ignore[no-untyped-def]
        return {index["name"] for index in inspect(s.connection()).get_indexes("feedback")}

    db = Database(database_url)  # the next start
    try:
        await db.create_all()
        await db.create_all()  # and the one after: nothing left to add
        assert "ix_feedback_chat_message" in await db.run(indexes)
    finally:
        await db.dispose()
