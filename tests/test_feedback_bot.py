"""Feedback on answers through the real bot and the fake Telegram: 👍/👎 buttons and reasons, reactions, /fix,
/feedback and /export (admins), in private chats and groups."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

from tests.conftest import BotRunner, make_settings
from tests.fakes.openai_server import ScriptedOpenAI, Text
from tests.fakes.telegram_server import FakeTelegram, SentMessage
from tests.test_dataset import loads_with_datasets, passes_finetune_validation

ADMIN = 500
GROUP = -700


def labels(message: SentMessage) -> list[str]:
    return [b["text"] for row in (message.reply_markup or {}).get("inline_keyboard", []) for b in row]


def button(message: SentMessage, label: str) -> str:
    return next(b["callback_data"] for row in message.reply_markup["inline_keyboard"] for b in row  # type: ignore[index]
                if b["text"] == label)


async def answered(telegram: FakeTelegram, chat_id: int, text: str) -> SentMessage:
    """Wait for the final answer showing `text`, and return its message."""
    return await telegram.wait_for(lambda: next(
        (m for m in telegram.messages(chat_id) if m.text == text and "👍" in labels(m)), None))


async def verdicts(bot: BotRunner) -> list[tuple[Any, ...]]:
    """(user, kind, rating, reason, source) of every stored feedback row, oldest first."""
    from bot.storage.models import Feedback

    return await bot.app.services.db.run(lambda s: [
        (r.user_id, r.kind, r.rating, r.reason, r.source)
        for r in s.query(Feedback).order_by(Feedback.id)])


async def handled(bot: BotRunner, update_id: int) -> None:
    """Wait until the bot finished an update that shows nothing (a reaction)."""
    from bot.storage.models import InboxItem

    async def done() -> None:
        while await bot.app.services.db.run(lambda s: getattr(s.get(InboxItem, update_id), "status", None)) \
                not in ("done", "failed"):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(done(), 20)


async def press(telegram: FakeTelegram, chat_id: int, message: SentMessage, label: str,
                user_id: int | None = None) -> str:
    """Press a button under `message`; what the bot said back to the press (its short notice or alert)."""
    before = len(telegram.answers_to_buttons())
    telegram.press_button(chat_id, message.message_id, button(message, label), user_id=user_id)
    await telegram.wait_for(lambda: len(telegram.answers_to_buttons()) > before)
    return str(telegram.answers_to_buttons()[-1].get("text", ""))


async def test_thumbs_and_reasons_are_stored_and_a_second_press_changes_them(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="prompt")
    llm.enqueue(Text("Paris is the capital of France.", chunk_size=6))
    telegram.user_says(5, "Capital of France?")
    answer = await answered(telegram, 5, "Paris is the capital of France.")
    assert labels(answer) == ["👍", "👎"]
    assert all(len(b["callback_data"].encode()) <= 64 for row in answer.reply_markup["inline_keyboard"] for b in row)

    assert await press(telegram, 5, answer, "👍") == "Thanks! 👍 noted."
    assert await verdicts(bot) == [(5, "rating", "up", None, "button")]

    assert await press(telegram, 5, answer, "👎") == "👎 noted. What was wrong? (optional)"
    assert await verdicts(bot) == [(5, "rating", "down", None, "button")]  # changed, not added
    assert labels(answer) == ["wrong facts", "wrong language", "did not follow instructions", "too long", "other",
                              "👍"]
    assert await press(telegram, 5, answer, "too long") == "Noted: too long."
    assert await verdicts(bot) == [(5, "rating", "down", "too_long", "button")]
    assert labels(answer) == ["👍", "👎"]  # back to the two buttons

    # /reset forgets the answer: a later press says so and stores nothing
    telegram.user_says(5, "/reset")
    await telegram.wait_for(lambda: any("Memory of this chat cleared" in t for t in telegram.texts(5)))
    alert = await press(telegram, 5, answer, "👍")
    assert alert.startswith("This answer is no longer in the chat's memory")
    assert telegram.answers_to_buttons()[-1].get("show_alert") is True


async def test_a_verdict_on_a_reset_answer_never_lands_on_the_next_answer_of_the_chat(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    from bot.storage import repo

    await bot.start(default_mode="prompt")
    llm.enqueue(Text("A wrong answer."))
    telegram.user_says(5, "first question")
    await press(telegram, 5, await answered(telegram, 5, "A wrong answer."), "👎")
    telegram.user_says(5, "/reset")
    await telegram.wait_for(lambda: any("Memory of this chat cleared" in t for t in telegram.texts(5)))
    llm.enqueue(Text("A fine answer nobody rated."))
    telegram.user_says(5, "second question")
    await answered(telegram, 5, "A fine answer nobody rated.")
    # what the dataset export reads: the new answer (stored where SQLite may reuse the old rows' ids) has no 👎
    page = await bot.app.services.db.run(lambda s: repo.feedback_chat_page(s, (0, 0), 100))
    assert [(m.content, m.feedback) for m in page if m.role == "assistant"] in (
        [], [("A fine answer nobody rated.", [])])


async def test_group_answers_get_buttons_on_the_final_edit_and_each_member_counts_once(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="prompt")
    llm.enqueue(Text("one two three four five six seven", chunk_size=4, chunk_delay=0.05))
    telegram.user_says(GROUP, "@adapt_test_bot count please", user_id=61)
    answer = await answered(telegram, GROUP, "one two three four five six seven")
    assert answer.edits >= 1  # streamed as a preview, then the final edit brought the buttons
    await press(telegram, GROUP, answer, "👍", user_id=61)
    await press(telegram, GROUP, answer, "👎", user_id=62)
    await press(telegram, GROUP, answer, "👍", user_id=61)  # the same member again: still one verdict
    assert sorted(await verdicts(bot)) == [(61, "rating", "up", None, "button"),
                                           (62, "rating", "down", None, "button")]


async def test_no_buttons_when_switched_off_or_under_a_stopped_answer(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="prompt")
    gate = asyncio.Event()
    llm.enqueue(Text("a long story that never ends", chunk_size=4, gate=gate))
    telegram.user_says(6, "tell me a story")
    await telegram.wait_for(lambda: len(llm.requests) == 1)
    telegram.user_says(6, "/stop")
    await telegram.wait_for(lambda: any("Stopped" in m.text for m in telegram.messages(6)))
    gate.set()
    assert all(m.reply_markup is None for m in telegram.messages(6))

    await bot.restart(feedback_buttons="off")
    llm.enqueue(Text("Plain answer."))
    telegram.user_says(7, "hello")
    await telegram.wait_for(lambda: telegram.texts(7) == ["Plain answer."])
    assert telegram.messages(7)[0].reply_markup is None


async def test_reactions_count_like_the_buttons_and_taking_one_back_removes_the_vote(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="prompt")
    llm.enqueue(Text("The capital of Germany is Berlin."))
    telegram.user_says(8, "Capital of Germany?")
    answer = await answered(telegram, 8, "The capital of Germany is Berlin.")
    assert "message_reaction" in telegram.allowed_updates  # asked for: Telegram sends reactions only then

    await handled(bot, telegram.react(8, answer.message_id, ["🔥"]))
    assert await verdicts(bot) == [(8, "rating", "up", None, "reaction")]
    await handled(bot, telegram.react(8, answer.message_id, ["💩"], old=["🔥"]))
    assert await verdicts(bot) == [(8, "rating", "down", None, "reaction")]
    await handled(bot, telegram.react(8, answer.message_id, [], old=["💩"]))
    assert await verdicts(bot) == []
    await handled(bot, telegram.react(8, answer.message_id, ["🎃"]))  # no verdict in it
    assert await verdicts(bot) == []

    await press(telegram, 8, answer, "👍")
    await handled(bot, telegram.react(8, answer.message_id, [], old=["🎃"]))  # a reaction gone: the button stays
    assert await verdicts(bot) == [(8, "rating", "up", None, "button")]

    telegram.user_says(8, "/help")
    await telegram.wait_for(lambda: any("/mode" in t for t in telegram.texts(8)))
    help_message = telegram.messages(8)[-1]
    await handled(bot, telegram.react(8, help_message.message_id, ["👎"]))  # not an answer: nothing to rate
    assert await verdicts(bot) == [(8, "rating", "up", None, "button")]
    assert not telegram.not_delivered


async def test_fix_replaces_the_answer_in_memory_and_keeps_the_pair(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="prompt")
    llm.enqueue(Text("The capital of Italy is Milan."))
    telegram.user_says(9, "Capital of Italy?")
    answer = await answered(telegram, 9, "The capital of Italy is Milan.")

    async def says(text: str, **reply: int) -> str:
        before = len(telegram.messages(9))
        telegram.user_says(9, text, **reply)
        await telegram.wait_for(lambda: len(telegram.messages(9)) > before)
        return telegram.messages(9)[before].text

    assert await says("/fix Rome.") == "Reply to one of my answers with /fix <better answer> to correct it."
    assert (await says("/fix Rome.", reply_to_user=3)).startswith("/fix corrects my answers")
    assert await says("/fix", reply_to_bot=answer.message_id) == \
        "Write the better answer after /fix: /fix <better answer>."
    usage_message = telegram.messages(9)[-1]
    assert (await says("/fix Rome.", reply_to_bot=usage_message.message_id)).startswith(
        "That message is not an answer I still remember")
    assert await says("/fix The capital of Italy is Rome.", reply_to_bot=answer.message_id) == \
        "✅ Correction saved: I will remember your version of that answer."
    assert await verdicts(bot) == [(9, "correction", "down", None, "correction")]

    llm.enqueue(Text("Rome has about 2.8 million people."))
    telegram.user_says(9, "How many people live there?")
    await answered(telegram, 9, "Rome has about 2.8 million people.")
    sent = [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "assistant"]
    assert "The capital of Italy is Rome." in sent and "The capital of Italy is Milan." not in sent


async def test_fix_in_the_terminal_corrects_the_last_answer(tmp_path: Path, llm: ScriptedOpenAI) -> None:
    from bot.app import create_services
    from bot.terminal import Terminal

    services = await create_services(make_settings(tmp_path, None, llm, default_mode="prompt"))
    try:
        out = io.StringIO()
        terminal = Terminal(services, 3, "en", out)
        llm.enqueue(Text("Two plus two is five."))
        await terminal.handle("What is 2+2?")
        await terminal.handle("/fix Two plus two is four.")
        assert "Correction saved" in out.getvalue()
        assert [t.content for t in await services.chat.history(3)] == ["What is 2+2?", "Two plus two is four."]
    finally:
        await services.aclose()


async def test_feedback_counts_and_export_documents_for_admins_only(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, tmp_path: Path) -> None:
    await bot.start(default_mode="prompt", admin_ids=str(ADMIN))
    llm.enqueue(Text("The capital of France is Paris."), Text("The capital of Italy is Milan."),
                Text("Water boils at 100 degrees Celsius at sea level, and that is all there is to say."))
    answers = []
    for question, text in (("Capital of France?", "The capital of France is Paris."),
                           ("Capital of Italy?", "The capital of Italy is Milan."),
                           ("When does water boil?",
                            "Water boils at 100 degrees Celsius at sea level, and that is all there is to say.")):
        telegram.user_says(ADMIN, question)
        answers.append(await answered(telegram, ADMIN, text))
    await press(telegram, ADMIN, answers[0], "👍")
    await press(telegram, ADMIN, answers[1], "👎")
    await press(telegram, ADMIN, answers[1], "wrong facts")
    await press(telegram, ADMIN, answers[2], "👎")
    await press(telegram, ADMIN, answers[2], "too long")
    telegram.user_says(ADMIN, "/fix The capital of Italy is Rome.", reply_to_bot=answers[1].message_id)
    await telegram.wait_for(lambda: any("Correction saved" in t for t in telegram.texts(ADMIN)))

    async def says(chat: int, text: str) -> str:
        before = len(telegram.messages(chat))
        telegram.user_says(chat, text)
        await telegram.wait_for(lambda: len(telegram.messages(chat)) > before)
        return telegram.messages(chat)[before].text

    from bot.storage import repo

    await bot.app.services.db.run(lambda s: repo.count_guard_events(s, "prompt", "cloud", ["loops.cut"]))
    report = await says(ADMIN, "/feedback")
    row = "prompt cloud: 👍 1 · 👎 2 (too long 1, wrong facts 1) · corrections 1 · votes 0"
    assert report == (f"Last 7 days:\n{row}\n\nLast 30 days:\n{row}\n\n"
                      "Guard events (since the start):\nprompt cloud: loops.cut × 1"), report
    for command in ("/feedback", "/export sft"):
        assert await says(11, command) == "Sorry, this command is for the bot's admins only."
    assert not telegram.files_sent(11)

    exported: dict[str, list[dict[str, Any]]] = {}
    for kind in ("sft", "dpo", "kto"):
        before = len(telegram.files_sent(ADMIN))
        telegram.user_says(ADMIN, f"/export {kind}")
        await telegram.wait_for(lambda b=before: len(telegram.files_sent(ADMIN)) > b)
        document = telegram.files_sent(ADMIN)[-1]
        assert document.kind == "document" and document.name == f"{kind}.jsonl"
        path = tmp_path / f"bot-{kind}.jsonl"
        path.write_bytes(document.content)
        exported[kind] = [json.loads(line) for line in document.content.decode().splitlines()]
        assert loads_with_datasets(path) == len(exported[kind])
        assert document.caption is not None and document.caption.startswith(f"{kind}: {len(exported[kind])} ")
        assert "prompt cloud: " in document.caption
        assert str(ADMIN) not in document.content.decode()  # raters are hashes, never Telegram ids
    sft = exported["sft"]
    assert [r["messages"][-1]["content"] for r in sft] == ["The capital of France is Paris.",
                                                           "The capital of Italy is Rome."]
    assert sft[0]["messages"][0]["role"] == "system"  # the system prompt in force
    passes_finetune_validation(tmp_path / "bot-sft.jsonl", [r["messages"] for r in sft])
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in exported["dpo"]] == [
        ("The capital of Italy is Rome.", "The capital of Italy is Milan.")]
    assert sorted((r["completion"][0]["content"], r["label"]) for r in exported["kto"]) == [
        ("The capital of France is Paris.", True), ("The capital of Italy is Milan.", False),
        ("Water boils at 100 degrees Celsius at sea level, and that is all there is to say.", False)]

    assert (await says(ADMIN, '/export kto --mode "agent cloud"')).startswith("Nothing to export as kto")
    assert (await says(ADMIN, "/export everything")).startswith("Usage: /export sft|dpo|kto")


async def test_export_in_a_group_is_refused_so_other_chats_conversations_never_reach_its_members(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="prompt", admin_ids=str(ADMIN))
    llm.enqueue(Text("A private answer."))
    telegram.user_says(ADMIN, "my private question")
    await press(telegram, ADMIN, await answered(telegram, ADMIN, "A private answer."), "👍")
    telegram.user_says(GROUP, "/export sft", user_id=ADMIN)
    await telegram.wait_for(lambda: telegram.texts(GROUP) or telegram.files_sent(GROUP))
    assert telegram.texts(GROUP) == ["The dataset holds every chat's conversations: send /export to me in a "
                                     "private chat."]
    assert not telegram.files_sent(GROUP)
    telegram.user_says(ADMIN, "/export sft")  # in private it comes back as before
    await telegram.wait_for(lambda: telegram.files_sent(ADMIN))
    assert b"my private question" in telegram.files_sent(ADMIN)[0].content


async def test_export_says_what_is_wrong_with_a_flag(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="prompt", admin_ids=str(ADMIN))
    for command, why in (("/export sft --since yesterday", "expected a date like 2026-11-01, got 'yesterday'"),
                         ("/export kto --lang de", "invalid choice: 'de'"),
                         ("/export dpo --frobnicate", "unrecognized arguments: --frobnicate"),
                         ("/export sft --help", "")):  # argparse would print its help and exit the process
        before = len(telegram.messages(ADMIN))
        telegram.user_says(ADMIN, command)
        await telegram.wait_for(lambda b=before: len(telegram.messages(ADMIN)) > b)
        reply = telegram.messages(ADMIN)[before].text
        assert reply.startswith("Usage: /export sft|dpo|kto") and why in reply, reply
