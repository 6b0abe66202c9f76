"""The Telegram adapter of the command layer: updates become command calls, plain replies become messages,
inline keyboards, photos and documents. The commands themselves live in `bot/commands/`."""

from __future__ import annotations

import html
import io
import logging
from typing import TYPE_CHECKING

from aiogram import Bot, F, Router
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command as CommandFilter
from aiogram.filters import CommandObject
from aiogram.types import (
    BotCommand,
    BotCommandScopeDefault,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
    User,
)
from aiohttp import ClientError

from bot.commands import Context, Document, Registry, Reply, Role, build_registry
from bot.commands.base import AdminCheckFailed, DocumentUnavailable
from bot.handlers.chat import answer
from bot.i18n import LANGUAGES
from bot.permissions import AdminCheckError, GroupAdmins, is_group

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aiogram.types import Chat

    from bot.app import Services
    from bot.delivery import DeliveryJournal
    from bot.pump import UpdatePump
    from bot.service import Question

log = logging.getLogger(__name__)
CALLBACK_LIMIT = 64  # bytes of callback_data Telegram keeps


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.choices:
        return None
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=c.label, callback_data=f"{c.command}:{c.args}"[:CALLBACK_LIMIT]) for c in row]
        for row in reply.choices])


class SentMessage:
    """A sent Telegram message that a command may edit later."""

    def __init__(self, message: Message) -> None:
        self.message = message

    async def edit(self, text: str) -> None:
        edited = await self.message.edit_text(text)
        if isinstance(edited, Message):
            self.message = edited


class ChatOutbox:
    """Replies into one chat (as answers to the message that ran the command, in groups' topics too)."""

    def __init__(self, message: Message) -> None:
        self.message = message

    async def send(self, reply: Reply) -> SentMessage:
        message, markup = self.message, keyboard(reply)
        if reply.file is not None:
            upload = BufferedInputFile(reply.file.data, reply.file.name)
            caption = reply.text or None
            if reply.file.picture:
                return SentMessage(await message.answer_photo(upload, caption=caption, reply_markup=markup))
            return SentMessage(await message.answer_document(upload, caption=caption, reply_markup=markup))
        if reply.code is not None:
            text = f"<pre>{html.escape(reply.code)}</pre>\n\n{html.escape(reply.text)}"
            return SentMessage(await message.answer(text, parse_mode=ParseMode.HTML, reply_markup=markup))
        if reply.alert and is_group(message.chat):
            return SentMessage(await message.reply(reply.text, reply_markup=markup))
        return SentMessage(await message.answer(reply.text, reply_markup=markup))


def _user_name(user: User) -> str:
    return f"@{user.username}" if user.username else " ".join(user.full_name.split())[:40]


def _document(message: Message, bot: Bot) -> Document | None:
    doc = message.document
    if doc is None:
        return None

    async def read() -> bytes:
        buffer = io.BytesIO()
        try:
            await bot.download(doc, destination=buffer)
        except (TelegramAPIError, ClientError, TimeoutError) as exc:
            raise DocumentUnavailable(type(exc).__name__) from None
        return buffer.getvalue()

    return Document(doc.file_name or "document", doc.file_size, read)


def _context(services: Services, bot: Bot, admins: GroupAdmins, chat: Chat, user: User, sender_chat: Chat | None,
             lang: str, is_admin: bool, outbox: ChatOutbox, args: str = "", **more: object) -> Context:
    async def is_chat_admin() -> bool:
        try:
            return await admins.is_admin(bot, chat, user, sender_chat)
        except AdminCheckError as exc:
            raise AdminCheckFailed(str(exc)) from None

    return Context(services, chat.id, user.id, _user_name(user), lang, outbox, args=args, is_group=is_group(chat),
                   is_bot_admin=is_admin, is_chat_admin=is_chat_admin, **more)  # type: ignore[arg-type]


def _withdraw(pump: UpdatePump, services: Services, bot: Bot, message: Message,
              before: int) -> Callable[[], Awaitable[bool]]:
    """Context.withdraw for a command in this chat: the sender's questions (anyone's in a private chat) received
    before update `before` whose answer has not begun: the one this process holds and those still waiting."""
    async def withdraw() -> bool:
        chat_id = message.chat.id
        user_id = None if message.chat.type == "private" or message.from_user is None else message.from_user.id
        withdrawal = services.chat.withdraw(chat_id, before, user_id)  # first: an answer about to begin sees it
        me = await bot.me()
        addressed = (me.id, me.username)
        try:
            dropped = await pump.withdraw(chat_id, before, user_id, addressed)
        except Exception:  # the database is out of reach: what this process holds is still withdrawn
            log.warning("/stop could not withdraw the questions waiting in chat %s", chat_id, exc_info=True)
            dropped = []
        held = pump.held_question(chat_id, before, user_id, addressed)
        return bool(dropped or withdrawal.dropped or (held is not None and not services.chat.began(chat_id, held)))

    return withdraw


async def on_command(message: Message, command: CommandObject, bot: Bot, services: Services, registry: Registry,
                     group_admins: GroupAdmins, lang: str, is_admin: bool, event_update: Update,
                     deliveries: DeliveryJournal, pump: UpdatePump | None = None) -> None:
    assert message.from_user is not None
    outbox = ChatOutbox(message)

    async def ask(text: str, retry: Question | None = None) -> None:  # a chat turn, streamed as any question is
        await answer(message, bot, services.chat, services.settings, lang, event_update.update_id, text, deliveries,
                     retry=retry)

    replied = message.reply_to_message
    if replied is not None and replied.forum_topic_created is not None:
        replied = None  # in a forum topic every message "replies" to the topic's first one
    to_bot = replied is not None and replied.from_user is not None and replied.from_user.id == (await bot.me()).id
    ctx = _context(services, bot, group_admins, message.chat, message.from_user, message.sender_chat, lang, is_admin,
                   outbox, command.args or "", document=_document(message, bot), ask=ask,
                   replied_to=replied.message_id if replied is not None and to_bot else None,
                   replied_to_other=replied is not None and not to_bot,
                   withdraw=None if pump is None else _withdraw(pump, services, bot, message, event_update.update_id))
    for reply in await registry.run(ctx, command.command.lower()):
        await outbox.send(reply)


async def on_upload(message: Message, bot: Bot, services: Services, registry: Registry, group_admins: GroupAdmins,
                    lang: str, is_admin: bool) -> None:
    """A file sent in a private chat without a command: /kb_add with the caption as its arguments."""
    assert message.from_user is not None
    outbox = ChatOutbox(message)
    ctx = _context(services, bot, group_admins, message.chat, message.from_user, None, lang, is_admin, outbox,
                   message.caption or "", document=_document(message, bot))
    for reply in await registry.run(ctx, "kb_add"):
        await outbox.send(reply)


async def on_choice(query: CallbackQuery, bot: Bot, services: Services, registry: Registry,
                    group_admins: GroupAdmins, lang: str, is_admin: bool) -> None:
    """A pressed button runs its command; the reply replaces the message in place, a refusal is an alert."""
    message = query.message
    if not isinstance(message, Message) or query.data is None:
        await query.answer()
        return
    name, _, args = query.data.partition(":")
    outbox = ChatOutbox(message)
    ctx = _context(services, bot, group_admins, message.chat, query.from_user, None, lang, is_admin, outbox, args,
                   via_choice=True)
    replies = await registry.run(ctx, name)
    if not replies:
        await query.answer()
        return
    first = replies[0]
    if first.alert:
        await query.answer(first.text, show_alert=True)
        return
    await message.edit_text(first.text, reply_markup=keyboard(first))
    await query.answer(first.notice)
    for reply in replies[1:]:
        await outbox.send(reply)


async def set_commands(bot: Bot, registry: Registry | None = None) -> None:
    """Telegram's command menu, in each language, from the registry (bot-admin commands are not listed)."""
    registry = registry or build_registry()
    for lang in LANGUAGES:
        commands = [BotCommand(command=c.name, description=c.help(lang)) for c in registry.all()
                    if c.menu and c.who is not Role.BOT_ADMIN]
        await bot.set_my_commands(commands, scope=BotCommandScopeDefault(),
                                  language_code=None if lang == "en" else lang)


def create_router(registry: Registry) -> Router:
    router = Router(name=__name__)
    router.message.register(on_command, CommandFilter(*registry.names(), ignore_case=True))
    router.message.register(on_upload, F.document, F.chat.type == "private")
    router.callback_query.register(on_choice, F.data.func(lambda data: data.partition(":")[0] in registry.names()))
    return router
