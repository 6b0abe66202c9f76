"""Every command through both adapters: one table of (command, role, arguments) -> expected reply, run against the
real Telegram adapter (the aiogram bot over HTTP against the fake Telegram) and the terminal adapter."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.conftest import BotRunner, make_settings
from tests.fakes.openai_server import ScriptedOpenAI
from tests.fakes.telegram_server import FakeTelegram

USER, ADMIN = "user", "admin"


class Row(NamedTuple):
    id: str
    line: str  # the command and its arguments, as typed
    role: str
    expected: str  # a part of the reply
    choice: str | None = None  # a choice (button) the reply offers


ROWS = [
    Row("start", "/start", USER, "Current mode: zero-shot · cloud. Change it with /mode"),
    Row("help-user", "/help", USER, "/steps on|off — Show agent steps (on/off)"),
    Row("help-admin", "/help", ADMIN, "/kb_search <query> — Search the knowledge base"),
    Row("mode-menu", "/mode", USER, "Current mode: zero-shot · cloud\nChoose a level and a model:", "✅ zero-shot"),
    Row("mode-set", "/mode prompt", USER, "Mode: prompt · cloud"),
    Row("mode-unknown", "/mode nonsense", USER, "Unknown name “nonsense”. Levels: zero-shot, prompt"),
    Row("reset", "/reset", USER, "Memory of this chat cleared (0 messages)."),
    Row("stop-idle", "/stop", USER, "Nothing to stop."),
    Row("steps-usage", "/steps", USER, "Usage: /steps on or /steps off (now: off)."),
    Row("steps-bad-arg", "/steps foo", USER, "Usage: /steps on or /steps off (now: off)."),
    Row("steps-on", "/steps on", USER, "Agent steps: on."),
    Row("retry-nothing", "/retry", USER, "Nothing to retry: ask a question first."),
    Row("lang-show", "/lang", USER, "Answer language: auto (the language you write in)."),
    Row("lang-set", "/lang ru", USER, "Answer language: ru."),
    Row("lang-bad", "/lang xx", USER, "Usage: /lang ru, /lang en or /lang auto."),
    Row("compare-menu", "/compare", USER, "Side by side: off.\nPick mode A:", "prompt · cloud"),
    Row("compare-set", "/compare prompt | rag", USER, "Side by side: prompt · cloud vs rag · cloud."),
    Row("compare-same", "/compare prompt | prompt", USER, "Pick two different modes to compare."),
    Row("compare-usage", "/compare prompt", USER, "Usage: /compare <mode A> | <mode B>"),
    Row("compare-unknown", "/compare prompt | nonsense", USER, "Unknown name “nonsense”."),
    Row("compare-off", "/compare off", USER, "Side by side is off: one answer per question again."),
    Row("leaderboard-empty", "/leaderboard", USER, "No votes yet in season 1."),
    Row("leaderboard-reset-refused", "/leaderboard reset", USER, "Sorry, this command is for the bot's admins only."),
    Row("leaderboard-reset", "/leaderboard reset", ADMIN, "New leaderboard season 2 started; earlier votes are kept."),
    Row("guards-refused", "/guards", USER, "Sorry, this command is for the bot's admins only."),
    Row("guards-show", "/guards", ADMIN, "Guards in this chat: loops on, language on, numbers on"),
    Row("guards-off", "/guards loops off", ADMIN, "Guard loops: off."),
    Row("guards-unknown", "/guards colour on", ADMIN, "Unknown guard “colour”."),
    Row("usage-self", "/usage", USER, "Today: 0 messages, 0 tokens."),
    Row("usage-all", "/usage", ADMIN, "No usage today."),
    Row("prompt-refused", "/prompt", USER, "Sorry, this command is for the bot's admins only."),
    Row("prompt-show", "/prompt", ADMIN, "System prompt (default):"),
    Row("prompt-usage", "/prompt bogus", ADMIN, "Usage: /prompt, /prompt set <text>, /prompt reset"),
    Row("kb-refused", "/kb", USER, "Sorry, this command is for the bot's admins only."),
    Row("kb-del-usage", "/kb_del", ADMIN, "Usage: /kb_del <id> (see /kb)"),
    Row("kb-search-usage", "/kb_search", ADMIN, "Usage: /kb_search <query>"),
    Row("kb-add-usage", "/kb_add", ADMIN, "Send a file with the caption /kb_add"),
    Row("kb-cancel-idle", "/kb_cancel", ADMIN, "No upload in progress here."),
    Row("eval-refused", "/eval", USER, "Sorry, this command is for the bot's admins only."),
    Row("eval-usage", "/eval", ADMIN, "Send a cases file (JSONL or CSV) with the caption /eval"),
    Row("eval-stop-idle", "/eval stop", ADMIN, "No evaluation is running."),
    Row("fix-usage", "/fix", USER, "/fix <better answer>"),
    Row("feedback-refused", "/feedback", USER, "Sorry, this command is for the bot's admins only."),
    Row("feedback-none", "/feedback", ADMIN, "Last 7 days:\nno feedback\n\nLast 30 days:\nno feedback"),
    Row("export-refused", "/export sft", USER, "Sorry, this command is for the bot's admins only."),
    Row("export-usage", "/export", ADMIN, "Usage: /export sft|dpo|kto [--since"),
    Row("export-empty", "/export dpo", ADMIN, "Nothing to export as dpo: no stored votes or feedback match."),
]
FIRST_CHAT = 1000
ADMIN_CHATS = [FIRST_CHAT + i for i, row in enumerate(ROWS) if row.role == ADMIN]

Say = Callable[[int, str, bool], Awaitable[str]]  # (chat, line, admin) -> what the user sees


@pytest.fixture(params=["telegram", "terminal"])
async def say(request: pytest.FixtureRequest, tmp_path: Path, llm: ScriptedOpenAI, telegram: FakeTelegram,
              bot: BotRunner) -> AsyncIterator[Say]:
    """One adapter: each row gets its own private chat (its user is a bot admin for ADMIN rows)."""
    if request.param == "telegram":
        await bot.start(default_mode="zero-shot", admin_ids=",".join(map(str, ADMIN_CHATS)))

        async def say_telegram(chat: int, line: str, admin: bool) -> str:
            before = len(telegram.messages(chat))
            telegram.user_says(chat, line, user_id=chat)
            await telegram.wait_for(lambda: len(telegram.messages(chat)) > before)
            message = telegram.messages(chat)[before]
            labels = [b["text"] for row in (message.reply_markup or {}).get("inline_keyboard", []) for b in row]
            return "\n".join([message.text, *labels])

        yield say_telegram
        return
    from bot.app import create_services
    from bot.terminal import run_terminal

    services = await create_services(make_settings(tmp_path, None, llm, default_mode="zero-shot"))

    async def say_terminal(chat: int, line: str, admin: bool) -> str:
        out = io.StringIO()
        assert await run_terminal(services, chat, "en", stdout=out, admin=admin, once=line) == 0
        return out.getvalue()

    try:
        yield say_terminal
    finally:
        await services.aclose()


async def test_every_command_answers_alike_in_telegram_and_the_terminal(say: Say) -> None:
    wrong = []
    for i, row in enumerate(ROWS):
        seen = await say(FIRST_CHAT + i, row.line, row.role == ADMIN)
        if row.expected not in seen or (row.choice is not None and row.choice not in seen):
            wrong.append(f"{row.id}: {seen!r}")
    assert not wrong, "\n".join(wrong)


def test_every_command_has_help_in_both_languages_and_a_table_row() -> None:
    from bot.commands import build_registry

    registry = build_registry()
    for command in registry.all():
        assert command.help("en") and command.help("ru") != command.help("en"), command.name
    assert {row.line.split()[0][1:] for row in ROWS} == set(registry.names())


async def test_menu_and_help_come_from_the_registry(bot: BotRunner, telegram: FakeTelegram) -> None:
    await bot.start(admin_ids="77")
    menus = {c.get("language_code"): [x["command"] for x in json.loads(c["commands"])]
             if isinstance(c["commands"], str) else [x["command"] for x in c["commands"]]
             for c in telegram.calls_of("setMyCommands")}
    assert menus[None] == menus["ru"] == ["start", "help", "mode", "reset", "stop", "steps", "usage", "retry", "lang",
                                       "compare", "leaderboard"]
    telegram.user_says(5, "/help", lang="ru")
    await telegram.wait_for(lambda: telegram.texts(5))
    assert "/reset — Забыть историю чата" in telegram.texts(5)[0] and "/prompt" not in telegram.texts(5)[0]
    assert "память хранит победителя (ничья или без голоса: A)" in telegram.texts(5)[0]


async def test_choosing_from_the_mode_menu_in_both_adapters(bot: BotRunner, telegram: FakeTelegram,
                                                            tmp_path: Path, llm: ScriptedOpenAI) -> None:
    from bot.app import create_services
    from bot.service import Mode
    from bot.terminal import Terminal

    await bot.start(default_mode="zero-shot")
    telegram.user_says(4, "/mode")
    await telegram.wait_for(lambda: telegram.messages(4))
    menu = telegram.messages(4)[0]
    button = next(b for row in menu.reply_markup["inline_keyboard"] for b in row if b["text"] == "prompt")
    telegram.press_button(4, menu.message_id, button["callback_data"])
    await telegram.wait_for(lambda: "✅ prompt" in str(telegram.find(4, menu.message_id).reply_markup))
    assert await bot.app.services.chat.get_mode(4) == Mode("prompt", "cloud", False)
    await bot.stop()

    services = await create_services(make_settings(tmp_path, None, llm))  # the same data directory
    try:
        out = io.StringIO()
        terminal = Terminal(services, 4, "en", out)
        await terminal.handle("/mode")
        number = 1 + [c.args for c in terminal.outbox.choices].index("zero-shot")
        assert f"  {number}. zero-shot" in out.getvalue() and "✅ prompt" in out.getvalue()
        await terminal.handle(str(number))
        assert "Mode: zero-shot · cloud" in out.getvalue()
        assert await services.chat.get_mode(4) == Mode("zero-shot", "cloud", False)
        await terminal.handle("99")
        assert out.getvalue().rstrip().endswith("No choice 99 here.")
    finally:
        await services.aclose()


async def test_terminal_eval_prints_progress_table_and_writes_the_chart_and_reports(
        tmp_path: Path, llm: ScriptedOpenAI) -> None:
    """The replies with files, pictures and follow-ups, in the terminal: paths under DATA_DIR/out/."""
    from bot.app import create_services
    from bot.terminal import run_terminal
    from tests.test_eval import CASES, level_aware_model

    llm.default = level_aware_model
    cases = tmp_path / "my cases.jsonl"
    cases.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in CASES[:2]), encoding="utf-8")
    services = await create_services(make_settings(tmp_path, None, llm))
    try:
        out = io.StringIO()
        line = f'/eval @"{cases}" --mode "zero-shot cloud" --repeats 1 --judge none'
        assert await run_terminal(services, 1, "en", stdout=out, once=line) == 0
    finally:
        await services.aclose()
    printed = out.getvalue()
    assert printed.startswith("⏳ Evaluating: 0/2 runs\n") and "\n✅ Evaluation finished: 2 runs.\n" in printed
    assert "zero-shot cloud" in printed and "acc" in printed  # the table
    out_dir = tmp_path / "data" / "out"
    for name in ("chart.png", "report.md", "report.json"):
        assert f"File: {out_dir / name}" in printed
    assert (out_dir / "chart.png").read_bytes()[:4] == b"\x89PNG"
    assert len(json.loads((out_dir / "report.json").read_text())["runs"]) == 2
