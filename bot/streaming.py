"""Shows a reply while it is generated: a typing indicator, then drafts (private chats, where the Bot API has
sendMessageDraft) or a message edited at most once per interval; finally the formatted answer, split as needed.

Nothing is shown during the first `grace` seconds: an answer that is ready by then arrives as one message, with no
typing indicator or preview before it (two Telegram calls saved per quick answer, and no flicker). Nor is text shown
during the first `grace` seconds after it starts coming: an answer that streams in faster than that after a long
wait (a slow first token, a queue) arrives as one message after the typing indicator, not as a preview replaced a
moment later (one Telegram call saved, which in groups counts against Telegram's 20 messages a minute).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

from aiogram import Bot
from aiogram.enums import ChatAction
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramRetryAfter
from aiogram.types import InlineKeyboardMarkup, MessageEntity

from agents.guards import insert_marks
from agents.lru import LRUCache
from agents.types import GuardAction, Queued, ReplyEvent, Sources, TextDelta, Thought, ToolStep
from bot.delivery import Delivered, DeliveryJournal
from bot.i18n import t
from bot.rendering import TELEGRAM_LIMIT, Chunk, preview, render, utf16_len
from bot.telegram_session import SendUncertain, essential

log = logging.getLogger(__name__)

_draft_ids = itertools.count(1)
# Chats where sendMessageDraft was refused: they get edits from then on. Bounded: a chat forgotten here tries a
# draft once more, which costs one refused request.
_MAX_DRAFTS_REFUSED = 4096
_drafts_refused: LRUCache[int, bool] = LRUCache(_MAX_DRAFTS_REFUSED)
LABEL_ROOM = 200  # UTF-16 units a labelled answer leaves free in its first message, for `relabel`


class ReplyStreamer:
    def __init__(self, bot: Bot, chat_id: int, *, lang: str, private: bool, use_drafts: bool = True,
                 interval: float = 1.0, grace: float = 0.0, reply_to: int | None = None,
                 show_steps: bool = False, thread_id: int | None = None, journal: DeliveryJournal | None = None,
                 update_id: int | None = None, label: str = "", message_id: int | None = None,
                 link: bool = False) -> None:
        self.bot, self.chat_id, self.lang = bot, chat_id, lang
        # `label`: a first line above the answer (a side-by-side answer's "A"); `message_id`: a message already sent
        # that the answer streams into (side-by-side answers keep the order of their placeholders)
        self.label = label
        self.journal, self.update_id = journal, update_id  # where the delivered parts are recorded
        self.link = link  # and linked to the stored answer once all are delivered (reactions, /fix)
        self.use_drafts = use_drafts and private and chat_id not in _drafts_refused
        self.interval, self.grace = interval, grace
        self.reply_to, self.thread_id = reply_to, thread_id
        self.show_steps = show_steps
        self.text = ""
        self.steps: list[ToolStep | Thought] = []
        self.sources: Sources | None = None
        self.guard_actions: list[GuardAction] = []  # what the guards did to this answer (rendered by `finish`)
        self._message_id: int | None = message_id  # the message being edited (edit mode)
        self.delivered: list[Chunk] = []  # the answer's parts as `finish` delivered them
        self._shown = ""
        self._text_began = False
        self._next_update = 0.0
        self._draft_id = next(_draft_ids)
        self._typing: asyncio.Task[None] | None = None
        self._steps_message: int | None = None

    # --- lifecycle ----------------------------------------------------------------------------------
    async def __aenter__(self) -> ReplyStreamer:
        self._next_update = time.monotonic() + self.grace
        self._typing = asyncio.create_task(self._keep_typing())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop_typing()

    def _stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.cancel()
            self._typing = None

    async def _keep_typing(self) -> None:
        try:
            await asyncio.sleep(self.grace)
            while True:
                try:
                    await self.bot.send_chat_action(self.chat_id, ChatAction.TYPING,
                                                    message_thread_id=self.thread_id)
                except TelegramAPIError:
                    pass
                await asyncio.sleep(4.5)  # the indicator lasts about 5 s
        except asyncio.CancelledError:
            pass

    # --- events -------------------------------------------------------------------------------------
    async def feed(self, event: ReplyEvent) -> None:
        if isinstance(event, TextDelta):
            if not self._text_began:  # the first text: a preview waits to see whether the rest follows at once
                self._text_began = True
                if not self._shown:  # (not when something is already on screen: a queue notice stays no longer)
                    self._next_update = max(self._next_update, time.monotonic() + self.grace)
            self.text += event.text
            if time.monotonic() >= self._next_update:  # building the preview costs O(answer): only when due
                await self._show(preview(f"{self.label}\n\n{self.text}" if self.label else self.text))
        elif isinstance(event, ToolStep | Thought):
            self.steps.append(event)
            if self.show_steps:
                await self._show_steps()
        elif isinstance(event, Sources):
            self.sources = event
        elif isinstance(event, Queued):
            await self._show(t("queued", self.lang, ahead=event.ahead), force=True)
        elif isinstance(event, GuardAction):
            self.guard_actions.append(event)
            if event.action == "restart":  # generated again: the next preview shows the new answer only
                self.text, self.sources, self.guard_actions = "", None, []
            elif event.action == "cut":
                self.text = self.text[:event.keep]

    async def finish(self, notice: str | None = None, *, resume: Delivered | None = None,
                     markup: InlineKeyboardMarkup | None = None) -> list[int]:
        """Deliver the whole answer (formatted, split); `notice` is appended (an error or a stop).

        `resume`: what an earlier run of this update delivered; only the parts it did not deliver are sent.
        `markup`: buttons under the answer's last part (👍/👎).
        """
        self._stop_typing()
        chunks = resume.parts if resume is not None else self._render(notice)
        self.delivered = chunks
        sent: list[int] = list(resume.sent) if resume is not None else []
        with essential():
            for i in range(len(sent), len(chunks)):
                buttons = markup if i == len(chunks) - 1 else None
                if i == 0 and self._message_id is not None and \
                        await self._edit_final(self._message_id, chunks[0], buttons):
                    sent.append(self._message_id)
                else:
                    sent.append(await self._send_final(chunks[i], reply=i == 0, markup=buttons))
                if self.journal is not None and self.update_id is not None:
                    await self.journal.record(self.update_id, self.chat_id, chunks, sent, link=self.link)
        return sent

    def _render(self, notice: str | None) -> list[Chunk]:
        """The answer as Telegram messages: text, then its sources, then the notice."""
        body, notes = guarded_text(self.text, self.guard_actions, self.lang)
        notice = "\n".join(n for n in (*notes, notice) if n) or None
        if self.sources and self.sources.items:
            lines = [t("sources", self.lang)]
            for s in self.sources.items:
                where = f", {t('page', self.lang)} {s.page}" if s.page else ""
                when = f" ({s.date})" if s.date else ""
                lines.append(f"[{s.index}] {s.name}{where}{when}")
            body = f"{body}\n\n" + "\n".join(lines) if body else "\n".join(lines)
        if self.label:  # room left for a longer label (a side-by-side answer's mode, revealed after the vote)
            body = f"{self.label}\n\n{body or ('' if notice else t('empty_answer', self.lang))}".strip()
        chunks = render(body, TELEGRAM_LIMIT - LABEL_ROOM if self.label else TELEGRAM_LIMIT) if body else []
        if notice:
            # the notice belongs to this answer: one message (the last part plus the notice) when it fits
            if chunks and utf16_len(chunks[-1].text) + utf16_len(notice) + 2 <= TELEGRAM_LIMIT:
                chunks[-1] = Chunk(f"{chunks[-1].text}\n\n{notice}", chunks[-1].entities)
            else:
                chunks += [Chunk(notice)]
        if not chunks:
            chunks = [Chunk(t("empty_answer", self.lang))]
        return chunks

    # --- internals ----------------------------------------------------------------------------------
    async def _show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not text or text == self._shown or (now < self._next_update and not force):
            return
        self._next_update = now + self.interval
        self._shown = text
        try:
            if self.use_drafts:
                try:
                    await self.bot.send_message_draft(self.chat_id, self._draft_id, text=text,
                                                      message_thread_id=self.thread_id)
                    return
                except TelegramBadRequest as exc:
                    log.info("sendMessageDraft refused in chat %s (%s); using edits", self.chat_id, exc.message)
                    _drafts_refused[self.chat_id] = True
                    self.use_drafts = False
            if self._message_id is None:
                msg = await self.bot.send_message(self.chat_id, text, message_thread_id=self.thread_id,
                                                  reply_to_message_id=self.reply_to,
                                                  allow_sending_without_reply=True)
                self._message_id = msg.message_id
                self._stop_typing()
            else:
                await self.bot.edit_message_text(text=text, chat_id=self.chat_id, message_id=self._message_id)
        except SendUncertain:
            self._next_update = float("inf")  # a preview Telegram may show, with no id to edit: no more of them
        except TelegramRetryAfter as exc:
            # flood control: skip this preview; the next one waits, the final answer is still delivered
            self._next_update = time.monotonic() + exc.retry_after
        except TelegramAPIError as exc:
            log.debug("preview update failed in chat %s: %s", self.chat_id, exc)

    async def _show_steps(self) -> None:
        lines = []
        for s in self.steps[-10:]:
            if isinstance(s, Thought):
                lines.append(f"💭 {_short(' '.join(s.text.split()), 200)}")
                continue
            out = s.output.replace("\n", " ")
            lines.append(f"🔧 {s.tool}({_short(s.input, 80)}) → {_short(out, 120)}")
        text = "\n".join(lines)
        try:
            if self._steps_message is None:
                msg = await self.bot.send_message(self.chat_id, text, message_thread_id=self.thread_id)
                self._steps_message = msg.message_id
            else:
                await self.bot.edit_message_text(text=text, chat_id=self.chat_id, message_id=self._steps_message)
        except TelegramAPIError as exc:
            log.debug("steps update failed in chat %s: %s", self.chat_id, exc)

    async def _edit_final(self, message_id: int, chunk: Chunk, markup: InlineKeyboardMarkup | None = None) -> bool:
        for entities in (_entities(chunk), None):
            try:
                await self.bot.edit_message_text(text=chunk.text, chat_id=self.chat_id, message_id=message_id,
                                                 entities=entities, parse_mode=None, reply_markup=markup)
                return True
            except TelegramBadRequest as exc:
                if "not modified" in exc.message:
                    return True
                if entities is None:
                    break
                log.warning("Telegram rejected the formatting (%s); sending plain text", exc.message)
            except TelegramAPIError as exc:
                log.warning("final edit failed in chat %s: %s", self.chat_id, exc)
                break
        # the edit failed: remove the preview so the user is left with one complete copy
        try:
            await self.bot.delete_message(self.chat_id, message_id)
        except TelegramAPIError:
            pass
        return False

    async def _send_final(self, chunk: Chunk, reply: bool, markup: InlineKeyboardMarkup | None = None) -> int:
        """Send one part of the answer; its message id (0: Telegram may have it, its answer never came)."""
        try:
            msg = await self.bot.send_message(
                self.chat_id, chunk.text, entities=_entities(chunk), parse_mode=None,
                message_thread_id=self.thread_id, reply_to_message_id=self.reply_to if reply else None,
                allow_sending_without_reply=True, reply_markup=markup)
        except SendUncertain:
            return 0  # logged where it happened; sending it again could show it twice
        except TelegramBadRequest as exc:
            log.warning("Telegram rejected the formatting (%s); sending plain text", exc.message)
            msg = await self.bot.send_message(self.chat_id, chunk.text, parse_mode=None,
                                              message_thread_id=self.thread_id, reply_markup=markup)
        return msg.message_id


def _entities(chunk: Chunk) -> list[MessageEntity] | None:
    return [MessageEntity(**e) for e in chunk.entities] or None


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def guarded_text(text: str, actions: list[GuardAction], lang: str) -> tuple[str, list[str]]:
    """The answer as shown (invented figures marked, a footnote) and the guards' notices to end the message with."""
    notes: list[str] = []
    for action in actions:
        if action.action == "marked":
            text = insert_marks(text, action.marks)
            text = f"{text.rstrip()}\n\n{t('guard_numbers', lang, numbers=', '.join(action.numbers))}"
        elif action.action == "cut":
            notes.append(t("guard_loop", lang))
        elif action.action == "kept":
            notes.append(t("guard_language", lang))
    return text.strip(), notes


def relabel(chunk: Chunk, old: str, new: str) -> Chunk:
    """The first part of a labelled answer with its label `old` replaced by `new` (entities moved along)."""
    if not chunk.text.startswith(old):
        return chunk
    shift = utf16_len(new) - utf16_len(old)
    entities = [dict(e, offset=e["offset"] + shift) for e in chunk.entities]
    return Chunk(new + chunk.text[len(old):], entities)
