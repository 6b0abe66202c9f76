"""The Telegram side of feedback on answers: the 👍/👎 buttons (👎 then offers reasons) and message reactions.

Callback data is `fb:<update id>:<code>` (at most 30 bytes, well under Telegram's 64): the update whose stored
answer is rated; u = 👍, d = 👎, a reason letter = 👎 with that reason. A second press replaces the first.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiogram import F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, MessageReactionUpdated

from bot.feedback import FeedbackStore
from bot.i18n import t
from bot.storage.repo import BIGINT_MAX, parse_id

if TYPE_CHECKING:
    from bot.app import Services

log = logging.getLogger(__name__)
PREFIX = "fb"
REASON_CODES = {"f": "wrong_facts", "l": "wrong_language", "i": "ignored_instructions", "t": "too_long",
                "o": "other"}


def feedback_markup(update_id: int) -> InlineKeyboardMarkup:
    """The two small buttons under a final answer."""
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text="👍", callback_data=f"{PREFIX}:{update_id}:u"),
        InlineKeyboardButton(text="👎", callback_data=f"{PREFIX}:{update_id}:d")]])


def reasons_markup(update_id: int, lang: str) -> InlineKeyboardMarkup:
    """After 👎: the optional reasons (a press records the reason), with 👍 to change one's mind."""
    buttons = [InlineKeyboardButton(text=t(f"fb_reason_{reason}", lang), callback_data=f"{PREFIX}:{update_id}:{code}")
               for code, reason in REASON_CODES.items()]
    up = InlineKeyboardButton(text="👍", callback_data=f"{PREFIX}:{update_id}:u")
    return InlineKeyboardMarkup(inline_keyboard=[buttons[:2], buttons[2:4], [buttons[4], up]])


def _parse(data: str) -> tuple[int, str] | None:
    _, _, rest = data.partition(":")
    update_id, _, code = rest.partition(":")
    parsed = parse_id(update_id, BIGINT_MAX)  # a forged id a column cannot hold would fail the query
    if parsed is None or (code not in ("u", "d") and code not in REASON_CODES):
        return None
    return parsed, code


async def _system_prompt(services: Services) -> str:
    text, _ = await services.chat.system_prompt()
    return text


async def on_button(query: CallbackQuery, services: Services, lang: str) -> None:
    """👍, 👎 or a reason pressed under an answer: record it for the presser, then show what comes next."""
    parsed = _parse(query.data or "")
    message = query.message
    if parsed is None or not isinstance(message, Message):
        await query.answer()
        return
    update_id, code = parsed
    rating, reason = ("up", None) if code == "u" else ("down", REASON_CODES.get(code))
    stored = await FeedbackStore(services.db).rate(message.chat.id, update_id, query.from_user.id, rating, reason,
                                                   system_prompt=await _system_prompt(services))
    if not stored:
        await query.answer(t("fb_gone", lang), show_alert=True)
        return
    if code == "d":  # ask for a reason; the 👎 is already kept without one
        markup, notice = reasons_markup(update_id, lang), t("fb_down", lang)
    else:
        markup = feedback_markup(update_id)
        notice = t("fb_up", lang) if code == "u" else t("fb_reason", lang, reason=t(f"fb_reason_{reason}", lang))
    if message.reply_markup != markup:
        try:
            await message.edit_reply_markup(reply_markup=markup)
        except TelegramAPIError as exc:  # the verdict is stored; only the keyboard stays as it was
            log.info("could not change the feedback buttons in chat %s: %s", message.chat.id, exc)
    await query.answer(notice)


async def on_reaction(event: MessageReactionUpdated, services: Services) -> None:
    """Reactions on a bot answer count as 👍/👎 (other emoji: no verdict); taking one back removes it."""
    if event.user is None:  # an anonymous group admin: nobody to count
        return
    emoji = [r.emoji for r in event.new_reaction if getattr(r, "type", None) == "emoji"]
    await FeedbackStore(services.db).react(event.chat.id, event.message_id, event.user.id, emoji,
                                           system_prompt=await _system_prompt(services))


def create_router() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(on_button, F.data.startswith(f"{PREFIX}:"))
    router.message_reaction.register(on_reaction)
    return router
