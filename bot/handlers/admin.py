"""Admin commands: /prompt (show, set, reset). Non-admins get a polite refusal."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import Message

from bot.i18n import t
from bot.service import ChatService

ADMIN_COMMANDS = ("prompt", "kb", "kb_del", "kb_search", "kb_add", "eval", "guards")


class IsAdmin(Filter):
    async def __call__(self, event: object, is_admin: bool = False) -> bool:
        return is_admin


async def prompt(message: Message, command: CommandObject, chat_service: ChatService, lang: str) -> None:
    args = (command.args or "").strip()
    if not args:
        text, custom = await chat_service.system_prompt()
        origin = t("prompt_custom" if custom else "prompt_default", lang)
        await message.answer(t("prompt_show", lang, origin=origin, text=text))
        return
    action, _, rest = args.partition(" ")
    if action == "set" and rest.strip():
        await chat_service.set_system_prompt(rest)
        await message.answer(t("prompt_set", lang))
    elif action == "reset":
        await chat_service.set_system_prompt(None)
        await message.answer(t("prompt_reset", lang))
    else:
        await message.answer(t("prompt_usage", lang))


async def refuse(message: Message, lang: str) -> None:
    await message.answer(t("admin_only", lang))


def create_router() -> Router:
    """Admin commands; the router-level filter lets only admins in."""
    router = Router(name=__name__)
    router.message.filter(IsAdmin())
    router.message.register(prompt, Command("prompt"))
    return router


def create_refusals() -> Router:
    """What non-admins get for admin commands and uploads: a polite refusal, nothing stored."""
    router = Router(name=f"{__name__}.refusals")
    router.message.register(refuse, Command(*ADMIN_COMMANDS))
    router.message.register(refuse, F.document, F.chat.type == "private")
    return router
