"""ChatService: a chat's mode, memory and turns. No aiogram here: the terminal chat uses it as well."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from agents.errors import ModelCallError, ModelTimeoutError, ModelUnavailableError
from agents.lru import LRUCache
from agents.runtime import Brain, TurnCancelled, TurnRun
from agents.types import GuardAction, ReplyEvent, Source, Sources, TextDelta, Turn, Usage
from bot.chat_guards import GUARDS, LANGS, ChatGuards
from bot.storage import Database, repo
from bot.storage.models import Chat
from bot.turn_slots import TurnSlots

log = logging.getLogger(__name__)
_MAX_CHATS_REMEMBERED = 4096  # chats whose last begun or withdrawn update is kept for /stop (least recent dropped)

SYSTEM_PROMPT_KEY = "system_prompt"
# Users whose messages of the last minute are counted. Beyond it the least recently active user's count is
# forgotten (at worst one user among this many gets a fresh minute).
MAX_RATE_LIMITED_USERS = 4096


class ServiceError(Exception):
    """A request the service refuses; `code` selects the user-facing text."""

    def __init__(self, code: str, **params: object) -> None:
        self.code, self.params = code, params
        super().__init__(code)


class RateLimiter:
    """At most `per_minute` messages per user in any 60 seconds (0: unlimited); remembers only the users active in
    the last minute, up to MAX_RATE_LIMITED_USERS."""

    def __init__(self, per_minute: int, max_users: int = MAX_RATE_LIMITED_USERS) -> None:
        self.per_minute = per_minute
        self._recent: LRUCache[int, list[float]] = LRUCache(max_users, ttl=60.0)

    def check(self, user_id: int) -> None:
        """Count one message of `user_id`; raises ServiceError("rate_limited") when it is over the limit."""
        if not self.per_minute:
            return
        now = time.monotonic()
        recent = [t for t in self._recent.get(user_id, []) if now - t < 60]
        if len(recent) >= self.per_minute:
            raise ServiceError("rate_limited", seconds=int(60 - (now - recent[0])) + 1)
        recent.append(now)
        self._recent[user_id] = recent

    def __len__(self) -> int:
        return len(self._recent)


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    text: str
    complete: bool
    sources: Sources | None = None


def _stored(row: repo.StoredRow | None) -> StoredAnswer | None:
    if row is None:
        return None
    sources = Sources(tuple(Source(**item) for item in json.loads(row.sources))) if row.sources else None
    return StoredAnswer(row.content, row.complete, sources)


class Stoppable(Protocol):
    """What /stop cancels: one turn, or the two answers of a side-by-side question."""

    def cancel(self) -> None: ...


@dataclass(slots=True)
class TurnResult:
    """What one answer produced, collected from its events as they pass."""

    parts: list[str] = field(default_factory=list)
    sources: Sources | None = None
    tokens: int = 0
    guarded: list[str] = field(default_factory=list)  # guard events, e.g. "loops.cut"
    complete: bool = False

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, event: ReplyEvent) -> None:
        if isinstance(event, TextDelta):
            self.parts.append(event.text)
        elif isinstance(event, GuardAction):
            self.guarded.append(f"{event.guard}.{event.action}")
            if event.action == "restart":
                self.parts.clear()
            elif event.action == "cut":
                self.parts = [self.text[:event.keep]]
        elif isinstance(event, Usage):
            self.tokens += event.prompt_tokens + event.completion_tokens
        elif isinstance(event, Sources):
            self.sources = event


@dataclass(frozen=True, slots=True)
class Mode:
    level: str
    model: str
    show_steps: bool = False


@dataclass(frozen=True, slots=True)
class Question:
    """The last question of a chat, for `/retry`: its text, the stored messages it replaces, whether it was
    answered completely (then it is part of the history the retry must leave out)."""

    text: str
    message_ids: tuple[int, ...]
    complete: bool


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a turn reads from the database before it starts."""

    mode: Mode
    history: list[Turn]
    system_override: str | None  # an admin's system prompt, None for the prompts file's
    stored: StoredAnswer | None  # the answer stored for this update by an earlier run
    tokens_today: int  # this user's tokens today (read only when a quota is set)
    guards: ChatGuards = field(default_factory=ChatGuards)
    compare: tuple[Mode, Mode] | None = None  # the chat's side-by-side modes (`/compare`); None: one answer


@dataclass(slots=True)
class Withdrawal:
    """One /stop's reach over questions not answered yet: those of `user_id` (None: anyone's) before `before`."""

    before: int
    user_id: int | None
    dropped: int = 0  # questions dropped when they came up


class ChatService:
    def __init__(self, db: Database, brain: Brain, *, default_level: str, default_model: str,
                 max_input_chars: int = 8000, history_limit: int = 200,
                 rate_limit_per_minute: int = 0, daily_token_quota: int = 0, model_retries: int = 0,
                 max_concurrent_turns: int = 0, default_guards: ChatGuards | None = None) -> None:
        self.db, self.brain = db, brain
        self.default = Mode(default_level, default_model)
        self.default_guards = default_guards or ChatGuards()
        self.max_input_chars = max_input_chars
        self.history_limit = history_limit
        self.rate_limiter = RateLimiter(rate_limit_per_minute)
        self.daily_token_quota = daily_token_quota
        self.model_retries = model_retries
        self._running: dict[int, Stoppable] = {}
        self._askers: dict[int, int | None] = {}  # who asked the answer running in each chat
        # /stop before an answer began: the update whose answer last began in each chat; each /stop's withdrawal
        self._began: LRUCache[int, int] = LRUCache(_MAX_CHATS_REMEMBERED)
        self._withdrawals: LRUCache[tuple[int, int | None], Withdrawal] = LRUCache(_MAX_CHATS_REMEMBERED)
        # turns on models that do not queue their own work (0: no cap); local models have one worker that queues
        self.slots = TurnSlots(max_concurrent_turns) if max_concurrent_turns else None

    # --- mode ---------------------------------------------------------------------------------------
    def _mode_of(self, chat: Chat | repo.ChatMode | None) -> Mode:
        if chat is None:
            return self.default
        # a model that vanished (a deleted fine-tune) falls back to the default rather than failing every turn
        model = chat.model if chat.model in self.brain.models else self.default.model
        level = chat.level if chat.level in self.brain.levels else self.default.level
        return Mode(level, model, chat.show_steps)

    async def get_mode(self, chat_id: int) -> Mode:
        return self._mode_of(await self.db.run(lambda s: repo.get_chat(s, chat_id)))

    async def set_mode(self, chat_id: int, names: list[str]) -> Mode:
        """Apply `/mode` arguments; raises UnknownNameError (with the valid names) for a bad one and
        ModelUnavailableError (with the reason) for a model that cannot answer as configured."""
        current = await self.get_mode(chat_id)
        level, model = self.brain.parse_mode(names, current.level, current.model)
        if model != current.model and (reason := self.brain.models.get(model).unavailable_reason()):
            raise ModelUnavailableError(reason)
        await self.db.run(lambda s: repo.upsert_chat(s, chat_id, level=level, model=model))
        return Mode(level, model, current.show_steps)

    async def set_steps(self, chat_id: int, on: bool) -> None:
        current = await self.get_mode(chat_id)
        await self.db.run(lambda s: repo.upsert_chat(s, chat_id, level=current.level, model=current.model,
                                                     show_steps=on))

    # --- memory and prompts ---------------------------------------------------------------------------
    async def reset(self, chat_id: int) -> int:
        return await self.db.run(lambda s: repo.clear_history(s, chat_id))

    async def history(self, chat_id: int) -> list[Turn]:
        rows = await self.db.run(lambda s: repo.history(s, chat_id, self.history_limit))
        return [Turn(r.role, r.content) for r in rows]  # type: ignore[arg-type]

    async def system_prompt(self) -> tuple[str, bool]:
        """The system prompt in force and whether an admin replaced the default."""
        custom = await self.db.run(lambda s: repo.get_setting(s, SYSTEM_PROMPT_KEY))
        return (custom, True) if custom else (self.brain.prompts().system, False)

    async def set_system_prompt(self, text: str | None) -> None:
        await self.db.run(lambda s: repo.set_setting(s, SYSTEM_PROMPT_KEY, text.strip() if text else None))

    async def prepare(self, chat_id: int, *, user_id: int | None = None, update_id: int | None = None) -> Prepared:
        """Everything a turn reads from the database, in one unit of work."""

        def read(s: Connection) -> tuple[repo.ChatMode | None, str | None, Prepared]:
            stored = repo.stored_answer(s, chat_id, update_id) if update_id is not None else None
            quota = user_id is not None and self.daily_token_quota
            tokens = repo.tokens_of(s, user_id, self.today()) if quota else 0  # type: ignore[arg-type]
            chat = repo.turn_settings(s, chat_id, SYSTEM_PROMPT_KEY)
            settings = chat.guards
            return chat.mode, settings.compare if settings else None, Prepared(
                mode=self.default,  # resolved below, on the event loop: the model registry is not thread-safe
                history=[Turn(r.role, r.content) for r in repo.history(s, chat_id, self.history_limit)],  # type: ignore[arg-type]
                system_override=chat.system_prompt,
                stored=_stored(stored),
                tokens_today=tokens,
                guards=ChatGuards.of(settings, self.default_guards),
            )

        chat, compare, prepared = await self.db.run_core(read)
        return dataclasses.replace(prepared, mode=self._mode_of(chat), compare=self.compare_modes(compare))

    def compare_modes(self, stored: str | None) -> tuple[Mode, Mode] | None:
        """A chat's stored side-by-side modes ("LEVEL MODEL|LEVEL MODEL"); None when off or no longer valid (a
        deleted fine-tune: the chat goes back to one answer rather than failing every question)."""
        if not stored:
            return None
        modes = []
        for side in stored.split("|"):
            level, _, model = side.strip().partition(" ")
            if level not in self.brain.levels or model not in self.brain.models:
                return None
            modes.append(Mode(level, model))
        return (modes[0], modes[1]) if len(modes) == 2 else None

    # --- usage ---------------------------------------------------------------------------------------
    @staticmethod
    def today() -> str:
        return datetime.now(UTC).strftime("%Y-%m-%d")

    async def usage(self, user_id: int | None) -> list[tuple[int, int, int]]:
        """(user_id, messages, tokens) today: one user's, or everyone's when `user_id` is None."""
        day = self.today()

        def read(s: Session) -> list[tuple[int, int, int]]:
            if user_id is None:
                return [(u.user_id, u.messages, u.tokens) for u in repo.usage_all(s, day)]
            row = repo.usage_of(s, user_id, day)
            return [(user_id, row.messages if row else 0, row.tokens if row else 0)]

        return await self.db.run(read)

    def _check_limits(self, user_id: int | None, tokens_today: int) -> None:
        if user_id is None:
            return
        self.rate_limiter.check(user_id)
        if self.daily_token_quota and tokens_today >= self.daily_token_quota:
            raise ServiceError("quota_exceeded", quota=self.daily_token_quota)

    # --- turns ---------------------------------------------------------------------------------------
    def is_busy(self, chat_id: int) -> bool:
        return chat_id in self._running

    def asker(self, chat_id: int) -> int | None:
        """The user whose answer is running in this chat (None: nothing running, or nobody in particular)."""
        return self._askers.get(chat_id)

    def stop(self, chat_id: int) -> bool:
        """Cancel this chat's answer in progress; False when there is none."""
        run = self._running.get(chat_id)
        if run is None:
            return False
        run.cancel()
        if self.slots is not None:
            self.slots.interrupt(chat_id, TurnCancelled("stopped"))  # waiting for a slot: stop waiting
        return True

    def withdraw(self, chat_id: int, before: int, user_id: int | None) -> Withdrawal:
        """/stop: the questions of `user_id` (None: anyone's) in this chat received before update `before` whose
        answer has not begun are dropped unanswered when they come up (`drop_withdrawn`)."""
        withdrawal = Withdrawal(before, user_id)
        self._withdrawals[(chat_id, user_id)] = withdrawal
        return withdrawal

    def began(self, chat_id: int, update_id: int) -> bool:
        """Whether the answer to this update began (`drop_withdrawn` let it through)."""
        return self._began.get(chat_id) == update_id

    def drop_withdrawn(self, chat_id: int, update_id: int, user_id: int | None) -> bool:
        """Called where an answer begins: True (and counted) when a /stop withdrew this question; otherwise the
        answer is noted as begun. No await between the two: a /stop sees one or the other."""
        for key in ((chat_id, None), (chat_id, user_id)):
            withdrawal = self._withdrawals.get(key)
            if withdrawal is not None and update_id < withdrawal.before:
                withdrawal.dropped += 1
                return True
        self._began[chat_id] = update_id
        return False

    async def stored_answer(self, chat_id: int, update_id: int) -> StoredAnswer | None:
        """The answer stored for an update, if its turn ran to an end before (a re-run after a crash)."""
        return _stored(await self.db.run(lambda s: repo.stored_answer(s, chat_id, update_id)))

    async def reply(self, chat_id: int, text: str, *, user_id: int | None = None, update_id: int | None = None,
                    prepared: Prepared | None = None, lang: str = "en",
                    retry: Question | None = None) -> AsyncIterator[ReplyEvent]:
        """Answer `text` in this chat's mode, yielding reply events.

        The user turn and the answer are stored together once the answer is complete; an answer that fails
        or is stopped half-way is stored marked incomplete, so it never reaches the model as a real turn.
        A model call that fails before it produced anything is tried again (`model_retries`); a timeout is not
        (the user hears about it within the timeout). A turn abandoned by its caller (cancelled at shutdown) is
        not stored at all: its update runs again after the restart. `prepared` is what `prepare()` read, when the
        caller has it already.

        The chat's guards watch the answer: one cut for a loop is stored incomplete; each guard event is counted
        for the mode. `retry`: the question asked again (`/retry`); the new answer replaces the stored one.
        """
        if prepared is None:
            self._validate(chat_id, text)  # before reading the database: a refusal costs nothing
            prepared = await self.prepare(chat_id, user_id=user_id)
        text = self.admit(chat_id, text, user_id, prepared)
        mode, history = prepared.mode, prepared.history
        if retry is not None and retry.complete:
            history = history[:-2]  # the answer being replaced is no part of what the model sees
        replaces = retry.message_ids if retry is not None else ()

        def register(run: TurnRun | None) -> None:
            if run is None:
                self.release(chat_id)
            else:
                self.claim(chat_id, run, user_id)

        async def ended(result: TurnResult) -> None:
            await self._store(chat_id, mode, text, result.text, result.complete, update_id, user_id, result.tokens,
                              result.sources, result.guarded, replaces)

        attempts = self.turn_attempts(chat_id, mode, history, text, prepared=prepared, lang=lang,
                                      retry=retry is not None, update_id=update_id, register=register, ended=ended)
        async with contextlib.aclosing(attempts) as events:
            async for event in events:
                yield event

    def _validate(self, chat_id: int, text: str) -> str:
        text = text.strip()
        if not text:
            raise ServiceError("empty_input")
        if len(text) > self.max_input_chars:
            raise ServiceError("input_too_long", limit=self.max_input_chars, got=len(text))
        if chat_id in self._running:
            raise ServiceError("busy")
        return text

    def admit(self, chat_id: int, text: str, user_id: int | None, prepared: Prepared) -> str:
        """The question, stripped, if this chat and user may ask it now; raises ServiceError (empty, too long,
        busy, rate limited, over quota). Counts one message against the user's rate limit."""
        text = self._validate(chat_id, text)
        self._check_limits(user_id, prepared.tokens_today)
        return text

    def claim(self, chat_id: int, run: Stoppable, user_id: int | None) -> None:
        """Note the answer running in a chat (what /stop cancels, what makes the chat busy)."""
        self._running[chat_id], self._askers[chat_id] = run, user_id

    def release(self, chat_id: int) -> None:
        self._running.pop(chat_id, None)
        self._askers.pop(chat_id, None)

    async def turn_attempts(self, chat_id: int, mode: Mode, history: list[Turn], text: str, *, prepared: Prepared,
                            lang: str, retry: bool, update_id: int | None,
                            register: Callable[[TurnRun | None], None],
                            ended: Callable[[TurnResult], Awaitable[None]],
                            slot_key: Hashable | None = None) -> AsyncIterator[ReplyEvent]:
        """One answer of `mode`, yielding its events: tried again when the model failed before any output, under
        the cap on concurrent turns (waiting as `slot_key`, the chat by default), with the chat's guards.

        `register(run)` is told of each attempt's run (None when it ends); `ended(result)` gets what an attempt
        produced once it ended for good (complete, cut or failed; not when abandoned or about to be tried again).
        """
        guards = prepared.guards.config(text, lang)
        attempt = 0
        while True:
            run = self.brain.start_turn(level=mode.level, model=mode.model, history=history, text=text,
                                        system_override=prepared.system_override, lang=lang, guards=guards,
                                        retry=retry)
            register(run)
            result = TurnResult()
            events = 0
            outcome = "failed"
            capped = self.slots if self.slots is not None and not self._queues_itself(mode.model) else None
            holding = False
            try:
                if capped is not None:  # /stop while waiting: TurnCancelled, as when it stops a running turn
                    await capped.acquire(update_id if update_id is not None else float("inf"),
                                         chat_id if slot_key is None else slot_key)
                    holding = True
                async with contextlib.aclosing(run.__aiter__()) as stream:  # closed here, even when abandoned
                    async for event in stream:
                        result.add(event)
                        events += 1
                        yield event
                outcome = "cut" if "loops.cut" in result.guarded else "complete"
            except ModelCallError as exc:
                if events or isinstance(exc, ModelTimeoutError) or attempt >= self.model_retries:
                    raise
                log.info("model call in chat %s failed before any output (%s); trying again", chat_id, exc)
                outcome = "retry"
            except (asyncio.CancelledError, GeneratorExit):
                outcome = "abandoned"
                raise
            finally:
                register(None)
                if holding and capped is not None:
                    capped.release()
                if outcome in ("complete", "cut", "failed"):
                    result.complete = outcome == "complete"
                    # shielded: a cancelled handler must still record what happened
                    await asyncio.shield(ended(result))
            if outcome in ("complete", "cut"):
                return
            attempt += 1

    def _queues_itself(self, model: str) -> bool:
        """A model whose one worker serves every chat in turn (local llama.cpp) needs no cap of ours."""
        return model in self.brain.models and self.brain.models.get(model).shared_worker

    async def _store(self, chat_id: int, mode: Mode, text: str, answer: str, complete: bool,
                     update_id: int | None, user_id: int | None, tokens: int, sources: Sources | None = None,
                     guarded: list[str] | None = None, replaces: tuple[int, ...] = ()) -> None:
        complete = complete and bool(answer.strip())
        day = self.today()
        # the sources go with the answer: a run after a crash delivers the answer as the first run would have
        cited = json.dumps([dataclasses.asdict(s) for s in sources.items], ensure_ascii=False) if sources else None
        common = dict(chat_id=chat_id, complete=complete, update_id=update_id, level=mode.level, model=mode.model)
        rows: list[dict[str, object]] = [dict(common, role="user", content=text, sources=None),
                                         dict(common, role="assistant", content=answer, sources=cited)]

        def write(s: Connection) -> None:
            repo.add_turn(s, rows)
            if complete:  # a retry that failed leaves the earlier answer where it was
                repo.delete_messages(s, replaces)
            if guarded:
                repo.count_guard_events(s, mode.level, mode.model, guarded)
            if user_id is not None:
                repo.add_usage(s, user_id, day, messages=1, tokens=tokens)

        await self.db.run_core(write)

    async def add_usage(self, user_id: int, *, tokens: int, messages: int = 0) -> None:
        """Count tokens spent outside a chat turn (an evaluation) for the user who asked for them."""
        day = self.today()
        await self.db.run(lambda s: repo.add_usage(s, user_id, day, messages=messages, tokens=tokens))

    # --- guards, /lang and /retry --------------------------------------------------------------------
    async def guards(self, chat_id: int) -> ChatGuards:
        return ChatGuards.of(await self.db.run(lambda s: repo.chat_settings(s, chat_id)), self.default_guards)

    async def set_guard(self, chat_id: int, name: str, on: bool) -> ChatGuards:
        """Switch one guard (`loops`, `language`, `numbers`) for this chat; ServiceError("guard_unknown")."""
        name = name.strip().lower()
        if name not in GUARDS:
            raise ServiceError("guard_unknown", name=name, names=", ".join(GUARDS))
        return ChatGuards.of(await self.db.run(
            lambda s: repo.update_chat_settings(s, chat_id, self._guard_row(), **{f"guard_{name}": on})))

    async def set_lang(self, chat_id: int, value: str) -> ChatGuards:
        """`/lang ru|en|auto`: the language this chat's answers must be in; ServiceError("lang_usage")."""
        value = value.strip().lower()
        if value not in LANGS:
            raise ServiceError("lang_usage")
        lang = None if value == "auto" else value
        row = self._guard_row()
        return ChatGuards.of(await self.db.run(lambda s: repo.update_chat_settings(s, chat_id, row, lang=lang)))

    def _guard_row(self) -> dict[str, object]:
        d = self.default_guards
        return {"guard_loops": d.loops, "guard_language": d.language, "guard_numbers": d.numbers, "lang": None}

    async def guard_counts(self) -> list[tuple[str, str, str, int]]:
        """(level, model, event, count) for every guard event counted so far ("loops.cut", "numbers.marked")."""
        rows = await self.db.run(repo.guard_events)
        return [(r.level, r.model, r.event, r.count) for r in rows]

    async def last_question(self, chat_id: int) -> Question | None:
        """The question `/retry` answers again; None when the chat has none."""

        def read(s: Session) -> Question | None:
            found = repo.last_question(s, chat_id)
            if found is None:
                return None
            user, answer = found
            ids = (user.id,) if answer is None else (user.id, answer.id)
            return Question(user.content, ids, user.complete and answer is not None and answer.complete)

        return await self.db.run(read)
