"""Per-update context: the user's language, admin status, and the allowlist gate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot.i18n import lang_of, t


class AccessMiddleware(BaseMiddleware):
    """Sets `lang` and `is_admin`; users outside ALLOWED_USER_IDS get a polite refusal and nothing else."""

    def __init__(self, admin_ids: list[int], allowed_user_ids: list[int]) -> None:
        self.admins = set(admin_ids)
        self.allowed = set(allowed_user_ids)

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        # a reaction names its user `user`; messages and button presses `from_user`
        user = getattr(event, "from_user", None) or getattr(event, "user", None)
        if user is None:
            return None  # channel posts and anonymous admins: nobody to answer
        data["lang"] = lang_of(user.language_code)
        data["is_admin"] = user.id in self.admins
        if self.allowed and user.id not in self.allowed and user.id not in self.admins:
            if isinstance(event, Message) and event.chat.type == "private":
                await event.answer(t("not_allowed", data["lang"], user_id=user.id))
            elif isinstance(event, CallbackQuery):
                await event.answer(t("not_allowed", data["lang"], user_id=user.id), show_alert=True)
            return None
        return await handler(event, data)
