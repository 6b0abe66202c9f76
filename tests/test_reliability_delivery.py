"""Delivery: an answer counts as done only once Telegram has it, and it reaches the user once.

The bot runs for real against the fake Telegram server, whose faults (outages, stalled responses) stand for a
Telegram that is out of reach or slow; the scripted model server counts how often the model was asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from tests.conftest import BotRunner
from tests.fakes.openai_server import ScriptedOpenAI, Text
from tests.fakes.telegram_server import FakeTelegram, FaultPlan
from tests.waiting import until

SENDS = {"sendMessage", "editMessageText", "sendMessageDraft", "sendChatAction", "deleteMessage"}


def released(caplog: pytest.LogCaptureFixture) -> int:
    """How many times the pump gave an update back because it could not be delivered."""
    return sum(1 for r in caplog.records if "could not be delivered" in r.getMessage())


async def test_an_answer_telegram_never_received_is_delivered_after_the_outage_once(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.pump")
    await bot.start(default_mode="zero-shot", send_retry_seconds=0.5)
    telegram.faults = FaultPlan(SENDS, rate_5xx=1.0)  # Telegram is down: every send answered 502
    telegram.user_says(1, "asked during the outage")
    await until(lambda: released(caplog) >= 1)  # the outage outlived the send retry window
    assert telegram.texts(1) == [] and len(llm.requests) == 1
    assert (await bot.app.inbox.counts()).get("done", 0) == 0  # not marked done: nobody got the answer
    telegram.faults = None  # Telegram is back
    await telegram.wait_for(lambda: telegram.texts(1))
    await until(lambda: _done(bot, 1))
    assert telegram.texts(1) == ["echo: asked during the outage"]  # exactly once
    assert len(llm.requests) == 1  # the stored answer was delivered: the model was not asked again
    telegram.user_says(1, "and after it")
    await telegram.wait_for(lambda: len(telegram.texts(1)) == 2)
    assert telegram.texts(1)[1] == "echo: and after it"


async def _done(bot: BotRunner, n: int) -> bool:
    return (await bot.app.inbox.counts()).get("done", 0) == n


async def test_a_send_telegram_took_but_never_answered_is_not_sent_again(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.telegram_session")
    await bot.start(default_mode="zero-shot", telegram_timeout=1.0, stream_grace=5.0)  # one message, no preview
    telegram.stall_after_accept["sendMessage"] = 1  # Telegram shows the message; its answer never comes back
    telegram.user_says(2, "hello")
    await until(lambda: _done(bot, 1))
    assert telegram.texts(2) == ["echo: hello"]  # once, not once per retry
    assert any("it may have arrived; not sent again" in r.getMessage() for r in caplog.records)
    telegram.user_says(2, "next")  # the chat goes on normally
    await telegram.wait_for(lambda: len(telegram.texts(2)) == 2)
    assert telegram.texts(2) == ["echo: hello", "echo: next"]


def gated_echo(gate: asyncio.Event) -> Callable[[dict], Text]:
    def answer(body: dict) -> Text:
        return Text(f"echo: {body['messages'][-1]['content']}", gate=gate)
    return answer


async def test_a_backlog_runs_at_most_max_concurrent_turns_at_once(bot: BotRunner, telegram: FakeTelegram,
                                                                   llm: ScriptedOpenAI) -> None:
    gate = asyncio.Event()
    llm.default = gated_echo(gate)
    await bot.start(default_mode="zero-shot", max_concurrent_turns=5)
    chats = range(1, 101)
    for chat in chats:  # 100 chats waiting at once, as after downtime
        telegram.user_says(chat, f"q{chat}")
    slots = bot.app.services.chat.slots
    await until(lambda: llm.in_flight == 5 and slots.waiting == 95)  # the rest wait for the model, in the bot
    gate.set()
    await telegram.wait_for(lambda: all(telegram.texts(c) for c in chats), timeout=120)
    await until(lambda: _done(bot, 100))
    assert llm.max_in_flight == 5
    assert all(telegram.texts(c) == [f"echo: q{c}"] for c in chats)
    assert sorted(r["messages"][-1]["content"] for r in llm.requests) == sorted(f"q{c}" for c in chats)


async def test_chats_waiting_for_a_turn_go_oldest_first_and_can_stop(bot: BotRunner, telegram: FakeTelegram,
                                                                     llm: ScriptedOpenAI) -> None:
    gate = asyncio.Event()
    llm.default = gated_echo(gate)
    await bot.start(default_mode="zero-shot", max_concurrent_turns=1)
    chats = range(1, 21)
    for chat in chats:
        telegram.user_says(chat, f"q{chat}")
    slots = bot.app.services.chat.slots
    await until(lambda: llm.in_flight == 1 and slots.waiting == 19)
    first = int(llm.requests[0]["messages"][-1]["content"][1:])
    stopped = 20 if first != 20 else 19
    telegram.user_says(stopped, "/stop")  # a chat still waiting for its turn can be stopped
    await telegram.wait_for(lambda: telegram.texts(stopped) == ["⏹ Stopped."])
    gate.set()
    await telegram.wait_for(lambda: all(telegram.texts(c) for c in chats), timeout=120)
    order = [int(r["messages"][-1]["content"][1:]) for r in llm.requests]
    assert order[1:] == sorted(set(chats) - {first, stopped})  # the oldest waiting update got each free slot
