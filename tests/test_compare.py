"""Side by side (`/compare`) and `/leaderboard` through the real bot, the fake Telegram and the scripted model."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest

from bot.storage import repo
from bot.storage.models import Comparison, Vote
from tests.conftest import BotRunner
from tests.fakes.openai_server import ScriptedOpenAI, Text
from tests.fakes.telegram_server import FakeTelegram, SentMessage

MODES = "/compare zero-shot | prompt"  # both on the scripted cloud model


def by_level(body: dict[str, Any]) -> str:
    """Answers that tell which level asked: the prompt level sends a system prompt, zero-shot does not."""
    question = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    prompted = any(m["role"] == "system" for m in body["messages"])
    return f"{'Prompted' if prompted else 'Plain'} answer to {question}."


async def start(bot: BotRunner, llm: ScriptedOpenAI, seed: int = 1, **overrides: Any) -> Any:
    llm.default = by_level
    app = await bot.start(default_mode="zero-shot", **overrides)
    app.services.compare.rng = random.Random(seed)
    return app


def buttons(message: SentMessage | None) -> list[dict[str, str]]:
    rows = (message.reply_markup or {}).get("inline_keyboard", []) if message else []
    return [b for row in rows for b in row]


async def ask(telegram: FakeTelegram, chat: int, text: str, **kw: Any) -> tuple[SentMessage, SentMessage]:
    """Ask in compare mode; the two answers (A, B) once the vote buttons are under B."""
    before = len(telegram.messages(chat))
    telegram.user_says(chat, text, **kw)
    await telegram.wait_for(lambda: len(telegram.messages(chat)) >= before + 2
                            and buttons(telegram.messages(chat)[before + 1]))
    a, b = telegram.messages(chat)[before:before + 2]
    return a, b


async def say(telegram: FakeTelegram, chat: int, text: str, **kw: Any) -> str:
    before = len(telegram.messages(chat))
    telegram.user_says(chat, text, **kw)
    await telegram.wait_for(lambda: len(telegram.messages(chat)) > before)
    return telegram.messages(chat)[before].text


def press(telegram: FakeTelegram, chat: int, message: SentMessage, label: str, user_id: int | None = None) -> None:
    data = next(b["callback_data"] for b in buttons(message) if b["text"].startswith(label))
    telegram.press_button(chat, message.message_id, data, user_id=user_id)


async def test_each_question_gets_two_labelled_answers_in_both_orders_with_short_vote_buttons(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await start(bot, llm, seed=1)
    assert (await say(telegram, 5, MODES)).startswith("Side by side: zero-shot · cloud vs prompt · cloud.")
    orders = set()
    for k in range(4):
        a, b = await ask(telegram, 5, f"question {k}")
        assert a.text.startswith("A\n\n") and b.text.startswith("B\n\n")
        answers = {a.text.split("\n\n", 1)[1], b.text.split("\n\n", 1)[1]}
        assert answers == {f"Plain answer to question {k}.", f"Prompted answer to question {k}."}
        orders.add("Plain" in a.text)
        assert not buttons(a)
        labels = [x["text"] for x in buttons(b)]
        assert labels == ["A is better", "B is better", "Tie", "Both bad"]
        for x in buttons(b):
            assert len(x["callback_data"].encode()) <= 64
            assert not any(name in x["callback_data"] for name in ("zero", "prompt", "cloud"))
    assert orders == {True, False}  # each mode was shown as A at least once


async def test_a_vote_reveals_both_modes_counts_once_per_user_and_memory_keeps_the_winner(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    app = await start(bot, llm)
    await say(telegram, 5, "hello")  # a turn before: the comparison keeps the history it was asked in
    await say(telegram, 5, MODES)
    a, b = await ask(telegram, 5, "first question")
    prompted = "A" if "Prompted" in a.text else "B"
    plain = "B" if prompted == "A" else "A"
    press(telegram, 5, b, f"{plain} is better")
    await telegram.wait_for(lambda: telegram.find(5, b.message_id).text.startswith("B — ")
                            and telegram.find(5, a.message_id).text.startswith("A — "))
    revealed = {telegram.find(5, m.message_id).text.split("\n\n")[0] for m in (a, b)}
    assert revealed == {f"{prompted} — prompt · cloud", f"{plain} — zero-shot · cloud"}
    press(telegram, 5, telegram.find(5, b.message_id), f"{prompted} is better")  # changed their mind
    await telegram.wait_for(lambda: f"{prompted} is better · 1" in str(telegram.find(5, b.message_id).reply_markup))
    assert f"{plain} is better · 1" not in str(telegram.find(5, b.message_id).reply_markup)

    def stored(s: Any) -> tuple[Comparison, list[Vote]]:
        return s.query(Comparison).one(), s.query(Vote).all()

    comparison, votes = await app.services.db.run(stored)
    assert [(v.voter, v.vote) for v in votes] == [(5, prompted.lower())] and votes[0].created_at is not None
    assert comparison.question == "first question" and comparison.system_prompt
    assert '"hello"' in comparison.history and "Plain answer to hello." in comparison.history
    modes = {"A": (comparison.level_a, comparison.answer_a), "B": (comparison.level_b, comparison.answer_b)}
    assert modes[prompted] == ("prompt", "Prompted answer to first question.")
    assert modes[plain] == ("zero-shot", "Plain answer to first question.")

    llm.requests.clear()
    await ask(telegram, 5, "second question")
    histories = [[m["content"] for m in r["messages"] if m["role"] == "assistant"] for r in llm.requests]
    assert len(histories) == 2
    for history in histories:  # the winner (prompt), not answer A by default, is what the chat remembers
        assert "Prompted answer to first question." in history and "Plain answer to first question." not in history


async def test_memory_keeps_answer_a_before_any_vote_and_on_a_tie(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await start(bot, llm)
    await say(telegram, 5, MODES)
    a, b = await ask(telegram, 5, "first question")
    answer_a = a.text.split("\n\n", 1)[1]
    llm.requests.clear()
    await ask(telegram, 5, "second question")  # no vote yet: answer A is remembered
    assert all(answer_a in [m["content"] for m in r["messages"]] for r in llm.requests)
    answer_b = b.text.split("\n\n", 1)[1]
    assert all(answer_b not in [m["content"] for m in r["messages"]] for r in llm.requests)


async def test_in_a_group_each_member_votes_once_and_the_majority_decides_memory(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    app = await start(bot, llm)
    group = -100
    telegram.chat_admins[group] = {1}
    assert "administrators" in await say(telegram, group, MODES, user_id=2)  # members may not switch it
    assert (await say(telegram, group, MODES, user_id=1)).startswith("Side by side:")
    a, b = await ask(telegram, group, "@adapt_test_bot which is better?", user_id=2)
    assert a.reply_to is not None  # answers the question it was asked in

    async def tally() -> dict[str, int]:
        cid = await app.services.db.run(lambda s: s.query(Comparison.id).scalar())
        return await app.services.db.run(lambda s: repo.vote_tally(s, cid))

    for user, label in ((2, "B"), (3, "B"), (2, "B"), (4, "A")):
        press(telegram, group, telegram.find(group, b.message_id), f"{label} is better", user_id=user)
    await telegram.wait_for(lambda: "A is better · 1" in str(telegram.find(group, b.message_id).reply_markup))
    assert await tally() == {"a": 1, "b": 2, "tie": 0, "both_bad": 0}  # user 2 pressed twice, counted once
    cid = await app.services.db.run(lambda s: s.query(Comparison.id).scalar())
    telegram.press_button(6, 1, f"v:{cid}:a", user_id=6)  # crafted: a comparison of another chat
    await telegram.wait_for(lambda: any(c.get("show_alert") for c in telegram.calls_of("answerCallbackQuery")))
    assert await tally() == {"a": 1, "b": 2, "tie": 0, "both_bad": 0}
    llm.requests.clear()
    await ask(telegram, group, "@adapt_test_bot and now?", user_id=3)
    answer_b = b.text.split("\n\n", 1)[1]
    assert all(answer_b in [m["content"] for m in r["messages"]] for r in llm.requests)


async def test_stop_stops_both_answers_and_nothing_is_put_to_a_vote(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    app = await start(bot, llm)
    await say(telegram, 5, MODES)
    # slow answers (about 10 s each): /stop arrives while both are streaming
    llm.enqueue(Text("Partial answer, word by word. " * 5, chunk_size=8, chunk_delay=0.5),
                Text("Other partial answer, slowly. " * 5, chunk_size=8, chunk_delay=0.5))
    before = len(telegram.messages(5))
    telegram.user_says(5, "a long question")
    await telegram.wait_for(lambda: len(telegram.messages(5)) >= before + 2 and llm.in_flight == 2)
    telegram.user_says(5, "/stop")
    await telegram.wait_for(lambda: all("⏹ Stopped." in m.text for m in telegram.messages(5)[before:before + 2]))
    assert not any(buttons(m) for m in telegram.messages(5)[before:])
    llm.requests.clear()
    await ask(telegram, 5, "a short one")  # the chat's updates run in order: the stopped one is stored by now
    assert all("a long question" not in [m["content"] for m in r["messages"]] for r in llm.requests)
    rows = await app.services.db.run(lambda s: repo.all_messages(s, 5))
    assert [(m.role, m.content if m.role == "user" else "", m.complete) for m in rows[:2]] == [
        ("user", "a long question", False), ("assistant", "", False)]  # kept, but never shown to the model again
    assert await app.services.db.run(lambda s: s.query(Comparison.question).all()) == [("a short one",)]


async def test_guards_watch_each_side_a_looping_answer_is_cut_and_not_put_to_a_vote(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    from tests.test_guards_bot import LOOP

    app = await start(bot, llm)
    await say(telegram, 5, MODES)
    llm.default = lambda body: Text(LOOP, chunk_size=8, chunk_delay=0.002) \
        if any(m["role"] == "system" for m in body["messages"]) else by_level(body)
    before = len(telegram.messages(5))
    telegram.user_says(5, "tell me")
    await telegram.wait_for(lambda: any("repeating itself" in m.text for m in telegram.messages(5)[before:])
                            and any(m.text.endswith("Plain answer to tell me.") for m in telegram.messages(5)[before:]))
    looped = next(m for m in telegram.messages(5)[before:] if "repeating itself" in m.text)
    assert looped.text.count("round and round") < 5  # cut early, one copy kept
    assert not any(buttons(m) for m in telegram.messages(5)[before:])  # a cut answer is not compared
    llm.default = by_level
    llm.requests.clear()
    await ask(telegram, 5, "and then?")  # the chat's updates run in order: the first one is stored by now
    assert all("Plain answer to tell me." in [m["content"] for m in r["messages"]] for r in llm.requests)
    assert await app.services.db.run(lambda s: s.query(Comparison.question).all()) == [("and then?",)]
    assert ("prompt", "cloud", "loops.cut", 1) in await app.services.chat.guard_counts()


async def test_leaderboard_ranks_the_mode_that_wins_most_votes_first(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    app = await start(bot, llm, admin_ids="9")

    def seed(s: Any) -> None:
        rng = random.Random(0)
        for i in range(60):
            strong_first = i % 2 == 0
            modes = [("prompt", "cloud"), ("zero-shot", "cloud")]
            if not strong_first:
                modes.reverse()
            cid = repo.add_comparison(s, chat_id=5, question=f"q{i}", history=[], system_prompt=None,
                                      mode_a=modes[0], answer_a="x", mode_b=modes[1], answer_b="y")
            strong_wins = rng.random() < 0.8
            repo.record_vote(s, cid, 1, "a" if strong_wins == strong_first else "b")

    await app.services.db.run(seed)
    telegram.user_says(5, "/leaderboard")
    await telegram.wait_for(lambda: telegram.texts(5))
    text = telegram.texts(5)[0]
    lines = [line for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert lines[0].split()[1:3] == ["prompt", "cloud"] and lines[1].split()[1:3] == ["zero-shot", "cloud"]
    score, interval, votes = lines[0].split()[3:6]
    low, high = (float(x) for x in interval.split("-"))
    assert low < float(score) < high and low > 1000 and votes == "60"  # better than average, and sure of it
    assert "Season 1, 60 votes" in text
    assert not telegram.files_sent(5)  # the chart is for admins

    telegram.user_says(9, "/leaderboard")
    await telegram.wait_for(lambda: telegram.files_sent(9))
    assert telegram.files_sent(9)[0].kind == "photo" and telegram.files_sent(9)[0].content[:4] == b"\x89PNG"

    assert await say(telegram, 5, "/leaderboard reset") == "Sorry, this command is for the bot's admins only."
    assert "season 2" in await say(telegram, 9, "/leaderboard reset")
    assert "No votes yet in season 2" in await say(telegram, 5, "/leaderboard")
    assert await app.services.db.run(lambda s: s.query(Vote).count()) == 60  # nothing deleted


async def test_compare_menu_picks_two_modes_with_buttons_and_off_leaves_compare_mode(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    app = await start(bot, llm)
    assert (await say(telegram, 5, "/compare")).startswith("Side by side: off.\nPick mode A:")
    menu = telegram.messages(5)[0]
    press(telegram, 5, menu, "prompt · cloud")
    await telegram.wait_for(lambda: telegram.find(5, menu.message_id).text.startswith("A: prompt · cloud."))
    press(telegram, 5, telegram.find(5, menu.message_id), "rag · cloud")
    await telegram.wait_for(lambda: telegram.find(5, menu.message_id).text.startswith("Side by side: prompt"))
    from bot.service import Mode

    assert await app.services.compare.get(5) == (Mode("prompt", "cloud"), Mode("rag", "cloud"))
    await bot.restart()  # kept across restarts
    assert await bot.app.services.compare.get(5) == (Mode("prompt", "cloud"), Mode("rag", "cloud"))
    assert (await say(telegram, 5, "/compare off")).startswith("Side by side is off")
    before = len(telegram.messages(5))
    telegram.user_says(5, "just one answer")
    await telegram.wait_for(lambda: len(telegram.messages(5)) > before)
    assert telegram.messages(5)[before].text == "Plain answer to just one answer."


async def test_compare_columns_appear_in_an_existing_database_and_the_memory_follows_the_winner(
        database_url: str) -> None:
    from sqlalchemy import inspect, text

    from bot.storage import Database

    db = Database(database_url)
    try:
        await db.create_all()
        for table, column in (("chat_settings", "compare"), ("comparisons", "memory_id"), ("comparisons", "shown")):
            await db.run(lambda s, t=table, c=column: s.execute(text(f'ALTER TABLE {t} DROP COLUMN "{c}"')))
        await db.create_all()  # what start-up does on a database from before /compare
        columns = await db.run(lambda s: {t: {c["name"] for c in inspect(s.connection()).get_columns(t)}
                                          for t in ("chat_settings", "comparisons")})
        assert "compare" in columns["chat_settings"] and {"memory_id", "shown"} <= columns["comparisons"]

        def store(s: Any) -> int:
            _, memory = repo.add_messages(s, [dict(chat_id=5, role="user", content="q"),
                                              dict(chat_id=5, role="assistant", content="answer a", level="prompt",
                                                   model="cloud")])
            cid = repo.add_comparison(s, chat_id=5, question="q", history=[], system_prompt="Be brief.",
                                      mode_a=("prompt", "cloud"), answer_a="answer a", mode_b=("rag", "cloud"),
                                      answer_b="answer b")
            repo.link_comparison(s, cid, memory_id=memory, shown='{"buttons": 1}')
            repo.record_vote(s, cid, 7, "b")
            repo.keep_answer(s, memory, "answer b", "rag", "cloud")
            return cid

        cid = await db.run(store)
        history = await db.run(lambda s: [(m.content, m.level) for m in repo.all_messages(s, 5)])
        assert history == [("q", None), ("answer b", "rag")]
        stored = await db.run(lambda s: repo.get_comparison(s, cid))
        assert stored is not None and stored.shown == '{"buttons": 1}' and stored.memory_id is not None
    finally:
        await db.dispose()


async def test_a_vote_after_reset_counts_but_never_rewrites_a_newer_answer_of_any_chat(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    app = await start(bot, llm)
    await say(telegram, 5, MODES)
    _, b = await ask(telegram, 5, "old question")
    answer_b = b.text.split("\n\n", 1)[1]
    assert (await say(telegram, 5, "/reset")).startswith("Memory of this chat cleared")
    # the stored rows of chat 5 are gone: another chat's new turn may now be stored where they were
    assert await say(telegram, 6, "hello") == "Plain answer to hello."
    press(telegram, 5, b, "B is better")
    await telegram.wait_for(lambda: "B is better · 1" in str(telegram.find(5, b.message_id).reply_markup))
    memory = await app.services.db.run(lambda s: [m.content for m in repo.all_messages(s, 6)])
    assert memory == ["hello", "Plain answer to hello."]  # chat 6 keeps its own answer
    assert answer_b not in memory
    assert await app.services.db.run(lambda s: repo.all_messages(s, 5)) == []  # /reset stays a reset


async def test_a_compare_question_run_again_after_telegram_failed_offers_the_vote_and_no_third_answer(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    from tests.fakes.telegram_server import FaultPlan
    from tests.test_reliability_delivery import released
    from tests.waiting import until

    caplog.set_level(logging.WARNING, logger="bot.pump")

    app = await start(bot, llm, send_retry_seconds=0.5)
    await say(telegram, 5, MODES)
    llm.requests.clear()
    # both answers are shown, then Telegram fails to put the vote buttons under them: the update runs again
    telegram.faults = FaultPlan({"editMessageReplyMarkup"}, rate_5xx=1.0)
    before = len(telegram.messages(5))
    telegram.user_says(5, "a question")
    await until(lambda: released(caplog) >= 1)  # the outage outlived the send retry window
    telegram.faults = None
    await telegram.wait_for(lambda: any(buttons(m) for m in telegram.messages(5)[before:]))
    await until(lambda: app.services.db.run(lambda s: s.query(Comparison.shown).scalar()))  # a vote can reveal
    new = telegram.messages(5)[before:]
    assert len(llm.requests) == 2  # the stored answers were shown again, the models were not asked again
    assert not any("👍" in str(m.reply_markup) for m in new)  # no third, unlabelled answer with 👍/👎
    voting = next(m for m in new if buttons(m))
    assert voting.text.startswith("B\n\n")
    press(telegram, 5, voting, "A is better")
    await telegram.wait_for(lambda: "A is better · 1" in str(telegram.find(5, voting.message_id).reply_markup))
    assert telegram.find(5, voting.message_id).text.startswith("B — ")


async def test_forged_vote_feedback_and_menu_data_with_odd_ids_is_refused_not_an_error(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await start(bot, llm)
    await say(telegram, 5, MODES)
    _, b = await ask(telegram, 5, "a question")
    # a modified client may send any data up to 64 bytes
    for data in (f"v:{10**40}:a", f"fb:{10**40}:u", "v:²:a", "fb:²:u", "compare:#²"):
        before = len(telegram.answers_to_buttons())
        telegram.press_button(5, b.message_id, data, user_id=5)
        await telegram.wait_for(lambda n=before: len(telegram.answers_to_buttons()) > n)
    assert await say(telegram, 5, "/compare #²") == "That menu is out of date: send /compare again."
    assert not any("went wrong" in t for t in telegram.texts(5))


async def test_menu_arguments_naming_one_mode_twice_are_refused_like_typed_ones(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    """`/compare #1 #1` (typed, or a forged button) would compare a mode with itself, votes no rating can use."""
    app = await start(bot, llm)
    assert await say(telegram, 5, "/compare #1 #1") == "Pick two different modes to compare."
    assert await app.services.compare.get(5) is None
    assert (await say(telegram, 5, "/compare #0 #1 #2")).startswith("Usage: /compare")
    assert await app.services.compare.get(5) is None


def test_the_reveal_of_a_full_first_message_with_a_long_model_name_stays_within_telegrams_limit() -> None:
    """A model name longer than the room the label kept would make Telegram refuse the reveal edit."""
    from bot.handlers.compare import revealed
    from bot.rendering import TELEGRAM_LIMIT, render, utf16_len
    from bot.service import Mode
    from bot.streaming import LABEL_ROOM, relabel

    label = "A"
    first = render(f"{label}\n\n" + "одно слово за другим\n" * 600, TELEGRAM_LIMIT - LABEL_ROOM)[0]  # as streamed
    assert utf16_len(first.text) > TELEGRAM_LIMIT - LABEL_ROOM - 30  # the first message is full
    for model in ("gpt-4o-mini", "finetuned:" + "очень-длинное-имя-" * 20):
        shown = relabel(first, label, revealed(label, Mode("prompt", model)))
        assert utf16_len(shown.text) <= TELEGRAM_LIMIT
        assert shown.text.startswith(f"A — prompt · {model[:20]}")
    assert revealed(label, Mode("prompt", "gpt-4o-mini")) == "A — prompt · gpt-4o-mini"  # short ones untouched
