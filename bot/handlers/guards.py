"""/retry (everyone), /lang ru|en|auto (group admins in groups), /guards (bot admins): thin over ChatService."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message, Update

from bot.config import Settings
from bot.handlers.admin import IsAdmin
from bot.handlers.chat import answer
from bot.handlers.errors import user_message
from bot.i18n import t
from bot.permissions import GroupAdmins, may_manage
from bot.service import ChatGuards, ChatService, ServiceError


def guards_text(state: ChatGuards, counts: list[tuple[str, str, str, int]], lang: str) -> str:
    """The /guards reply: this chat's switches and language, and the guard events counted per mode."""
    rows = "\n".join(f"{level} · {model}: {event} × {n}" for level, model, event, n in counts)
    return t("guards_state", lang, loops=t("on" if state.loops else "off", lang),
             language=t("on" if state.language else "off", lang), numbers=t("on" if state.numbers else "off", lang),
             chat_lang=state.lang or t("lang_auto", lang), counts=t("guards_counts", lang, rows=rows) if rows else "")


async def retry(message: Message, bot: Bot, chat_service: ChatService, settings: Settings, lang: str,
                event_update: Update) -> None:
    question = await chat_service.last_question(message.chat.id)
    if question is None:
        await message.answer(t("retry_nothing", lang))
        return
    await answer(message, bot, chat_service, settings, lang, event_update.update_id, question.text, retry=question)


async def lang_cmd(message: Message, command: CommandObject, chat_service: ChatService, lang: str, bot: Bot,
                   group_admins: GroupAdmins) -> None:
    arg = (command.args or "").strip()
    if not arg:
        state = await chat_service.guards(message.chat.id)
        await message.answer(t("lang_state", lang, chat_lang=state.lang or t("lang_auto", lang)))
        return
    if not await may_manage(message, bot, group_admins, lang, "lang"):
        return
    try:
        state = await chat_service.set_lang(message.chat.id, arg)
    except ServiceError as exc:
        await message.answer(user_message(exc, lang) or str(exc))
        return
    await message.answer(t("lang_state", lang, chat_lang=state.lang or t("lang_auto", lang)))


async def guards_cmd(message: Message, command: CommandObject, chat_service: ChatService, lang: str) -> None:
    name, _, value = (command.args or "").strip().partition(" ")
    if name and value.strip().lower() in ("on", "off"):
        try:
            await chat_service.set_guard(message.chat.id, name, value.strip().lower() == "on")
        except ServiceError as exc:
            await message.answer(user_message(exc, lang) or str(exc))
            return
        await message.answer(t("guard_set", lang, name=name.lower(), state=t(value.strip().lower(), lang)))
        return
    state = await chat_service.guards(message.chat.id)
    await message.answer(guards_text(state, await chat_service.guard_counts(), lang))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(retry, Command("retry"))
    router.message.register(lang_cmd, Command("lang"))
    router.message.register(guards_cmd, Command("guards"), IsAdmin())
    return router
