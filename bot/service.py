"""ChatService: a chat's mode, memory and turns. No aiogram here: the terminal chat uses it as well."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from agents.errors import ModelCallError, ModelTimeoutError
from agents.runtime import Brain, TurnRun
from agents.types import ReplyEvent, TextDelta, Turn, Usage
from bot.storage import Database
from bot.storage import repo

log = logging.getLogger(__name__)

SYSTEM_PROMPT_KEY = "system_prompt"


class ServiceError(Exception):
    """A request the service refuses; `code` selects the user-facing text."""

    def __init__(self, code: str, **params: object) -> None:
        self.code, self.params = code, params
        super().__init__(code)


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    text: str
    complete: bool


@dataclass(frozen=True, slots=True)
class Mode:
    level: str
    model: str
    show_steps: bool = False


class ChatService:
    def __init__(self, db: Database, brain: Brain, *, default_level: str, default_model: str,
                 max_input_chars: int = 8000, history_limit: int = 200,
                 rate_limit_per_minute: int = 0, daily_token_quota: int = 0, model_retries: int = 0) -> None:
        self.db, self.brain = db, brain
        self.default = Mode(default_level, default_model)
        self.max_input_chars = max_input_chars
        self.history_limit = history_limit
        self.rate_limit_per_minute = rate_limit_per_minute
        self.daily_token_quota = daily_token_quota
        self.model_retries = model_retries
        self._running: dict[int, TurnRun] = {}
        self._recent: dict[int, list[float]] = {}

    # --- mode ---------------------------------------------------------------------------------------
    async def get_mode(self, chat_id: int) -> Mode:
        async with self.db.session() as s:
            chat = await repo.get_chat(s, chat_id)
        if chat is None:
            return self.default
        # a model that vanished (a deleted fine-tune) falls back to the default rather than failing every turn
        model = chat.model if chat.model in self.brain.models else self.default.model
        level = chat.level if chat.level in self.brain.levels else self.default.level
        return Mode(level, model, chat.show_steps)

    async def set_mode(self, chat_id: int, names: list[str]) -> Mode:
        """Apply `/mode` arguments; raises UnknownNameError (with the valid names) for a bad one."""
        current = await self.get_mode(chat_id)
        level, model = self.brain.parse_mode(names, current.level, current.model)
        async with self.db.session() as s, s.begin():
            await repo.upsert_chat(s, chat_id, level=level, model=model)
        return Mode(level, model, current.show_steps)

    async def set_steps(self, chat_id: int, on: bool) -> None:
        current = await self.get_mode(chat_id)
        async with self.db.session() as s, s.begin():
            await repo.upsert_chat(s, chat_id, level=current.level, model=current.model, show_steps=on)

    # --- memory and prompts ---------------------------------------------------------------------------
    async def reset(self, chat_id: int) -> int:
        async with self.db.session() as s, s.begin():
            return await repo.clear_history(s, chat_id)

    async def history(self, chat_id: int) -> list[Turn]:
        async with self.db.session() as s:
            rows = await repo.history(s, chat_id, self.history_limit)
        return [Turn(r.role, r.content) for r in rows]  # type: ignore[arg-type]

    async def system_prompt(self) -> tuple[str, bool]:
        """The system prompt in force and whether an admin replaced the default."""
        async with self.db.session() as s:
            custom = await repo.get_setting(s, SYSTEM_PROMPT_KEY)
        return (custom, True) if custom else (self.brain.prompts().system, False)

    async def set_system_prompt(self, text: str | None) -> None:
        async with self.db.session() as s, s.begin():
            await repo.set_setting(s, SYSTEM_PROMPT_KEY, text.strip() if text else None)

    # --- usage ---------------------------------------------------------------------------------------
    @staticmethod
    def today() -> str:
        return datetime.now(UTC).strftime("%Y-%m-%d")

    async def usage(self, user_id: int | None) -> list[tuple[int, int, int]]:
        """(user_id, messages, tokens) today: one user's, or everyone's when `user_id` is None."""
        async with self.db.session() as s:
            if user_id is None:
                return [(u.user_id, u.messages, u.tokens) for u in await repo.usage_all(s, self.today())]
            row = await repo.usage_of(s, user_id, self.today())
        return [(user_id, row.messages if row else 0, row.tokens if row else 0)]

    async def _check_limits(self, user_id: int | None) -> None:
        if user_id is None:
            return
        if self.rate_limit_per_minute:
            now = time.monotonic()
            recent = [t for t in self._recent.get(user_id, []) if now - t < 60]
            if len(recent) >= self.rate_limit_per_minute:
                raise ServiceError("rate_limited", seconds=int(60 - (now - recent[0])) + 1)
            recent.append(now)
            self._recent[user_id] = recent
        if self.daily_token_quota:
            (_, _, tokens), = await self.usage(user_id)
            if tokens >= self.daily_token_quota:
                raise ServiceError("quota_exceeded", quota=self.daily_token_quota)

    # --- turns ---------------------------------------------------------------------------------------
    def is_busy(self, chat_id: int) -> bool:
        return chat_id in self._running

    def stop(self, chat_id: int) -> bool:
        """Cancel this chat's answer in progress; False when there is none."""
        run = self._running.get(chat_id)
        if run is None:
            return False
        run.cancel()
        return True

    async def already_answered(self, chat_id: int, update_id: int) -> bool:
        async with self.db.session() as s:
            return await repo.answered(s, chat_id, update_id)

    async def stored_answer(self, chat_id: int, update_id: int) -> StoredAnswer | None:
        """The answer stored for an update, if its turn ran to an end before (a re-run after a crash)."""
        from bot.storage.models import Message

        async with self.db.session() as s:
            row = await s.scalar(select(Message).where(Message.chat_id == chat_id, Message.update_id == update_id,
                                                       Message.role == "assistant").order_by(Message.id).limit(1))
        return StoredAnswer(row.content, row.complete) if row is not None else None

    async def reply(self, chat_id: int, text: str, *, user_id: int | None = None,
                    update_id: int | None = None) -> AsyncIterator[ReplyEvent]:
        """Answer `text` in this chat's mode, yielding reply events.

        The user turn and the answer are stored together once the answer is complete; an answer that fails
        or is stopped half-way is stored marked incomplete, so it never reaches the model as a real turn.
        A model call that fails before it produced anything is tried again (`model_retries`); a timeout is not
        (the user hears about it within the timeout). A turn abandoned by its caller (cancelled at shutdown) is
        not stored at all: its update runs again after the restart.
        """
        text = text.strip()
        if not text:
            raise ServiceError("empty_input")
        if len(text) > self.max_input_chars:
            raise ServiceError("input_too_long", limit=self.max_input_chars, got=len(text))
        if chat_id in self._running:
            raise ServiceError("busy")
        await self._check_limits(user_id)
        mode = await self.get_mode(chat_id)
        history = await self.history(chat_id)
        custom, is_custom = await self.system_prompt()
        attempt = 0
        while True:
            run = self.brain.start_turn(level=mode.level, model=mode.model, history=history, text=text,
                                        system_override=custom if is_custom else None)
            self._running[chat_id] = run
            parts: list[str] = []
            tokens = 0
            events = 0
            outcome = "failed"
            try:
                async with contextlib.aclosing(run.__aiter__()) as stream:  # closed here, even when abandoned
                    async for event in stream:
                        if isinstance(event, TextDelta):
                            parts.append(event.text)
                        elif isinstance(event, Usage):
                            tokens += event.prompt_tokens + event.completion_tokens
                        events += 1
                        yield event
                outcome = "complete"
            except ModelCallError as exc:
                if events or isinstance(exc, ModelTimeoutError) or attempt >= self.model_retries:
                    raise
                log.info("model call in chat %s failed before any output (%s); trying again", chat_id, exc)
                outcome = "retry"
            except (asyncio.CancelledError, GeneratorExit):
                outcome = "abandoned"
                raise
            finally:
                self._running.pop(chat_id, None)
                if outcome in ("complete", "failed"):
                    # shielded: a cancelled handler must still record what happened
                    await asyncio.shield(self._store(chat_id, mode, text, "".join(parts), outcome == "complete",
                                                     update_id, user_id, tokens))
            if outcome == "complete":
                return
            attempt += 1

    async def _store(self, chat_id: int, mode: Mode, text: str, answer: str, complete: bool,
                     update_id: int | None, user_id: int | None, tokens: int) -> None:
        from bot.storage.models import Message

        complete = complete and bool(answer.strip())
        async with self.db.session() as s, s.begin():
            s.add(Message(chat_id=chat_id, role="user", content=text, complete=complete, update_id=update_id,
                          level=mode.level, model=mode.model))
            s.add(Message(chat_id=chat_id, role="assistant", content=answer, complete=complete,
                          update_id=update_id, level=mode.level, model=mode.model))
            if user_id is not None:
                await repo.add_usage(s, user_id, self.today(), messages=1, tokens=tokens)
