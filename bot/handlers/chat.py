"""Plain text: the conversation itself. In groups the bot answers only when mentioned or replied to."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from aiogram import Bot, F, Router
from aiogram.types import Message, Update

from bot.compare import CompareService
from bot.config import Settings
from bot.delivery import DeliveryJournal
from bot.handlers.compare import answer_side_by_side, resume_side_by_side
from bot.handlers.errors import user_message
from bot.handlers.feedback import feedback_markup
from bot.i18n import t
from bot.service import ChatService, Question, ServiceError
from bot.streaming import ReplyStreamer

if TYPE_CHECKING:
    from bot.app import Services

log = logging.getLogger(__name__)


async def addressed_text(message: Message, bot: Bot) -> str | None:
    """The text meant for the bot, or None when a group message is not addressed to it."""
    text = message.text or ""
    if message.chat.type == "private":
        return text
    me = await bot.me()
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == me.id:
        return text
    mention = f"@{me.username}".lower() if me.username else None
    for entity in message.entities or []:
        value = entity.extract_from(text)
        if entity.type == "mention" and mention and value.lower() == mention:
            return (text[: entity.offset] + text[entity.offset + entity.length:]).strip()
        if entity.type == "text_mention" and entity.user and entity.user.id == me.id:
            return text
    return None


async def on_text(message: Message, bot: Bot, chat_service: ChatService, settings: Settings, lang: str,
                  event_update: Update, deliveries: DeliveryJournal, services: Services) -> None:
    text = await addressed_text(message, bot)
    if text is None:
        return
    await answer(message, bot, chat_service, settings, lang, event_update.update_id, text, deliveries,
                 compare=services.compare)


async def answer(message: Message, bot: Bot, chat_service: ChatService, settings: Settings, lang: str,
                 update_id: int, text: str, deliveries: DeliveryJournal, retry: Question | None = None,
                 feedback: bool = True, compare: CompareService | None = None) -> None:
    """Answer `text` in the message's chat, streaming the reply (`retry`: the question asked again; `compare`:
    a chat in compare mode gets two answers side by side, except for /retry).

    `feedback`: 👍/👎 under the final answer when FEEDBACK_BUTTONS is on, and reactions and /fix replies on its
    messages find it (a caller with buttons of its own, such as a side-by-side answer, passes False)."""
    chat_id = message.chat.id
    # a re-run (the process died or stopped before the inbox marked this update done): if the turn already ran to
    # an end its answer is stored, and it is delivered again rather than asking the model twice
    user_id = message.from_user.id if message.from_user else None
    prepared = await chat_service.prepare(chat_id, user_id=user_id, update_id=update_id)
    if chat_service.drop_withdrawn(chat_id, update_id, user_id):
        log.info("update %s: withdrawn by /stop before its answer began", update_id)
        return  # the /stop said so
    stored, mode = prepared.stored, prepared.mode
    buttons = feedback_markup(update_id) if feedback and settings.feedback_buttons else None
    streamer = ReplyStreamer(
        bot, chat_id, lang=lang, private=message.chat.type == "private", use_drafts=settings.use_message_drafts,
        interval=settings.stream_edit_interval, grace=settings.stream_grace, show_steps=mode.show_steps,
        reply_to=None if message.chat.type == "private" else message.message_id,
        thread_id=message.message_thread_id if message.is_topic_message else None,
        journal=deliveries, update_id=update_id, link=feedback,
    )
    if stored is not None:
        if compare is not None and retry is None and \
                await resume_side_by_side(message, bot, compare, settings, lang, update_id):
            return  # a compare-mode question: both answers, with the vote buttons
        log.info("update %s was answered before; delivering what Telegram does not have yet", update_id)
        delivered = await deliveries.load(update_id)
        streamer.text, streamer.sources = stored.text, stored.sources
        reason = t("restarted", lang)
        await streamer.finish(None if stored.complete else t("answer_interrupted", lang, reason=reason),
                              resume=delivered, markup=buttons if stored.complete else None)
        return
    if prepared.compare is not None and compare is not None and retry is None:
        await answer_side_by_side(message, bot, compare, settings, lang, update_id, text, prepared)
        return
    notice: str | None = None
    async with streamer:
        try:
            async with contextlib.aclosing(chat_service.reply(chat_id, text, user_id=user_id, update_id=update_id,
                                                              prepared=prepared, lang=lang, retry=retry)) as events:
                async for event in events:
                    await streamer.feed(event)
        except ServiceError as exc:
            # refused before the model was called: a short reply, nothing streamed
            await message.answer(user_message(exc, lang) or str(exc))
            return
        except Exception as exc:
            notice = user_message(exc, lang)
            if notice is None:
                raise  # a bug: the error router logs it and answers
            log.info("turn in chat %s ended early: %s", chat_id, exc)
        # buttons only under an answer that ran to its end (not a stopped or failed one)
        await streamer.finish(notice, markup=buttons if notice is None else None)


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(on_text, F.text & ~F.text.startswith("/"))
    return router
