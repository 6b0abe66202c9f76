"""The core bot end to end: the real aiogram bot over HTTP against a fake Telegram and a scripted model."""

from __future__ import annotations

import asyncio

from bot.service import Mode
from tests.conftest import BotRunner
from tests.fakes.openai_server import ScriptedOpenAI, Text
from tests.fakes.telegram_server import FakeTelegram, FaultPlan


def sent_messages(llm: ScriptedOpenAI, index: int = -1) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in llm.requests[index]["messages"]]


async def test_answer_and_memory_across_turns(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    llm.enqueue("Nice to meet you, Ann.")
    telegram.user_says(1, "My name is Ann.")
    assert (await telegram.wait_texts(1, 1))[0] == "Nice to meet you, Ann."
    llm.enqueue("You are Ann.")
    telegram.user_says(1, "What is my name?")
    await telegram.wait_for(lambda: telegram.texts(1)[-1:] == ["You are Ann."])
    assert sent_messages(llm) == [("user", "My name is Ann."), ("assistant", "Nice to meet you, Ann."),
                                  ("user", "What is my name?")]


async def test_prompt_level_sends_system_prompt_and_few_shot(bot: BotRunner, telegram: FakeTelegram,
                                                             llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="prompt")
    telegram.user_says(2, "How much are 4 pens?")
    await telegram.wait_texts(2, 1)
    messages = sent_messages(llm)
    assert messages[0][0] == "system" and "adaptbot" in messages[0][1] and "step by step" in messages[0][1]
    assert messages[1] == ("user", "A shop sells pens at 3 for 45 roubles. How much do 7 pens cost?")
    assert messages[2][0] == "assistant" and "105" in messages[2][1]
    assert messages[-1] == ("user", "How much are 4 pens?")


async def test_zero_shot_sends_no_system_prompt(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start()
    telegram.user_says(3, "/mode zero-shot")
    await telegram.wait_texts(3, 1)
    telegram.user_says(3, "hi")
    await telegram.wait_for(lambda: "echo: hi" in telegram.texts(3))
    assert sent_messages(llm) == [("user", "hi")]


async def test_reset_forgets_only_this_chat(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    for chat in (10, 11):
        telegram.user_says(chat, f"I am chat {chat}")
        await telegram.wait_texts(chat, 1)
    telegram.user_says(10, "/reset")
    await telegram.wait_for(lambda: any("cleared" in t for t in telegram.texts(10)))
    telegram.user_says(10, "who?")
    await telegram.wait_for(lambda: "echo: who?" in telegram.texts(10))
    assert sent_messages(llm) == [("user", "who?")]
    telegram.user_says(11, "who?")
    await telegram.wait_for(lambda: "echo: who?" in telegram.texts(11))
    assert sent_messages(llm)[0] == ("user", "I am chat 11")


async def test_mode_by_text_and_buttons_survives_restart(bot: BotRunner, telegram: FakeTelegram,
                                                          llm: ScriptedOpenAI) -> None:
    await bot.start()
    telegram.user_says(4, "/mode cloud zero-shot")
    await telegram.wait_for(lambda: telegram.texts(4) == ["Mode: zero-shot · cloud"])
    telegram.user_says(4, "/mode bogus")
    await telegram.wait_for(lambda: len(telegram.texts(4)) == 2)
    reply = telegram.texts(4)[1]
    assert "bogus" in reply and "zero-shot" in reply and "prompt" in reply and "cloud" in reply
    telegram.user_says(4, "/mode")
    await telegram.wait_for(lambda: len(telegram.messages(4)) == 3)
    menu = telegram.messages(4)[2]
    buttons = [b for row in menu.reply_markup["inline_keyboard"] for b in row]
    assert "✅ zero-shot" in [b["text"] for b in buttons] and "✅ cloud" in [b["text"] for b in buttons]
    assert "prompt engineering" in menu.text
    prompt_button = next(b for b in buttons if b["text"] == "prompt")
    telegram.press_button(4, menu.message_id, prompt_button["callback_data"])
    await telegram.wait_for(lambda: "✅ prompt" in str(telegram.find(4, menu.message_id).reply_markup))
    await telegram.wait_for(lambda: telegram.calls_of("answerCallbackQuery"))
    await bot.restart()
    telegram.user_says(4, "hello again")
    await telegram.wait_for(lambda: "echo: hello again" in telegram.texts(4))
    assert sent_messages(llm)[0][0] == "system"  # still in `prompt` after the restart


async def test_memory_survives_restart(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    telegram.user_says(5, "remember 42")
    await telegram.wait_texts(5, 1)
    await bot.restart()
    telegram.user_says(5, "what number?")
    await telegram.wait_for(lambda: len(telegram.texts(5)) == 2)
    assert sent_messages(llm)[0] == ("user", "remember 42")


async def test_history_trimmed_to_budget_but_kept_whole(bot: BotRunner, telegram: FakeTelegram,
                                                        llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot", history_token_budget=300)
    for i in range(8):
        # distinct words: 60 copies of one word, echoed back, would be cut by the loop guard
        telegram.user_says(6, f"message {i} " + " ".join(f"word{j}" for j in range(60)))
        await telegram.wait_texts(6, i + 1)
    last = llm.requests[-1]["messages"]
    assert last[-1]["content"].startswith("message 7")
    assert last[0]["role"] == "user" and len(last) < 15  # trimmed, starting on a user turn
    history = await bot.app.services.chat.history(6)
    assert len(history) == 16  # nothing was deleted


async def test_long_reply_is_split_and_formatting_survives(bot: BotRunner, telegram: FakeTelegram,
                                                           llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    # numbered sentences: the same paragraph sixteen times over would be cut by the loop guard
    paragraphs = ["".join(f"**Bold** start, then words {p * 20 + j}. " for j in range(20)) for p in range(16)]
    llm.enqueue(Text("\n\n".join(paragraphs), chunk_size=500))
    telegram.user_says(7, "write a lot")
    await telegram.wait_for(lambda: "".join(telegram.texts(7)).count("Bold start") == 320)
    messages = telegram.messages(7)
    assert len(messages) == 3
    assert all(0 < len(m.text) <= 4096 for m in messages)
    assert "**" not in "".join(m.text for m in messages)
    assert any(e["type"] == "bold" for m in messages for e in m.entities)


async def test_hostile_formatting_is_delivered(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    hostile = "a < b && c > d, *unbalanced and _open <script>alert(1)</script> `tick"
    llm.enqueue(hostile)
    telegram.user_says(8, "be hostile")
    await telegram.wait_texts(8, 1)
    shown = telegram.texts(8)[0]
    assert "a < b && c > d" in shown and "<script>alert(1)</script>" in shown


async def test_rejected_formatting_falls_back_to_plain(bot: BotRunner, telegram: FakeTelegram,
                                                       llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot", use_message_drafts=False)
    llm.enqueue("**bold** answer")
    telegram.fail_entities_once = True
    telegram.user_says(9, "x")
    await telegram.wait_for(lambda: telegram.texts(9) == ["bold answer"])
    assert telegram.messages(9)[0].entities == []


async def test_streaming_uses_drafts_in_private_chats(bot: BotRunner, telegram: FakeTelegram,
                                                      llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    llm.enqueue(Text("one two three four five six", chunk_size=4, chunk_delay=0.08))
    telegram.user_says(12, "stream")
    await telegram.wait_texts(12, 1)
    assert telegram.texts(12) == ["one two three four five six"]
    assert len(telegram.drafts) >= 2 and all(d["chat_id"] == 12 for d in telegram.drafts)
    assert telegram.calls_of("sendChatAction")


async def test_a_quick_answer_comes_as_one_message_a_slow_one_streams(bot: BotRunner, telegram: FakeTelegram,
                                                                      llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot", stream_grace=0.5)
    llm.enqueue("instant answer")
    telegram.user_says(14, "quick")
    await telegram.wait_texts(14, 1)
    assert telegram.texts(14) == ["instant answer"]
    assert not telegram.calls_of("sendChatAction") and not telegram.drafts  # nothing flickered before it

    llm.enqueue(Text("slow and steady answer", chunk_size=5, chunk_delay=0.25))
    telegram.user_says(14, "slow")
    await telegram.wait_texts(14, 2)
    assert telegram.texts(14)[1] == "slow and steady answer"
    assert telegram.calls_of("sendChatAction") and telegram.drafts  # typing, then the answer growing


async def test_an_answer_that_streams_in_at_once_after_a_wait_comes_as_one_message(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot", stream_grace=0.3)
    llm.enqueue(Text("a quick stream after a long think", delay=0.6, chunk_size=4, chunk_delay=0.01))
    telegram.user_says(15, "think first")
    await telegram.wait_texts(15, 1)
    assert telegram.texts(15) == ["a quick stream after a long think"]
    assert telegram.calls_of("sendChatAction")  # the wait showed the typing indicator
    assert not telegram.drafts and telegram.messages(15)[0].edits == 0  # but no preview replaced at once


async def test_streaming_falls_back_to_edits(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    telegram.drafts_supported = False
    await bot.start(default_mode="zero-shot")
    llm.enqueue(Text("alpha beta gamma delta epsilon", chunk_size=3, chunk_delay=0.08))
    telegram.user_says(13, "stream")
    await telegram.wait_for(lambda: telegram.texts(13) == ["alpha beta gamma delta epsilon"])
    assert telegram.messages(13)[0].edits >= 1


async def test_concurrent_chats_are_not_delayed_by_a_slow_one(bot: BotRunner, telegram: FakeTelegram,
                                                             llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    gate = asyncio.Event()
    llm.enqueue(Text("slow answer", gate=gate))
    telegram.user_says(20, "slow please")
    await telegram.wait_for(lambda: len(llm.requests) == 1)
    telegram.user_says(21, "fast please")
    await telegram.wait_for(lambda: telegram.texts(21) == ["echo: fast please"])
    assert telegram.texts(20) == []  # the slow one is still waiting for its model
    gate.set()
    await telegram.wait_for(lambda: telegram.texts(20) == ["slow answer"])


async def test_messages_of_one_chat_answered_in_order(bot: BotRunner, telegram: FakeTelegram,
                                                      llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    llm.enqueue(Text("first", delay=0.5), Text("second"), Text("third"))
    for text in ("1", "2", "3"):
        telegram.user_says(22, text)
    await telegram.wait_for(lambda: len(telegram.texts(22)) == 3)
    assert telegram.texts(22) == ["first", "second", "third"]
    assert [r["messages"][-1]["content"] for r in llm.requests] == ["1", "2", "3"]


async def test_group_answers_only_when_addressed(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    telegram.user_says(-100, "people talking", user_id=31)
    telegram.user_says(-100, "/help", user_id=31)
    await telegram.wait_for(lambda: len(telegram.texts(-100)) == 1)
    assert "/mode" in telegram.texts(-100)[0] and not llm.requests
    telegram.user_says(-100, "@adapt_test_bot what time is it", user_id=31)
    await telegram.wait_for(lambda: "echo: what time is it" in telegram.texts(-100))
    bot_msg = telegram.messages(-100)[-1].message_id
    telegram.user_says(-100, "and tomorrow?", user_id=32, reply_to_bot=bot_msg)
    await telegram.wait_for(lambda: "echo: and tomorrow?" in telegram.texts(-100))
    assert len(llm.requests) == 2


async def test_allowlist_and_admin_commands(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="prompt", allowed_user_ids="40,41", admin_ids="41")
    telegram.user_says(39, "let me in")
    await telegram.wait_for(lambda: telegram.texts(39))
    assert "private" in telegram.texts(39)[0] and "39" in telegram.texts(39)[0] and not llm.requests
    telegram.user_says(40, "/prompt set You are a pirate.")
    await telegram.wait_for(lambda: telegram.texts(40))
    assert "admins only" in telegram.texts(40)[0]
    telegram.user_says(41, "/prompt set You are a pirate.")
    await telegram.wait_for(lambda: telegram.texts(41) == ["System prompt replaced."])
    telegram.user_says(40, "ahoy")
    await telegram.wait_for(lambda: len(telegram.texts(40)) == 2)
    assert llm.requests[-1]["messages"][0]["content"].startswith("You are a pirate.")
    telegram.user_says(41, "/prompt")
    await telegram.wait_for(lambda: len(telegram.texts(41)) == 2)
    assert "pirate" in telegram.texts(41)[1] and "admin" in telegram.texts(41)[1]
    telegram.user_says(41, "/prompt reset")
    await telegram.wait_for(lambda: len(telegram.texts(41)) == 3)
    telegram.user_says(40, "ahoy again")
    await telegram.wait_for(lambda: len(telegram.texts(40)) == 3)
    assert "adaptbot" in llm.requests[-1]["messages"][0]["content"]


async def test_russian_users_get_russian_texts(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start()
    telegram.user_says(50, "/reset", lang="ru")
    await telegram.wait_for(lambda: telegram.texts(50))
    assert "Память этого чата очищена" in telegram.texts(50)[0]
    commands = telegram.calls_of("setMyCommands")
    assert {c.get("language_code") for c in commands} >= {"ru"}


# --- groups: settings that act on everyone need an administrator ----------------------------------------------------

GROUP, ADMIN, MEMBER, BOT_ADMIN = -200, 50, 51, 900


async def _group_says(telegram: FakeTelegram, text: str, user_id: int, lang: str = "en") -> str:
    """What the bot answers to `text` in the group (the next new message there)."""
    before = len(telegram.messages(GROUP))
    telegram.user_says(GROUP, text, user_id=user_id, lang=lang)
    await telegram.wait_for(lambda: len(telegram.messages(GROUP)) > before)
    return telegram.texts(GROUP)[before]


async def test_group_settings_need_a_group_administrator(bot: BotRunner, telegram: FakeTelegram,
                                                         llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot", admin_ids=str(BOT_ADMIN), stream_grace=30)  # an answer comes whole
    telegram.chat_admins[GROUP] = {ADMIN}
    chat = bot.app.services.chat
    assert await _group_says(telegram, "@adapt_test_bot remember 7", MEMBER) == "echo: remember 7"

    for command, name in (("/reset", "reset"), ("/mode prompt", "mode"), ("/steps on", "steps")):
        refusal = await _group_says(telegram, command, MEMBER)
        assert f"only its administrators (or the bot's admins) may use /{name}" in refusal
    refusal = await _group_says(telegram, "/reset", 52, lang="ru")
    assert "только её администраторы" in refusal
    assert len(await chat.history(GROUP)) == 2  # the group's memory is intact
    assert await chat.get_mode(GROUP) == Mode("zero-shot", "cloud", False)

    menu = await _group_says(telegram, "/mode", MEMBER)  # looking is fine...
    assert "Choose a level and a model" in menu
    menu_id = telegram.messages(GROUP)[-1].message_id
    telegram.press_button(GROUP, menu_id, "mode:prompt", user_id=MEMBER)  # ...pressing is not
    await telegram.wait_for(lambda: telegram.calls_of("answerCallbackQuery"))
    alert = telegram.calls_of("answerCallbackQuery")[-1]
    assert "only its administrators" in alert["text"] and alert["show_alert"] is True
    assert await chat.get_mode(GROUP) == Mode("zero-shot", "cloud", False)

    assert await _group_says(telegram, "/mode prompt", ADMIN) == "Mode: prompt · cloud"
    assert await _group_says(telegram, "/steps on", BOT_ADMIN) == "Agent steps: on."  # ADMIN_IDS may, too
    assert await _group_says(telegram, "/reset", ADMIN) == "Memory of this chat cleared (2 messages)."
    assert await chat.get_mode(GROUP) == Mode("prompt", "cloud", True)
    asked = [c for c in telegram.calls_of("getChatMember") if c["user_id"] == ADMIN]
    assert len(asked) == 1  # the answer is remembered for a while

    telegram.user_says(MEMBER, "/reset", user_id=MEMBER)  # a private chat belongs to its user
    await telegram.wait_for(lambda: telegram.texts(MEMBER))
    assert telegram.texts(MEMBER) == ["Memory of this chat cleared (0 messages)."]
    assert await _group_says(telegram, "/prompt set You are a pirate.", ADMIN) == \
        "Sorry, this command is for the bot's admins only."  # a bot-wide setting: group admins are not enough


async def test_group_admin_check_failure_refuses_with_try_again(bot: BotRunner, telegram: FakeTelegram,
                                                               llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot", stream_grace=30)  # an answer comes whole
    telegram.chat_admins[GROUP] = {ADMIN}
    assert await _group_says(telegram, "@adapt_test_bot remember 7", ADMIN) == "echo: remember 7"
    telegram.faults = FaultPlan(methods={"getChatMember"}, rate_5xx=1.0)
    refusal = await _group_says(telegram, "/reset", ADMIN)
    assert "could not check with Telegram" in refusal and "try again" in refusal
    assert len(await bot.app.services.chat.history(GROUP)) == 2  # not allowed on a failed check
    telegram.faults = None
    assert await _group_says(telegram, "/reset", ADMIN) == "Memory of this chat cleared (2 messages)."


async def _ask_slowly(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, user_id: int) -> asyncio.Event:
    """`user_id` asks in the group; the answer is held until the returned gate opens (or someone stops it)."""
    gate = asyncio.Event()
    llm.enqueue(Text("a long answer", gate=gate))
    asked = len(llm.requests)
    telegram.user_says(GROUP, "@adapt_test_bot tell me a story", user_id=user_id)
    # the model has the question (and took this gated reply): a /stop that came before, when the chat was merely
    # busy, would leave the reply in the script for the next question, whose answer would not wait for its gate
    await llm.wait_for_requests(asked + 1)
    assert bot.app.services.chat.is_busy(GROUP)
    return gate


async def test_group_stop_stops_only_your_own_answer(bot: BotRunner, telegram: FakeTelegram,
                                                    llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    telegram.chat_admins[GROUP] = {ADMIN}
    asker = 60
    gate = await _ask_slowly(bot, telegram, llm, asker)
    refusal = await _group_says(telegram, "/stop", MEMBER)
    assert refusal == "Sorry, only the person who asked, or a group administrator, may stop this answer."
    assert bot.app.services.chat.is_busy(GROUP)  # the answer goes on
    assert await _group_says(telegram, "/stop", asker) == "⏹ Stopped."
    gate.set()

    gate = await _ask_slowly(bot, telegram, llm, asker)
    await asyncio.sleep(0.5)  # TEMP: the test is slow on a loaded machine
    assert await _group_says(telegram, "/stop", ADMIN) == "⏹ Stopped."  # an administrator may stop anyone's
    gate.set()


async def test_group_admin_answers_are_remembered_briefly_and_boundedly(telegram: FakeTelegram) -> None:
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import Chat, User

    from bot.permissions import GroupAdmins

    bot = Bot(telegram.token, session=AiohttpSession(api=TelegramAPIServer.from_base(telegram.base_url)))
    group = Chat(id=GROUP, type="supergroup")
    users = [User(id=uid, is_bot=False, first_name=f"U{uid}") for uid in (1, 2, 3)]
    telegram.chat_admins[GROUP] = {1}
    try:
        admins = GroupAdmins([], max_size=2)
        assert [await admins.is_admin(bot, group, u) for u in users] == [True, False, False]
        assert await admins.is_admin(bot, group, users[2]) is False
        assert len(telegram.calls_of("getChatMember")) == 3  # remembered...
        assert await admins.is_admin(bot, group, users[0]) is True
        assert len(telegram.calls_of("getChatMember")) == 4  # ...but only the two most recent answers

        admins = GroupAdmins([], ttl=0)  # every answer expired at once: a demotion is seen on the next check
        assert await admins.is_admin(bot, group, users[0]) is True
        telegram.chat_admins[GROUP] = set()
        assert await admins.is_admin(bot, group, users[0]) is False
    finally:
        await bot.session.close()
