"""Side by side (`/compare`): each question answered by two modes at once, shown as "A" and "B" in random order.

People vote under the answers; the votes rate the modes (`/leaderboard`) and decide which answer the chat's memory
keeps (the one with more "is better" votes; on a tie or before any vote, answer A). No aiogram here: an adapter
shows each side through a `SideView`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from agents.errors import ModelUnavailableError
from agents.runtime import TurnCancelled, TurnRun
from agents.types import ReplyEvent
from bot.service import ChatService, Mode, Prepared, ServiceError, TurnResult
from bot.storage import repo

# the vote buttons' callback data is "v:<compare id>:<code>": short (Telegram keeps 64 bytes), no mode names
VOTE_PREFIX = "v"
VOTE_CODES = {"a": "a", "b": "b", "t": "tie", "x": "both_bad"}
LABELS = ("A", "B")


class SideView(Protocol):
    """Where one side's answer is shown while it is generated."""

    async def feed(self, event: ReplyEvent) -> None: ...

    async def end(self, error: Exception | None) -> None:
        """The side is over: complete (`error` None), stopped or failed."""


@dataclass(frozen=True)
class Compared:
    """A side-by-side question after both answers ended; `compare_id` None when one side did not complete
    (nothing to vote on)."""

    compare_id: int | None
    modes: tuple[Mode, Mode]  # as shown: A, B
    results: tuple[TurnResult, TurnResult]


@dataclass(frozen=True)
class VoteOutcome:
    compare_id: int
    vote: str  # a | b | tie | both_bad
    tally: dict[str, int]
    modes: tuple[Mode, Mode]  # A, B
    shown: dict[str, Any]  # what the adapter noted when it showed the answers (see `CompareService.note_shown`)


@dataclass(frozen=True)
class StoredComparison:
    """A comparison as stored: what showing it again needs."""

    compare_id: int
    modes: tuple[Mode, Mode]  # A, B
    answers: tuple[str, str]  # A, B
    shown: bool  # its answers were shown with the vote buttons


class _Pair:
    """Both answers of one question, as /stop sees them: one cancel stops both, even one not started yet."""

    def __init__(self, chat: ChatService, chat_id: int) -> None:
        self.chat, self.chat_id = chat, chat_id
        self.runs: dict[int, TurnRun] = {}
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        for run in list(self.runs.values()):
            run.cancel()
        if self.chat.slots is not None:  # a side waiting for a slot stops waiting
            for side in range(2):
                self.chat.slots.interrupt((self.chat_id, side), TurnCancelled("stopped"))

    def register(self, side: int) -> Callable[[TurnRun | None], None]:
        def register(run: TurnRun | None) -> None:
            if run is None:
                self.runs.pop(side, None)
                return
            self.runs[side] = run
            if self.cancelled:  # a retry started after /stop
                run.cancel()

        return register


def vote_data(compare_id: int, code: str) -> str:
    return f"{VOTE_PREFIX}:{compare_id}:{code}"


def parse_vote_data(data: str) -> tuple[int, str] | None:
    prefix, _, rest = data.partition(":")
    compare_id, _, code = rest.partition(":")
    parsed = repo.parse_id(compare_id)  # a forged id a column cannot hold would fail the query
    if prefix != VOTE_PREFIX or parsed is None or code not in VOTE_CODES:
        return None
    return parsed, code


class CompareService:
    def __init__(self, chat: ChatService, rng: random.Random | None = None) -> None:
        self.chat = chat
        self.rng = rng or random.Random()  # which mode is shown as A; a test seeds it

    # --- the chat's compare mode ---------------------------------------------------------------------
    def parse(self, args: str, current: Mode) -> tuple[Mode, Mode]:
        """`/compare` arguments ("MODE | MODE", each what /mode takes, applied to the current mode) as two modes;
        raises UnknownNameError, ModelUnavailableError, ServiceError("compare_usage" | "compare_same")."""
        brain = self.chat.brain
        sides = [side.split() for side in args.split("|")]
        if len(sides) != 2 or not all(sides):
            raise ServiceError("compare_usage")
        modes = []
        for names in sides:
            level, model = brain.parse_mode(names, current.level, current.model)
            if reason := brain.models.get(model).unavailable_reason():
                raise ModelUnavailableError(reason)
            modes.append(Mode(level, model))
        if modes[0] == modes[1]:
            raise ServiceError("compare_same")
        return modes[0], modes[1]

    async def get(self, chat_id: int) -> tuple[Mode, Mode] | None:
        row = await self.chat.db.run(lambda s: repo.chat_settings(s, chat_id))
        return self.chat.compare_modes(row.compare if row else None)

    async def set(self, chat_id: int, modes: tuple[Mode, Mode] | None) -> None:
        """Put the chat in compare mode (None: leave it); kept across restarts."""
        value = "|".join(f"{m.level} {m.model}" for m in modes) if modes else None
        defaults = self.chat._guard_row()
        await self.chat.db.run(lambda s: repo.update_chat_settings(s, chat_id, defaults, compare=value))

    def order(self, modes: tuple[Mode, Mode]) -> tuple[Mode, Mode]:
        """The modes as shown (A, B): a coin toss, so that people do not know which is which."""
        return (modes[1], modes[0]) if self.rng.random() < 0.5 else modes

    # --- one question --------------------------------------------------------------------------------
    async def run(self, chat_id: int, text: str, modes: tuple[Mode, Mode], views: Sequence[SideView], *,
                  prepared: Prepared, user_id: int | None, update_id: int | None, lang: str) -> Compared:
        """Answer `text` (already through `ChatService.admit`) in both modes at once, each streamed to its view.

        Stored together once both ended: the question and one answer in the chat's memory (A; B when A did not
        complete), the comparison with the chat's history and system prompt (when both completed), each mode's
        guard events and the tokens of both. /stop stops both. Abandoned (shutdown): nothing is stored.
        """
        chat = self.chat
        if chat.is_busy(chat_id):
            raise ServiceError("busy")
        pair = _Pair(chat, chat_id)
        chat.claim(chat_id, pair, user_id)
        results = [TurnResult(), TurnResult()]

        async def side(i: int) -> None:
            async def ended(result: TurnResult) -> None:
                results[i] = result

            attempts = chat.turn_attempts(chat_id, modes[i], prepared.history, text, prepared=prepared, lang=lang,
                                          retry=False, update_id=update_id, register=pair.register(i),
                                          ended=ended, slot_key=(chat_id, i))
            error: Exception | None = None
            try:
                async with contextlib.aclosing(attempts) as events:
                    async for event in events:
                        await views[i].feed(event)
            except Exception as exc:  # noqa: BLE001 - the view says what it means (a stop, a model failure, a bug)
                error = exc
            await views[i].end(error)

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(side(0))
                group.create_task(side(1))
        finally:
            chat.release(chat_id)
        system = prepared.system_override or chat.brain.prompts().system
        compare_id = await chat.db.run(lambda s: self._store(s, chat_id, text, modes, results, prepared, system,
                                                             user_id, update_id))
        return Compared(compare_id, modes, (results[0], results[1]))

    def _store(self, s: Session, chat_id: int, text: str, modes: tuple[Mode, Mode], results: list[TurnResult],
               prepared: Prepared, system: str, user_id: int | None, update_id: int | None) -> int | None:
        kept = 1 if not results[0].complete and results[1].complete else 0
        mode, answer = modes[kept], results[kept]
        common = dict(chat_id=chat_id, complete=answer.complete and bool(answer.text.strip()), update_id=update_id,
                      level=mode.level, model=mode.model)
        _, memory_id = repo.add_messages(s, [dict(common, role="user", content=text),
                                             dict(common, role="assistant", content=answer.text)])
        for m, result in zip(modes, results, strict=True):
            if result.guarded:
                repo.count_guard_events(s, m.level, m.model, result.guarded)
        if user_id is not None:
            repo.add_usage(s, user_id, self.chat.today(), messages=1, tokens=sum(r.tokens for r in results))
        if not all(r.complete and r.text.strip() for r in results):
            return None
        compare_id = repo.add_comparison(
            s, chat_id=chat_id, question=text, history=[{"role": t.role, "content": t.content}
                                                        for t in prepared.history],
            system_prompt=system, mode_a=(modes[0].level, modes[0].model), answer_a=results[0].text,
            mode_b=(modes[1].level, modes[1].model), answer_b=results[1].text)
        repo.link_comparison(s, compare_id, memory_id=memory_id)
        return compare_id

    async def of_update(self, chat_id: int, update_id: int) -> StoredComparison | None:
        """The comparison stored for a compare-mode question (its update), if both answers were stored."""

        def read(s: Session) -> StoredComparison | None:
            c = repo.comparison_of_update(s, chat_id, update_id)
            if c is None:
                return None
            return StoredComparison(c.id, (Mode(c.level_a, c.model_a), Mode(c.level_b, c.model_b)),
                                    (c.answer_a, c.answer_b), c.shown is not None)

        return await self.chat.db.run(read)

    async def note_shown(self, compare_id: int, shown: dict[str, Any]) -> None:
        """Remember how the adapter showed the answers (message ids, first parts), to reveal the modes later."""
        data = json.dumps(shown, ensure_ascii=False)
        await self.chat.db.run(lambda s: repo.link_comparison(s, compare_id, shown=data))

    # --- votes ---------------------------------------------------------------------------------------
    async def vote(self, compare_id: int, chat_id: int, voter: int, code: str) -> VoteOutcome:
        """Record `voter`'s verdict (a second one replaces the first) and let the memory keep the answer most
        people preferred; raises repo.InvalidVerdict for an unknown code or a comparison not of this chat."""
        vote = VOTE_CODES.get(code)
        if vote is None:
            raise repo.InvalidVerdict(f"unknown vote code {code!r}")

        def write(s: Session) -> VoteOutcome:
            c = repo.get_comparison(s, compare_id)
            if c is None or c.chat_id != chat_id:
                raise repo.InvalidVerdict(f"no comparison {compare_id} in this chat")
            repo.record_vote(s, compare_id, voter, vote)
            tally = repo.vote_tally(s, compare_id)
            winner = "b" if tally["b"] > tally["a"] else "a"
            memory = repo.comparison_memory(s, c)
            if memory is not None:
                repo.keep_answer(s, memory.id, getattr(c, f"answer_{winner}"), getattr(c, f"level_{winner}"),
                                 getattr(c, f"model_{winner}"))
            return VoteOutcome(compare_id, vote, tally, (Mode(c.level_a, c.model_a), Mode(c.level_b, c.model_b)),
                               json.loads(c.shown) if c.shown else {})

        return await self.chat.db.run(write)
