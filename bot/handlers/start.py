"""/start and /help."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from bot.config import Settings
from bot.i18n import t
from bot.service import ChatService


def mode_label(level: str, model: str) -> str:
    return f"{level} · {model}"


async def start(message: Message, chat_service: ChatService, lang: str) -> None:
    mode = await chat_service.get_mode(message.chat.id)
    await message.answer(t("start", lang, mode=mode_label(mode.level, mode.model)))


async def help_(message: Message, chat_service: ChatService, settings: Settings, lang: str, is_admin: bool) -> None:
    mode = await chat_service.get_mode(message.chat.id)
    extra = "" if settings.search_provider else t("help_search_off", lang)
    if is_admin:
        extra += t("help_admin", lang)
    await message.answer(t("help", lang, mode=mode_label(mode.level, mode.model), extra=extra))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(start, CommandStart())
    router.message.register(help_, Command("help"))
    return router
