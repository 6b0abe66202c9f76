"""/mode (keyboard and text), /reset, /stop, /steps, /usage."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from agents.errors import ModelUnavailableError, UnknownNameError
from agents.runtime import Brain
from bot.handlers.start import mode_label
from bot.i18n import t
from bot.permissions import GroupAdmins, is_group, may_manage
from bot.service import ChatService, Mode

PREFIX = "mode:"


def mode_menu(brain: Brain, mode: Mode, lang: str) -> tuple[str, InlineKeyboardMarkup]:
    """The /mode message: a description line per level and model, buttons with the current ones marked."""
    lines = [t("mode_menu", lang, mode=mode_label(mode.level, mode.model)), ""]
    rows: list[list[InlineKeyboardButton]] = []
    for _kind, items, current in (("level", brain.levels.all(), mode.level), ("model", brain.models.all(), mode.model)):
        row: list[InlineKeyboardButton] = []
        for name, item in items.items():
            reason = item.unavailable_reason() if _kind == "model" else None
            mark = "✅ " if name == current else "🚫 " if reason else ""
            desc = item.description.get(lang) or item.description.get("en", "")
            if reason:
                desc = f"{desc} ({t('mode_unavailable', lang, reason=reason)})"
            lines.append(f"{'•' if name == current else '◦'} {name} — {desc}")
            row.append(InlineKeyboardButton(text=f"{mark}{name}", callback_data=f"{PREFIX}{name}"[:64]))
        for i in range(0, len(row), 3):
            rows.append(row[i:i + 3])
        lines.append("")
    return "\n".join(lines).strip(), InlineKeyboardMarkup(inline_keyboard=rows)


def unknown_text(exc: UnknownNameError, brain: Brain, lang: str) -> str:
    return t("mode_unknown", lang, name=exc.name, levels=", ".join(brain.levels.names()),
             models=", ".join(brain.models.names()))


async def mode_cmd(message: Message, command: CommandObject, chat_service: ChatService, lang: str, bot: Bot,
                   group_admins: GroupAdmins) -> None:
    brain = chat_service.brain
    if not command.args:
        text, keyboard = mode_menu(brain, await chat_service.get_mode(message.chat.id), lang)
        await message.answer(text, reply_markup=keyboard)
        return
    if not await may_manage(message, bot, group_admins, lang, "mode"):
        return
    try:
        mode = await chat_service.set_mode(message.chat.id, command.args.split())
    except UnknownNameError as exc:
        await message.answer(unknown_text(exc, brain, lang))
        return
    except ModelUnavailableError as exc:
        await message.answer(t("err_unavailable", lang, reason=str(exc)))
        return
    await message.answer(t("mode_set", lang, mode=mode_label(mode.level, mode.model)))


async def mode_button(query: CallbackQuery, chat_service: ChatService, lang: str, bot: Bot,
                      group_admins: GroupAdmins) -> None:
    if query.message is None or query.data is None:
        await query.answer()
        return
    if not await may_manage(query, bot, group_admins, lang, "mode"):
        return
    brain = chat_service.brain
    try:
        mode = await chat_service.set_mode(query.message.chat.id, [query.data.removeprefix(PREFIX)])
    except UnknownNameError as exc:  # a stale keyboard (a fine-tune was removed)
        await query.answer(unknown_text(exc, brain, lang), show_alert=True)
        return
    except ModelUnavailableError as exc:
        await query.answer(t("err_unavailable", lang, reason=str(exc)), show_alert=True)
        return
    text, keyboard = mode_menu(brain, mode, lang)
    if isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=keyboard)
    await query.answer(t("mode_set", lang, mode=mode_label(mode.level, mode.model)))


async def reset(message: Message, chat_service: ChatService, lang: str, bot: Bot,
                group_admins: GroupAdmins) -> None:
    if not await may_manage(message, bot, group_admins, lang, "reset"):
        return
    n = await chat_service.reset(message.chat.id)
    await message.answer(t("reset_done", lang, n=n))


async def stop(message: Message, chat_service: ChatService, lang: str, bot: Bot, group_admins: GroupAdmins) -> None:
    chat_id, user = message.chat.id, message.from_user
    asker = chat_service.asker(chat_id)
    if is_group(message.chat) and chat_service.is_busy(chat_id) and user is not None and asker != user.id:
        # someone else's answer: only an administrator may stop it
        if not await may_manage(message, bot, group_admins, lang, "stop", "stop_not_yours"):
            return
    if not chat_service.stop(chat_id):
        await message.answer(t("nothing_to_stop", lang))
    # when something was stopped, the stopped answer itself ends with the notice


async def steps(message: Message, command: CommandObject, chat_service: ChatService, lang: str, bot: Bot,
                group_admins: GroupAdmins) -> None:
    arg = (command.args or "").strip().lower()
    if arg not in ("on", "off"):
        mode = await chat_service.get_mode(message.chat.id)
        await message.answer(t("steps_usage", lang, state=t("on" if mode.show_steps else "off", lang)))
        return
    if not await may_manage(message, bot, group_admins, lang, "steps"):
        return
    await chat_service.set_steps(message.chat.id, arg == "on")
    await message.answer(t("steps_set", lang, state=t(arg, lang)))


async def usage(message: Message, chat_service: ChatService, lang: str, is_admin: bool) -> None:
    assert message.from_user is not None
    if is_admin:
        rows = await chat_service.usage(None)
        if not rows:
            await message.answer(t("usage_none", lang))
            return
        body = "\n".join(f"{uid}: {msgs} / {tokens}" for uid, msgs, tokens in rows)
        await message.answer(t("usage_all", lang, rows=body))
        return
    (_, msgs, tokens), = await chat_service.usage(message.from_user.id)
    quota = f" / {chat_service.daily_token_quota}" if chat_service.daily_token_quota else ""
    await message.answer(t("usage_self", lang, messages=msgs, tokens=tokens, quota=quota))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(mode_cmd, Command("mode"))
    router.callback_query.register(mode_button, F.data.startswith(PREFIX))
    router.message.register(reset, Command("reset"))
    router.message.register(stop, Command("stop"))
    router.message.register(steps, Command("steps"))
    router.message.register(usage, Command("usage"))
    return router
