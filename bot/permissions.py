"""Who may change a group's settings: its Telegram administrators and the bot's ADMIN_IDS.

In a group, /reset, /mode (changing it), /steps (changing it) and the mode buttons act on everyone's chat, so they
need an administrator; /stop stops only the asker's own answer unless an administrator sends it. Private chats
belong to their user. Group administrators are asked from Telegram (getChatMember) and remembered briefly; when
Telegram cannot be asked, the action is refused with a "try again", never allowed. The commands ask through
`Context.refusal` (bot/commands/base.py); the Telegram adapter answers it with `GroupAdmins.is_admin`.
"""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import ClientDecodeError, TelegramAPIError
from aiogram.types import Chat, User

from agents.lru import LRUCache

log = logging.getLogger(__name__)

ADMIN_STATUSES = frozenset({"creator", "administrator"})
CACHE_SECONDS = 60.0  # a demoted administrator keeps the rights this long at most
CACHE_SIZE = 10_000  # (chat, user) pairs remembered


class AdminCheckError(Exception):
    """Telegram could not say whether the user administers the group."""


class GroupAdmins:
    """Group administrator checks through getChatMember, cached per (chat, user) with a TTL and a size cap."""

    def __init__(self, bot_admins: list[int], *, ttl: float = CACHE_SECONDS, max_size: int = CACHE_SIZE) -> None:
        self.bot_admins = set(bot_admins)
        self._cache: LRUCache[tuple[int, int], bool] = LRUCache(max_size, ttl)

    async def is_admin(self, bot: Bot, chat: Chat, user: User, sender_chat: Chat | None = None) -> bool:
        """True for the bot's admins, the group's administrators and its anonymous administrators."""
        if user.id in self.bot_admins:
            return True
        if sender_chat is not None and sender_chat.id == chat.id:
            return True  # an anonymous administrator writes as the group itself
        key = (chat.id, user.id)
        known = self._cache.get(key)
        if known is not None:
            return known
        try:
            member = await bot.get_chat_member(chat.id, user.id)
        except (TelegramAPIError, ClientDecodeError) as exc:  # network errors are API errors in aiogram
            log.info("getChatMember for chat %s failed: %s", chat.id, type(exc).__name__)
            raise AdminCheckError(str(exc)) from None
        admin = member.status in ADMIN_STATUSES
        self._cache[key] = admin
        return admin


def is_group(chat: Chat) -> bool:
    return chat.type in ("group", "supergroup")

