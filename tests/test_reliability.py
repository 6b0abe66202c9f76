"""Reliability end to end: limits and /stop through the fake Telegram, and several bot processes on one database.

"Processes" here are BotApp instances in webhook mode with their own engines, ports and owner ids, behind a fake
Telegram that spreads deliveries over them like a load balancer (duplicates included). Real OS processes (kill -9,
SIGTERM) are in test_reliability_process.py.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.inbox import Inbox
from bot.storage import Database, repo
from tests.conftest import BotRunner, WebhookBot
from tests.fakes.openai_server import ScriptedOpenAI, Text
from tests.fakes.telegram_server import FakeTelegram
from tests.waiting import until


async def inbox_state(app: Any) -> dict[str, int]:
    return await app.inbox.counts()


# --- limits, /usage, one answer at a time, /stop ------------------------------------------------------------------


async def test_rate_limit_refuses_politely_and_spares_the_model(bot: BotRunner, telegram: FakeTelegram,
                                                                llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot", rate_limit_per_minute=2)
    for text in ("one", "two", "three"):
        telegram.user_says(1, text)
    await telegram.wait_for(lambda: len(telegram.texts(1)) == 3)
    assert telegram.texts(1)[:2] == ["echo: one", "echo: two"]
    assert telegram.texts(1)[2].startswith("Too many messages: please wait")
    assert [r["messages"][-1]["content"] for r in llm.requests] == ["one", "two"]
    telegram.user_says(2, "another user is not limited by the first")
    await telegram.wait_for(lambda: telegram.texts(2) == ["echo: another user is not limited by the first"])
    assert [t.content for t in await bot.app.services.chat.history(1)] == ["one", "echo: one", "two", "echo: two"]


async def test_daily_token_quota_and_usage(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot", daily_token_quota=30, admin_ids="99")
    for text in ("a", "b", "c"):
        telegram.user_says(5, text)
    await telegram.wait_for(lambda: len(telegram.texts(5)) == 3)
    assert telegram.texts(5)[:2] == ["echo: a", "echo: b"]  # 15 tokens each (the scripted usage)
    assert "daily token quota (30) is used up" in telegram.texts(5)[2]
    assert len(llm.requests) == 2
    telegram.user_says(5, "/usage")
    await telegram.wait_for(lambda: len(telegram.texts(5)) == 4)
    assert telegram.texts(5)[3] == "Today: 2 messages, 30 tokens / 30."
    telegram.user_says(99, "/usage")  # an admin sees everyone
    await telegram.wait_for(lambda: telegram.texts(99))
    assert "5: 2 / 30" in telegram.texts(99)[0]


async def test_too_long_input_is_refused_before_the_model(bot: BotRunner, telegram: FakeTelegram,
                                                          llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot", max_input_chars=20)
    telegram.user_says(6, "x" * 21)
    await telegram.wait_for(lambda: telegram.texts(6))
    assert telegram.texts(6) == ["Your message is too long (21 characters; the limit is 20)."]
    telegram.user_says(6, "short one")
    await telegram.wait_for(lambda: len(telegram.texts(6)) == 2)
    assert telegram.texts(6)[1] == "echo: short one"
    assert [r["messages"] for r in llm.requests] == [[{"role": "user", "content": "short one"}]]


async def test_one_answer_at_a_time_per_chat(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    gate = asyncio.Event()
    llm.enqueue(Text("first answer", gate=gate))
    for text in ("1", "2", "3"):
        telegram.user_says(7, text)
    await until(lambda: _counts_are(bot.app, processing=1, pending=2))
    await until(lambda: _true(len(llm.requests) == 1))
    await asyncio.sleep(0.3)  # (a wrong bot would ask the model again now: give it the chance)
    assert len(llm.requests) == 1  # the others wait in the inbox, not in front of the model
    gate.set()
    await telegram.wait_for(lambda: len(telegram.texts(7)) == 3)
    assert telegram.texts(7) == ["first answer", "echo: 2", "echo: 3"]
    # each call saw the previous answer: they ran one after another
    assert [m["content"] for m in llm.requests[1]["messages"]] == ["1", "first answer", "2"]


async def _true(value: bool) -> bool:
    return value


async def _counts_are(app_or_inbox: Any, **expected: int) -> bool:
    counts = await getattr(app_or_inbox, "inbox", app_or_inbox).counts()
    return all(counts.get(k, 0) == v for k, v in expected.items())


async def test_stop_ends_the_answer_with_a_notice_and_it_is_not_remembered(bot: BotRunner, telegram: FakeTelegram,
                                                                          llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    telegram.user_says(8, "/stop")
    await telegram.wait_for(lambda: telegram.texts(8) == ["Nothing to stop."])
    llm.enqueue(Text("word " * 200, chunk_size=5, chunk_delay=0.05))
    telegram.user_says(8, "talk for a long time")
    await telegram.wait_for(lambda: any(d["chat_id"] == 8 and "word" in d["text"] for d in telegram.drafts))
    telegram.user_says(8, "/stop")
    await telegram.wait_for(lambda: len(telegram.texts(8)) == 2)
    stopped = telegram.texts(8)[1]
    assert stopped.startswith("word") and stopped.endswith("⏹ Stopped.")  # what was said, then the notice
    assert stopped.count("word") < 200
    telegram.user_says(8, "next")
    await telegram.wait_for(lambda: len(telegram.texts(8)) == 3)
    assert [m["content"] for m in llm.requests[-1]["messages"]] == ["next"]  # the stopped turn is not memory
    rows = await bot.app.services.db.run(lambda s: repo.all_messages(s, 8))
    assert [(r.role, r.complete) for r in rows] == [("user", False), ("assistant", False),
                                                    ("user", True), ("assistant", True)]


async def test_stop_also_withdraws_your_questions_waiting_behind_the_answer(bot: BotRunner, telegram: FakeTelegram,
                                                                            llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    gate = asyncio.Event()
    llm.enqueue(Text("a long answer", gate=gate))
    telegram.user_says(9, "first")
    await llm.wait_for_requests(1)
    telegram.user_says(9, "second")  # waits in the inbox behind the first answer
    telegram.user_says(9, "/stop")
    await telegram.wait_for(lambda: telegram.texts(9))
    gate.set()
    telegram.user_says(9, "third")
    await telegram.wait_for(lambda: len(telegram.texts(9)) == 2)
    assert telegram.texts(9) == ["⏹ Stopped.", "echo: third"]
    assert [r["messages"][-1]["content"] for r in llm.requests] == ["first", "third"]  # "second" was never asked
    await until(lambda: _counts_are(bot.app, done=4, pending=0, processing=0))


async def test_group_stop_withdraws_your_waiting_question_not_someone_elses_answer(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    group = -300
    await bot.start(default_mode="zero-shot", stream_grace=30)  # an answer comes whole
    gate = asyncio.Event()
    llm.enqueue(Text("a long answer", gate=gate))
    telegram.user_says(group, "@adapt_test_bot tell me a story", user_id=61)
    await llm.wait_for_requests(1)
    telegram.user_says(group, "@adapt_test_bot and my question", user_id=62)  # waits behind 61's answer
    telegram.user_says(group, "/stop", user_id=62)
    await telegram.wait_for(lambda: telegram.texts(group))
    assert telegram.texts(group) == ["⏹ Stopped."]  # not "only the person who asked may stop this answer"
    telegram.user_says(group, "just chatting, not to the bot", user_id=63)  # nothing the bot would answer
    telegram.user_says(group, "/stop", user_id=63)
    await telegram.wait_for(lambda: len(telegram.texts(group)) == 2)
    assert telegram.texts(group)[1].startswith("Sorry, only the person who asked")
    assert bot.app.services.chat.is_busy(group)  # 61's answer goes on
    gate.set()
    await telegram.wait_for(lambda: len(telegram.texts(group)) == 3)
    await until(lambda: _counts_are(bot.app, done=5, pending=0, processing=0))
    assert telegram.texts(group)[2] == "a long answer"
    assert len(llm.requests) == 1  # 62's question was never asked


async def test_stop_right_after_a_question_stops_it_before_the_model_answers(bot: BotRunner, telegram: FakeTelegram,
                                                                           llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    for _ in range(3):  # both arrive in one batch: the /stop is handled before the question's answer begins
        before = len(telegram.texts(11))
        telegram.user_says(11, "a question")
        telegram.user_says(11, "/stop")
        await telegram.wait_for(lambda before=before: len(telegram.texts(11)) > before)
        await until(lambda: _counts_are(bot.app, pending=0, processing=0))
        assert telegram.texts(11)[before:] == ["⏹ Stopped."]  # not "Nothing to stop." and then the answer
    assert not [r for r in llm.requests if r["messages"][-1]["content"] == "a question"]


# --- several processes on one database ------------------------------------------------------------------------


@pytest.fixture
async def pair(tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI,
               database_url: str) -> AsyncIterator[tuple[WebhookBot, WebhookBot]]:
    a = WebhookBot(tmp_path, telegram, llm, "a", database_url)
    b = WebhookBot(tmp_path, telegram, llm, "b", database_url)
    yield a, b
    await a.stop()
    await b.stop()


def varied_model(seed: int) -> Callable[[dict[str, Any]], Text]:
    """Echo, after a random short pause (seeded per message), so processes and chats interleave."""
    def answer(body: dict[str, Any]) -> Text:
        last = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        return Text(f"echo: {last}", delay=random.Random(f"{seed}:{last}").random() * 0.05, chunk_size=4)
    return answer


async def test_two_processes_behind_one_webhook_answer_each_update_once_in_order(
        pair: tuple[WebhookBot, WebhookBot], telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    a, b = pair
    llm.default = varied_model(1)
    await a.start(default_mode="zero-shot")
    await b.start(default_mode="zero-shot")
    telegram.webhook_targets = [a.url, b.url]  # the load balancer
    telegram.webhook_duplicate_rate = 0.3  # and Telegram redelivering to both
    chats, per_chat = range(1, 31), 4
    for i in range(per_chat):
        for chat in chats:
            telegram.user_says(chat, f"c{chat} m{i}")
    await telegram.wait_for(lambda: all(len(telegram.texts(c)) >= per_chat for c in chats), timeout=120)
    await a.stop()  # both drain: a second answer, if one were coming, would arrive before these return
    await b.stop()
    for chat in chats:
        assert telegram.texts(chat) == [f"echo: c{chat} m{i}" for i in range(per_chat)]
    asked = [r["messages"][-1]["content"] for r in llm.requests]
    assert sorted(asked) == sorted(f"c{c} m{i}" for c in chats for i in range(per_chat))  # each once
    hosts = {url for _, url, status in telegram.webhook_deliveries if status == 200}
    assert hosts == {a.url, b.url}
    duplicates = len(telegram.webhook_deliveries) - len(telegram.webhook_delivered)
    assert duplicates > 10  # the duplicate deliveries really happened


async def test_stop_reaches_the_process_running_the_answer(pair: tuple[WebhookBot, WebhookBot],
                                                           telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    a, b = pair
    await a.start(default_mode="zero-shot")
    await b.start(default_mode="zero-shot")
    # a long answer that never repeats itself (the loop guard would cut "word word ..." before /stop arrives)
    llm.enqueue(Text(" ".join(f"word{i}" for i in range(400)), chunk_size=5, chunk_delay=0.05))
    telegram.webhook_targets = [a.url]
    telegram.user_says(3, "talk for a long time")
    await telegram.wait_for(lambda: any(d["chat_id"] == 3 and "word" in d["text"] for d in telegram.drafts))
    # usually `a` answers, but b's periodic scan of the shared inbox may claim the chat between a's recording the
    # update and a's own claim (a loaded machine widens that gap): either may be the one answering
    answering, other = (a, b) if a.app.pump.busy else (b, a)
    assert answering.app.pump.busy == 1 and other.app.pump.busy == 0
    telegram.webhook_targets = [other.url]  # the /stop lands on the process that is NOT answering
    telegram.user_says(3, "/stop")
    await telegram.wait_for(lambda: telegram.texts(3))
    assert telegram.texts(3)[0].endswith("⏹ Stopped.") and telegram.texts(3)[0].count("word") < 400
    await a.stop()
    await b.stop()
    assert len(telegram.texts(3)) == 1  # and no "Nothing to stop." from the other process


async def test_work_left_by_another_process_is_picked_up(pair: tuple[WebhookBot, WebhookBot],
                                                         telegram: FakeTelegram, database_url: str) -> None:
    a, _ = pair
    await a.start(default_mode="zero-shot")
    db = Database(database_url)
    try:
        ghost = Inbox(db, "4026530000.aaaaaaaaaaaa.1.1.gone")  # a process elsewhere: only its leases speak for it
        for update_id, chat in ((9001, 41), (9002, 42), (9003, 43)):
            await ghost.add([_message(update_id, chat, f"left by the ghost {chat}")])
        ghost.lease_seconds = -1
        assert await ghost.claim("c42") is not None  # it claimed 42 and died: the lease has run out
        ghost.lease_seconds = 3600
        assert await ghost.claim("c43") is not None  # 43 is held under a live lease: not to be touched
        await telegram.wait_for(lambda: telegram.texts(41) and telegram.texts(42))  # the periodic scan found them
        assert telegram.texts(41) == ["echo: left by the ghost 41"]
        assert telegram.texts(42) == ["echo: left by the ghost 42"]
        assert telegram.texts(43) == []
        reader = Inbox(db, "reader")
        await until(lambda: _counts_are(reader, done=2, processing=1))
    finally:
        await db.dispose()


def _message(update_id: int, chat_id: int, text: str) -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 0, "text": text, "chat": {"id": chat_id, "type": "private", "first_name": "U"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "U", "language_code": "en"}}}
