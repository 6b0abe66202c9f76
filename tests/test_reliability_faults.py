"""Everything fails a little at once: 200 chats x 5 messages through a flaky Telegram and a flaky model.

Telegram answers 20% of sends with 429 (retry_after 1-3 s) and 5% with 502. A tenth of the messages meet a model
fault: a 500 once (the client retries), a 500 every time, a stream that breaks before its first token (ChatService
retries it), a stream that breaks half-way, a model that stalls past OPENAI_TIMEOUT.

What "one final answer" means: every message gets exactly one final message in its chat, in order. When the model
succeeds (after retries) that is the answer; when it fails, it is the part already streamed (if any) followed by
one short notice, and the stored turn is marked incomplete (kept for the record, never sent to the model again).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from bot.inbox import Inbox
from bot.storage import Database, repo
from tests.conftest import BotRunner
from tests.fakes.fault_mix import ANSWERED, MODEL_FAULTS, flaky_model, label, plan_model_faults
from tests.fakes.openai_server import ScriptedOpenAI
from tests.fakes.telegram_server import BOT_USERNAME, FakeTelegram, FaultPlan

PRIVATE = list(range(1, 161))
GROUPS = [-n for n in range(1, 41)]  # groups get edited previews instead of drafts
PER_CHAT = 5
@pytest.mark.slow
async def test_every_message_gets_one_final_answer_in_order(bot: BotRunner, telegram: FakeTelegram,
                                                           llm: ScriptedOpenAI) -> None:
    kinds = plan_model_faults(PRIVATE + GROUPS, PER_CHAT, seed=11)
    assert {k for k in kinds.values()} == {"ok", *MODEL_FAULTS}  # every kind of fault is in the mix
    llm.default = flaky_model(kinds)
    telegram.faults = FaultPlan({"sendMessage", "editMessageText", "sendMessageDraft", "sendChatAction",
                                 "deleteMessage"}, rate_429=0.20, retry_after=(1, 3), rate_5xx=0.05, seed=3)
    await bot.start(default_mode="zero-shot", openai_timeout=1.0, openai_max_retries=2, send_interval=0.01,
                    group_send_interval=0.01, send_retry_seconds=300, stream_edit_interval=0.2,
                    shutdown_timeout=60, rate_limit_per_minute=0)
    for i in range(PER_CHAT):
        for chat in PRIVATE + GROUPS:
            prefix = f"@{BOT_USERNAME} " if chat < 0 else ""
            telegram.user_says(chat, prefix + label(chat, i), user_id=abs(chat) + 10_000)
    total = len(kinds)
    while (await bot.app.inbox.counts()).get("done", 0) < total:  # database state: checked every 0.2 s
        await asyncio.sleep(0.2)
    url = bot.app.settings.db_url
    await bot.stop()  # nothing in flight: a late duplicate would have to show up before this returns
    db = Database(url)
    try:
        assert await Inbox(db, "reader").counts() == {"done": total}
        await check_outcomes(telegram, db, kinds)
    finally:
        await db.dispose()
    statuses = Counter(status for _, status in telegram.fault_log)
    assert statuses[429] > 100 and statuses[502] > 20  # the faults really were injected


async def check_outcomes(telegram: FakeTelegram, db: Database, kinds: dict[str, str]) -> None:
    for chat in PRIVATE + GROUPS:
        finals = telegram.texts(chat)
        assert len(finals) == PER_CHAT, (chat, finals)
        for i, text in enumerate(finals):
            kind, expected = kinds[label(chat, i)], f"echo: {label(chat, i)}"
            if kind in ANSWERED:
                assert text == expected, (chat, i, kind, text)
            elif kind == "break-half-way":
                assert text.startswith("echo:") and "⚠️" in text and text != expected, (chat, i, text)
            else:
                assert text.startswith("⚠️"), (chat, i, kind, text)
        rows = await db.run(lambda s, chat=chat: repo.all_messages(s, chat))
        assert [r.content for r in rows if r.role == "user"] == [label(chat, i) for i in range(PER_CHAT)]
        assert [r.role for r in rows] == ["user", "assistant"] * PER_CHAT  # every turn once, in order
        complete = [r.complete for r in rows if r.role == "assistant"]
        assert complete == [kinds[label(chat, i)] in ANSWERED for i in range(PER_CHAT)], chat


@pytest.mark.slow
async def test_an_outage_longer_than_the_send_retry_window_loses_nothing(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    """Telegram answers every send with 502 for longer than SEND_RETRY_SECONDS: the inbox, not the HTTP retry,
    has to carry the answers over the outage."""
    caplog.set_level(logging.WARNING, logger="bot.pump")
    chats = PRIVATE[:30] + GROUPS[:10]
    await bot.start(default_mode="zero-shot", send_interval=0.01, group_send_interval=0.01, send_retry_seconds=0.5,
                    stream_edit_interval=0.2, rate_limit_per_minute=0)
    telegram.faults = FaultPlan({"sendMessage", "editMessageText", "sendMessageDraft", "sendChatAction",
                                 "deleteMessage"}, rate_5xx=1.0)
    for i in range(2):
        for chat in chats:
            prefix = f"@{BOT_USERNAME} " if chat < 0 else ""
            telegram.user_says(chat, prefix + label(chat, i), user_id=abs(chat) + 10_000)

    def given_back() -> set[str]:  # updates the pump gave back because Telegram would not take their answer
        return {str(r.args[0]) for r in caplog.records if "could not be delivered" in r.getMessage()}

    async def done() -> int:
        return (await bot.app.inbox.counts()).get("done", 0)

    async def outage() -> None:
        while len(given_back()) < len(chats):  # every chat's first answer outlived the send retry window
            await asyncio.sleep(0.2)

    async def recovery() -> None:
        while await done() < 2 * len(chats):
            await asyncio.sleep(0.2)

    await asyncio.wait_for(outage(), 120)
    assert await done() == 0
    telegram.faults = None  # Telegram is back
    await asyncio.wait_for(recovery(), 120)
    await bot.stop()
    for chat in chats:
        assert telegram.texts(chat) == [f"echo: {label(chat, i)}" for i in range(2)], chat
    asked = Counter(r["messages"][-1]["content"].removeprefix(f"@{BOT_USERNAME} ") for r in llm.requests)
    assert asked == Counter(label(chat, i) for chat in chats for i in range(2))  # the model once per message


async def test_a_unit_whose_commit_fails_is_not_committed_later(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SQLite keeps one connection for its thread: a unit whose COMMIT fails (an I/O error, a full disk) must not
    be committed by the next unit of work on that connection, and the database goes on working."""
    import sqlite3

    from sqlalchemy import event

    path = tmp_path / "commit.db"
    db = Database(f"sqlite:///{path}")
    await db.create_all()
    failures = ["disk I/O error"]

    def on_commit(_connection: object) -> None:
        if failures:
            raise OSError(failures.pop())

    event.listen(db._engine, "commit", on_commit)
    try:
        with pytest.raises(OSError):
            await db.run(lambda s: repo.set_setting(s, "greeting", "lost"))
        assert await db.run(lambda s: repo.get_setting(s, "greeting")) is None
        await db.run(lambda s: repo.set_setting(s, "other", "kept"))
        with sqlite3.connect(path) as outside:  # what another process sees
            assert outside.execute("SELECT key, value FROM settings").fetchall() == [("other", "kept")]
    finally:
        await db.dispose()
