"""`adaptbot chat`: the same chat service in a terminal (same memory, /mode, /reset), no Telegram."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from agents.errors import UnknownNameError
from agents.types import GuardAction, Queued, Sources, TextDelta, Thought, ToolStep
from bot.app import Services
from bot.handlers.errors import user_message
from bot.handlers.guards import guards_text
from bot.i18n import t
from bot.service import Question, ServiceError

HELP = """Commands: /mode [level|model ...], /reset, /retry, /lang ru|en|auto, /guards [loops|language|numbers on|off],
/steps on|off, /prompt, /help, /quit
Anything else is sent to the model."""


async def run_terminal(services: Services, chat_id: int, lang: str = "en", stdin: TextIO | None = None,
                       stdout: TextIO | None = None) -> int:
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    chat = services.chat

    def out(text: str = "", end: str = "\n") -> None:
        stdout.write(text + end)
        stdout.flush()

    mode = await chat.get_mode(chat_id)
    out(f"adaptbot — chat {chat_id}, mode {mode.level} · {mode.model}. /help for commands, /quit to leave.")
    while True:
        stdout.write("> ")
        stdout.flush()
        line = await asyncio.to_thread(stdin.readline)  # never block the event loop on input
        if not line:
            out()
            return 0
        text = line.strip()
        if not text:
            continue
        command, _, args = text.partition(" ")
        if command in ("/quit", "/exit"):
            return 0
        if command == "/help":
            out(HELP)
        elif command == "/reset":
            out(t("reset_done", lang, n=await chat.reset(chat_id)))
        elif command == "/mode":
            if not args.strip():
                mode = await chat.get_mode(chat_id)
                out(f"mode: {mode.level} · {mode.model}")
                for name, level in chat.brain.levels.all().items():
                    out(f"  {'*' if name == mode.level else ' '} {name:10} {level.description.get(lang, '')}")
                for name, backend in chat.brain.models.all().items():
                    out(f"  {'*' if name == mode.model else ' '} {name:10} {backend.description.get(lang, '')}")
                continue
            try:
                mode = await chat.set_mode(chat_id, args.split())
                out(t("mode_set", lang, mode=f"{mode.level} · {mode.model}"))
            except UnknownNameError as exc:
                out(t("mode_unknown", lang, name=exc.name, levels=", ".join(chat.brain.levels.names()),
                      models=", ".join(chat.brain.models.names())))
        elif command == "/steps":
            await chat.set_steps(chat_id, args.strip().lower() == "on")
            out(t("steps_set", lang, state=t("on" if args.strip().lower() == "on" else "off", lang)))
        elif command == "/retry":
            question = await chat.last_question(chat_id)
            if question is None:
                out(t("retry_nothing", lang))
            else:
                await _answer(services, chat_id, question.text, lang, out, retry=question)
        elif command in ("/lang", "/guards"):
            name, _, value = args.strip().partition(" ")
            try:
                if command == "/lang" and name:
                    await chat.set_lang(chat_id, name)
                elif command == "/guards" and value.strip().lower() in ("on", "off"):
                    await chat.set_guard(chat_id, name, value.strip().lower() == "on")
            except ServiceError as exc:
                out(user_message(exc, lang) or str(exc))
                continue
            out(guards_text(await chat.guards(chat_id), await chat.guard_counts(), lang))
        elif command == "/prompt":
            prompt, _ = await chat.system_prompt()
            out(prompt)
        else:
            await _answer(services, chat_id, text, lang, out)


async def _answer(services: Services, chat_id: int, text: str, lang: str, out: object,
                  retry: Question | None = None) -> None:
    write = out  # type: ignore[assignment]
    mode = await services.chat.get_mode(chat_id)
    try:
        async for event in services.chat.reply(chat_id, text, lang=lang, retry=retry):
            if isinstance(event, TextDelta):
                write(event.text, end="")  # type: ignore[operator]
            elif isinstance(event, ToolStep) and mode.show_steps:
                write(f"[{event.tool}({event.input}) -> {event.output[:200]}]")  # type: ignore[operator]
            elif isinstance(event, Thought) and mode.show_steps:
                write(f"[{event.text[:200]}]")  # type: ignore[operator]
            elif isinstance(event, GuardAction):
                # printed text cannot be taken back: the guard's verdict follows it
                if event.action == "cut":
                    write("\n" + t("guard_loop", lang))  # type: ignore[operator]
                elif event.action == "restart":
                    write("\n---")  # type: ignore[operator]
                elif event.action == "kept":
                    write("\n" + t("guard_language", lang))  # type: ignore[operator]
                else:
                    write("\n" + t("guard_numbers", lang, numbers=", ".join(event.numbers)))  # type: ignore[operator]
            elif isinstance(event, Queued):
                write(t("queued", lang, ahead=event.ahead))  # type: ignore[operator]
            elif isinstance(event, Sources):
                write("\n" + t("sources", lang))  # type: ignore[operator]
                for s in event.items:
                    page = f", p. {s.page}" if s.page else ""
                    write(f"[{s.index}] {s.name}{page}")  # type: ignore[operator]
        write()  # type: ignore[operator]
    except Exception as exc:  # expected failures are shown; bugs re-raised
        message = user_message(exc, lang)
        if message is None:
            raise
        write(f"\n{message}")  # type: ignore[operator]
