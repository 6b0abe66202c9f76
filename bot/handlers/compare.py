"""Side by side in Telegram: the two answers of a compare-mode question, and the vote buttons under them.

Two placeholders ("A", "B") are sent first, so that A stays above B whichever finishes first; each answer streams
into its own. Under the last part of B: "A is better", "B is better", "Tie", "Both bad" (callback data
`v:<compare id>:<code>`, see `bot.compare`). A vote edits both answers to show their modes and the buttons to
show the counts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from agents.types import ReplyEvent
from bot.compare import LABELS, VOTE_CODES, CompareService, VoteOutcome, parse_vote_data, vote_data
from bot.config import Settings
from bot.handlers.errors import user_message
from bot.i18n import t
from bot.rendering import Chunk, preview, utf16_len
from bot.service import Mode, Prepared, ServiceError
from bot.storage.repo import InvalidVerdict
from bot.streaming import LABEL_ROOM, ReplyStreamer, _entities, relabel

if TYPE_CHECKING:
    from bot.app import Services

log = logging.getLogger(__name__)
_BUTTONS = (("a", "vote_a"), ("b", "vote_b"), ("t", "vote_tie"), ("x", "vote_bad"))


def vote_keyboard(compare_id: int, lang: str, tally: dict[str, int] | None = None) -> InlineKeyboardMarkup:
    def label(code: str, key: str) -> str:
        n = (tally or {}).get(VOTE_CODES[code], 0)
        return f"{t(key, lang)} · {n}" if n else t(key, lang)

    buttons = [InlineKeyboardButton(text=label(code, key), callback_data=vote_data(compare_id, code))
               for code, key in _BUTTONS]
    return InlineKeyboardMarkup(inline_keyboard=[buttons[:2], buttons[2:]])


def revealed(label: str, mode: Mode) -> str:
    """`A — level · model`, shortened to the room the answer's first message kept for it (a long model name)."""
    return preview(f"{label} — {mode.level} · {mode.model}", utf16_len(label) + LABEL_ROOM)


class SideStream:
    """One side's answer, streamed into its placeholder message (a `bot.compare.SideView`)."""

    def __init__(self, streamer: ReplyStreamer, lang: str) -> None:
        self.streamer, self.lang = streamer, lang
        self.sent: list[int] = []

    async def feed(self, event: ReplyEvent) -> None:
        await self.streamer.feed(event)

    async def end(self, error: Exception | None) -> None:
        notice = None
        if error is not None:
            notice = user_message(error, self.lang)
            if notice is None:
                raise error  # a bug: the error router logs it and answers
            log.info("a side-by-side answer in chat %s ended early: %s", self.streamer.chat_id, error)
        self.sent = await self.streamer.finish(notice)


async def answer_side_by_side(message: Message, bot: Bot, compare: CompareService, settings: Settings, lang: str,
                              update_id: int, text: str, prepared: Prepared) -> None:
    """Answer a question of a chat in compare mode: two streamed answers, then the vote buttons."""
    assert prepared.compare is not None
    chat_id = message.chat.id
    user_id = message.from_user.id if message.from_user else None
    try:
        text = compare.chat.admit(chat_id, text, user_id, prepared)
    except ServiceError as exc:
        await message.answer(user_message(exc, lang) or str(exc))
        return
    modes = compare.order(prepared.compare)
    private = message.chat.type == "private"
    thread_id = message.message_thread_id if message.is_topic_message else None
    views = []
    for i, label in enumerate(LABELS):
        placeholder = await bot.send_message(chat_id, f"{label}\n\n…", message_thread_id=thread_id,
                                             reply_to_message_id=None if private or i else message.message_id,
                                             allow_sending_without_reply=True)
        views.append(SideStream(ReplyStreamer(
            bot, chat_id, lang=lang, private=private, use_drafts=False, interval=settings.stream_edit_interval,
            grace=settings.stream_grace, thread_id=thread_id, label=label, message_id=placeholder.message_id), lang))
    try:
        compared = await compare.run(chat_id, text, modes, views, prepared=prepared, user_id=user_id,
                                     update_id=update_id, lang=lang)
    except ServiceError as exc:  # busy: another answer started meanwhile
        for view in views:
            await view.end(exc)
        return
    if compared.compare_id is not None:
        await _offer_vote(bot, compare, chat_id, compared.compare_id, views, lang)


async def resume_side_by_side(message: Message, bot: Bot, compare: CompareService, settings: Settings, lang: str,
                              update_id: int) -> bool:
    """A compare-mode question run again after both answers were stored (the process stopped, or Telegram failed,
    before the vote buttons were under them): show both again with the buttons, unless that was done already.

    False when the update's stored answer is no comparison's (then it is delivered as a single answer)."""
    chat_id = message.chat.id
    stored = await compare.of_update(chat_id, update_id)
    if stored is None:
        return False
    if stored.shown:
        return True  # shown with its buttons: nothing of it is missing
    private = message.chat.type == "private"
    thread_id = message.message_thread_id if message.is_topic_message else None
    views = []
    for i, (label, text) in enumerate(zip(LABELS, stored.answers, strict=True)):
        streamer = ReplyStreamer(bot, chat_id, lang=lang, private=private, use_drafts=False,
                                 interval=settings.stream_edit_interval, thread_id=thread_id, label=label,
                                 reply_to=None if private or i else message.message_id)
        streamer.text = text
        view = SideStream(streamer, lang)
        await view.end(None)
        views.append(view)
    await _offer_vote(bot, compare, chat_id, stored.compare_id, views, lang)
    return True


async def _offer_vote(bot: Bot, compare: CompareService, chat_id: int, compare_id: int, views: list[SideStream],
                      lang: str) -> None:
    """Put the vote buttons under B's last part and remember how both answers are shown (for the reveal)."""
    a, b = views
    if not (a.sent and b.sent and all(a.sent + b.sent)):
        return  # Telegram's answer was lost: nothing to put the buttons under
    buttons = b.sent[-1]
    await bot.edit_message_reply_markup(chat_id=chat_id, message_id=buttons,
                                        reply_markup=vote_keyboard(compare_id, lang))
    shown = {"buttons": buttons, **{label.lower(): {"id": view.sent[0], "text": view.streamer.delivered[0].text,
                                                    "entities": view.streamer.delivered[0].entities}
                                    for label, view in zip(LABELS, views, strict=True)}}
    await compare.note_shown(compare_id, shown)


async def on_vote(query: CallbackQuery, bot: Bot, services: Services, lang: str) -> None:
    """A vote button: record the vote, reveal both modes, show the counts."""
    message = query.message
    parsed = parse_vote_data(query.data or "")
    if not isinstance(message, Message) or parsed is None:
        await query.answer()
        return
    compare_id, code = parsed
    try:
        outcome = await services.compare.vote(compare_id, message.chat.id, query.from_user.id, code)
    except InvalidVerdict:
        await query.answer(t("vote_stale", lang), show_alert=True)
        return
    await _reveal(bot, message.chat.id, outcome, lang)
    choice = dict((c, k) for c, k in _BUTTONS)[code]
    await query.answer(t("vote_recorded", lang, choice=t(choice, lang)))


async def _reveal(bot: Bot, chat_id: int, outcome: VoteOutcome, lang: str) -> None:
    shown, markup = outcome.shown, vote_keyboard(outcome.compare_id, lang, outcome.tally)
    if not shown:
        return
    edited_buttons = False
    for label, mode in zip(LABELS, outcome.modes, strict=True):
        part = shown[label.lower()]
        chunk = relabel(Chunk(part["text"], part["entities"]), label, revealed(label, mode))
        carries_buttons = part["id"] == shown["buttons"]
        edited_buttons |= carries_buttons
        await _edit(bot.edit_message_text(text=chunk.text, chat_id=chat_id, message_id=part["id"],
                                          entities=_entities(chunk), parse_mode=None,
                                          reply_markup=markup if carries_buttons else None))
    if not edited_buttons:  # B came in several parts: the buttons are under its last one
        await _edit(bot.edit_message_reply_markup(chat_id=chat_id, message_id=shown["buttons"], reply_markup=markup))


async def _edit(call: Any) -> None:
    try:
        await call
    except TelegramBadRequest as exc:
        if "not modified" not in exc.message:  # pressed again: nothing changed
            log.info("could not update a side-by-side answer: %s", exc.message)
    except TelegramAPIError as exc:
        log.info("could not update a side-by-side answer: %s", exc)


def create_router() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(on_vote, F.data.startswith("v:"))
    return router
