"""Queries, one small function each, over a session the caller owns (inside `Database.run`).

Over 400 lines on purpose: every SQL statement of the bot in one place, one section per table, so a schema change
is reviewed in one file.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, bindparam, delete, func, select, tuple_
from sqlalchemy import insert as insert_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.storage.models import (
    AnswerPart,
    Chat,
    ChatSettings,
    Comparison,
    Delivery,
    Feedback,
    GuardEvent,
    Message,
    Setting,
    Usage,
    Vote,
    utcnow,
)

# What a function that only executes Core statements takes: a session, or a connection (`Database.run_core`).
Conn = Session | Connection


def get_chat(session: Session, chat_id: int) -> Chat | None:
    return session.get(Chat, chat_id)


def upsert_chat(session: Session, chat_id: int, *, level: str, model: str,
                      show_steps: bool | None = None) -> Chat:
    chat = session.get(Chat, chat_id)
    if chat is None:
        chat = Chat(id=chat_id, level=level, model=model, show_steps=bool(show_steps))
        session.add(chat)
    else:
        chat.level, chat.model = level, model
        if show_steps is not None:
            chat.show_steps = show_steps
    return chat


class HistoryRow(NamedTuple):
    role: str
    content: str


_MESSAGES = Message.__table__
# Statements of every answered message, built once with bound parameters: building, hashing and (for a VALUES list)
# compiling a statement per call, and the ORM's bulk paths, cost more than the SQL itself (bench/bench_bot.py).
_HISTORY = (select(_MESSAGES.c.role, _MESSAGES.c.content)
            .where(_MESSAGES.c.chat_id == bindparam("chat_id"), _MESSAGES.c.complete.is_(True))
            .order_by(_MESSAGES.c.id.desc()).limit(bindparam("limit")))


def history(session: Conn, chat_id: int, limit: int = 200) -> list[HistoryRow]:
    """The last `limit` complete turns, oldest first: (role, content)."""
    rows = session.execute(_HISTORY, {"chat_id": chat_id, "limit": limit}).all()
    return [HistoryRow(role, content) for role, content in reversed(rows)]


def all_messages(session: Session, chat_id: int) -> Sequence[Message]:
    rows = session.scalars(select(Message).where(Message.chat_id == chat_id).order_by(Message.id))
    return list(rows)


class StoredRow(NamedTuple):
    id: int
    content: str
    complete: bool
    sources: str | None


_STORED = (select(_MESSAGES.c.id, _MESSAGES.c.content, _MESSAGES.c.complete, _MESSAGES.c.sources)
           .where(_MESSAGES.c.chat_id == bindparam("chat_id"), _MESSAGES.c.update_id == bindparam("update_id"),
                  _MESSAGES.c.role == "assistant")
           .order_by(_MESSAGES.c.id).limit(1))


def stored_answer(session: Conn, chat_id: int, update_id: int) -> StoredRow | None:
    """The assistant turn stored for an update, if any (a re-run must not answer twice)."""
    row = session.execute(_STORED, {"chat_id": chat_id, "update_id": update_id}).first()
    return None if row is None else StoredRow(*row)


def clear_history(session: Session, chat_id: int) -> int:
    session.execute(delete(AnswerPart).where(AnswerPart.chat_id == chat_id))  # they show answers now forgotten
    # verdicts on the forgotten answers go with them: SQLite gives their ids to the next messages, which would
    # inherit them (and the dataset export would credit a 👍/👎 to an answer nobody rated)
    session.execute(delete(Feedback).where(Feedback.chat_id == chat_id))
    result = session.execute(delete(Message).where(Message.chat_id == chat_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


class ChatMode(NamedTuple):
    level: str
    model: str
    show_steps: bool


class GuardRow(NamedTuple):
    guard_loops: bool
    guard_language: bool
    guard_numbers: bool
    lang: str | None
    compare: str | None


class TurnSettings(NamedTuple):
    """What a turn reads of its chat's settings (None: no row, the defaults) and the custom system prompt."""

    mode: ChatMode | None
    guards: GuardRow | None
    system_prompt: str | None


_CHATS, _CHAT_SETTINGS, _SETTINGS = Chat.__table__, ChatSettings.__table__, Setting.__table__
_CHAT_MODE = select(_CHATS.c.level, _CHATS.c.model, _CHATS.c.show_steps).where(_CHATS.c.id == bindparam("chat_id"))
_CHAT_GUARDS = (select(_CHAT_SETTINGS.c.guard_loops, _CHAT_SETTINGS.c.guard_language, _CHAT_SETTINGS.c.guard_numbers,
                       _CHAT_SETTINGS.c.lang, _CHAT_SETTINGS.c["compare"])  # .compare: a method of .c
                .where(_CHAT_SETTINGS.c.chat_id == bindparam("chat_id")))
_SETTING_VALUE = select(_SETTINGS.c.value).where(_SETTINGS.c.key == bindparam("key"))


def turn_settings(session: Conn, chat_id: int, prompt_key: str) -> TurnSettings:
    """A chat's mode and guard settings and the setting `prompt_key`, as plain rows (no ORM objects: this runs for
    every question)."""
    mode = session.execute(_CHAT_MODE, {"chat_id": chat_id}).first()
    guards = session.execute(_CHAT_GUARDS, {"chat_id": chat_id}).first()
    return TurnSettings(None if mode is None else ChatMode(*mode), None if guards is None else GuardRow(*guards),
                        get_setting(session, prompt_key))


def get_setting(session: Conn, key: str) -> str | None:
    return session.execute(_SETTING_VALUE, {"key": key}).scalar()


def set_setting(session: Session, key: str, value: str | None) -> None:
    row = session.get(Setting, key)
    if value is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value


@functools.cache
def _add_usage(dialect: str):  # type: ignore[no-untyped-def]
    usage = Usage.__table__
    stmt = _insert(dialect)(usage)
    return stmt.on_conflict_do_update(
        index_elements=[usage.c.user_id, usage.c.day],
        set_={"messages": usage.c.messages + stmt.excluded.messages, "tokens": usage.c.tokens + stmt.excluded.tokens})


def add_usage(session: Conn, user_id: int, day: str, *, messages: int, tokens: int) -> None:
    """Add to a user's count for the day: one upsert, safe when several processes count at once."""
    session.execute(_add_usage(_dialect(session)), {"user_id": user_id, "day": day, "messages": messages,
                                                    "tokens": tokens})


def add_turn(session: Conn, rows: list[dict[str, object]]) -> None:
    """Store a turn's messages (dicts of Message columns) in one statement."""
    session.execute(insert_(_MESSAGES), rows)


def get_delivery(session: Session, update_id: int) -> Delivery | None:
    return session.get(Delivery, update_id)


@functools.cache
def _record_delivery(dialect: str):  # type: ignore[no-untyped-def]
    delivery = Delivery.__table__
    stmt = _insert(dialect)(delivery)
    return stmt.on_conflict_do_update(index_elements=[delivery.c.update_id], set_={"sent": stmt.excluded.sent})


def record_delivery(session: Conn, update_id: int, chat_id: int, parts: str, sent: str) -> None:
    """Store an answer's parts (the first time) and the ids of its parts delivered so far."""
    session.execute(_record_delivery(_dialect(session)), {"update_id": update_id, "chat_id": chat_id,
                                                          "parts": parts, "sent": sent})


def usage_of(session: Session, user_id: int, day: str) -> Usage | None:
    return session.get(Usage, (user_id, day))


_USAGE = Usage.__table__
_TOKENS = select(_USAGE.c.tokens).where(_USAGE.c.user_id == bindparam("user_id"), _USAGE.c.day == bindparam("day"))


def tokens_of(session: Conn, user_id: int, day: str) -> int:
    """The tokens a user spent on a day (0: none yet)."""
    return int(session.execute(_TOKENS, {"user_id": user_id, "day": day}).scalar() or 0)


def usage_all(session: Session, day: str) -> list[Usage]:
    rows = session.scalars(select(Usage).where(Usage.day == day).order_by(Usage.tokens.desc()))
    return list(rows)


# --- comparisons, votes and feedback ----------------------------------------------------------------------------

VOTES = ("a", "b", "tie", "both_bad")
FEEDBACK_RATINGS = ("up", "down")
FEEDBACK_REASONS = ("wrong_facts", "wrong_language", "ignored_instructions", "too_long", "other")
FEEDBACK_SOURCES = ("button", "reaction", "correction")
SEASON_KEY = "leaderboard_season"


INT_MAX, BIGINT_MAX = 2**31 - 1, 2**63 - 1  # the largest ids an Integer / BigInteger column holds


def parse_id(text: str, limit: int = INT_MAX) -> int | None:
    """An id a client sent (callback data, a command's argument): ASCII digits, at most `limit`; None otherwise."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(limit)):
        return None
    value = int(text)
    return value if value <= limit else None


class InvalidVerdict(ValueError):
    """A vote or feedback that cannot be stored as given (unknown value, no such comparison or answer)."""


def _dialect(session: Conn) -> str:
    return session.dialect.name if isinstance(session, Connection) else session.get_bind().dialect.name


def _insert(dialect: str):  # type: ignore[no-untyped-def]
    """The dialect's INSERT, which has ON CONFLICT."""
    return pg_insert if dialect == "postgresql" else sqlite_insert


def _upsert(session: Conn):  # type: ignore[no-untyped-def]
    return _insert(_dialect(session))


def add_comparison(session: Session, *, chat_id: int, question: str, history: Sequence[dict[str, str]],
                   system_prompt: str | None, mode_a: tuple[str, str], answer_a: str,
                   mode_b: tuple[str, str], answer_b: str) -> int:
    """Store a side-by-side answer (modes as (level, model), history as role/content dicts); its id."""
    row = Comparison(chat_id=chat_id, question=question, system_prompt=system_prompt or None,
                     history=json.dumps([{"role": m["role"], "content": m["content"]} for m in history],
                                        ensure_ascii=False),
                     level_a=mode_a[0], model_a=mode_a[1], answer_a=answer_a,
                     level_b=mode_b[0], model_b=mode_b[1], answer_b=answer_b)
    session.add(row)
    session.flush()
    return row.id


def get_comparison(session: Session, compare_id: int) -> Comparison | None:
    return session.get(Comparison, compare_id)


def add_messages(session: Session, rows: list[dict[str, object]]) -> list[int]:
    """Store messages (dicts of Message columns) and return their ids, in order."""
    messages = [Message(**row) for row in rows]
    session.add_all(messages)
    session.flush()
    return [m.id for m in messages]


def link_comparison(session: Session, compare_id: int, *, memory_id: int | None = None,
                    shown: str | None = None) -> None:
    """Note which stored answer the chat's memory keeps for a comparison, and how it is shown (JSON)."""
    row = session.get(Comparison, compare_id)
    if row is None:
        raise InvalidVerdict(f"no comparison {compare_id}")
    if memory_id is not None:
        row.memory_id = memory_id
    if shown is not None:
        row.shown = shown


def comparison_memory(session: Session, comparison: Comparison) -> Message | None:
    """The stored answer the chat's memory keeps for a comparison; None once it is gone (/reset, /retry) or a
    person replaced it (/fix). SQLite gives a deleted row's id to the next message, of any chat: not that one."""
    if comparison.memory_id is None:
        return None
    message = session.get(Message, comparison.memory_id)
    if message is None or message.chat_id != comparison.chat_id or message.role != "assistant" \
            or message.content not in (comparison.answer_a, comparison.answer_b):
        return None
    return message


def comparison_of_update(session: Session, chat_id: int, update_id: int) -> Comparison | None:
    """The comparison whose answer the chat's memory keeps for an update (a compare-mode question), if any."""
    answer = stored_answer(session, chat_id, update_id)
    if answer is None:
        return None
    for comparison in session.scalars(select(Comparison).where(Comparison.memory_id == answer.id,
                                                               Comparison.chat_id == chat_id)):
        memory = comparison_memory(session, comparison)
        if memory is not None and memory.id == answer.id:
            return comparison
    return None


def keep_answer(session: Session, message_id: int, content: str, level: str, model: str) -> None:
    """Make a stored answer another one (the side-by-side winner): the chat's memory keeps this text and mode."""
    message = session.get(Message, message_id)
    if message is not None and message.role == "assistant":
        message.content, message.level, message.model, message.complete = content, level, model, True


def current_season(session: Session) -> int:
    value = get_setting(session, SEASON_KEY)
    return int(value) if value else 1


def new_season(session: Session) -> int:
    """Start a new leaderboard season (votes are kept; the leaderboard counts the current season's)."""
    season = current_season(session) + 1
    set_setting(session, SEASON_KEY, str(season))
    return season


def record_vote(session: Session, compare_id: int, voter: int, vote: str) -> None:
    """Store a voter's verdict on a comparison; a second vote by the same person replaces the first."""
    if vote not in VOTES:
        raise InvalidVerdict(f"unknown vote {vote!r} (expected one of {', '.join(VOTES)})")
    if session.get(Comparison, compare_id) is None:
        raise InvalidVerdict(f"no comparison {compare_id}")
    season, now = current_season(session), utcnow()
    stmt = _upsert(session)(Vote).values(compare_id=compare_id, voter=voter, vote=vote, season=season,
                                         created_at=now)
    session.execute(stmt.on_conflict_do_update(index_elements=[Vote.compare_id, Vote.voter],
                                               set_={"vote": vote, "season": season, "created_at": now}))


def vote_tally(session: Session, compare_id: int) -> dict[str, int]:
    """How many people chose each verdict on one comparison (for the buttons' counters)."""
    rows = session.execute(select(Vote.vote, func.count()).where(Vote.compare_id == compare_id).group_by(Vote.vote))
    tally = dict.fromkeys(VOTES, 0)
    tally.update({vote: int(n) for vote, n in rows})
    return tally


def record_feedback(session: Session, message_id: int, user_id: int, *, rating: str, source: str,
                    reason: str | None = None, correction: str | None = None,
                    system_prompt: str | None = None, original: str | None = None) -> None:
    """Store 👍/👎 (or a correction) on a stored assistant message; the same person's next one replaces it.

    A correction (source "correction") is a 👎 with the corrected text; it is kept beside the person's 👍/👎.
    """
    if rating not in FEEDBACK_RATINGS:
        raise InvalidVerdict(f"unknown rating {rating!r} (expected up or down)")
    if source not in FEEDBACK_SOURCES:
        raise InvalidVerdict(f"unknown source {source!r} (expected one of {', '.join(FEEDBACK_SOURCES)})")
    if reason is not None and reason not in FEEDBACK_REASONS:
        raise InvalidVerdict(f"unknown reason {reason!r} (expected one of {', '.join(FEEDBACK_REASONS)})")
    kind = "correction" if source == "correction" else "rating"
    if kind == "correction" and not (correction and correction.strip()):
        raise InvalidVerdict("a correction needs the corrected text")
    if kind == "correction":
        rating = "down"
    message = session.get(Message, message_id)
    if message is None or message.role != "assistant":
        raise InvalidVerdict(f"no stored answer {message_id}")
    values = dict(message_id=message_id, chat_id=message.chat_id, user_id=user_id, kind=kind, rating=rating,
                  reason=reason, source=source, correction=correction.strip() if correction else None,
                  original=original, level=message.level, model=message.model, system_prompt=system_prompt or None,
                  created_at=utcnow())
    stmt = _upsert(session)(Feedback).values(**values)
    changed = {k: v for k, v in values.items() if k not in ("message_id", "user_id", "kind", "chat_id")}
    session.execute(stmt.on_conflict_do_update(
        index_elements=[Feedback.message_id, Feedback.user_id, Feedback.kind], set_=changed))


def remove_feedback(session: Session, message_id: int, user_id: int, *, source: str) -> bool:
    """Forget a person's 👍/👎 on an answer if it came from `source` (a reaction taken back); whether one went."""
    result = session.execute(delete(Feedback).where(
        Feedback.message_id == message_id, Feedback.user_id == user_id, Feedback.kind == "rating",
        Feedback.source == source))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def correct_answer(session: Session, message_id: int, text: str) -> str:
    """Replace a stored answer's text in the chat's memory (a /fix); the model's own original text.

    The turn becomes part of the memory even if it was stopped or cut: a person vouched for the answer now.
    """
    message = session.get(Message, message_id)
    if message is None or message.role != "assistant":
        raise InvalidVerdict(f"no stored answer {message_id}")
    # an answer corrected before keeps the model's text in its first correction
    original = session.scalar(select(Feedback.original).where(
        Feedback.message_id == message_id, Feedback.kind == "correction", Feedback.original.is_not(None))
        .order_by(Feedback.id).limit(1)) or message.content
    question = session.scalar(select(Message).where(
        Message.chat_id == message.chat_id, Message.id < message.id, Message.role == "user")
        .order_by(Message.id.desc()).limit(1))
    if question is not None and question.update_id == message.update_id:
        question.complete = True
    message.content, message.complete = text, True
    return original


def link_answer_parts(session: Conn, chat_id: int, update_id: int, telegram_ids: Sequence[int]) -> None:
    """Remember which Telegram messages show the answer stored for an update (ids 0, unknown, are skipped)."""
    known = [i for i in telegram_ids if i]
    if not known:
        return
    session.execute(_link_answer_parts(_dialect(session)),
                    [dict(chat_id=chat_id, telegram_id=i, update_id=update_id) for i in known])


@functools.cache
def _link_answer_parts(dialect: str):  # type: ignore[no-untyped-def]
    part = AnswerPart.__table__
    stmt = _insert(dialect)(part)
    return stmt.on_conflict_do_update(index_elements=[part.c.chat_id, part.c.telegram_id],
                                      set_={"update_id": stmt.excluded.update_id})


def answer_of_part(session: Conn, chat_id: int, telegram_id: int) -> StoredRow | None:
    """The stored answer a Telegram message shows (None: not an answer, or forgotten since)."""
    update_id = session.scalar(select(AnswerPart.update_id).where(
        AnswerPart.chat_id == chat_id, AnswerPart.telegram_id == telegram_id))
    return None if update_id is None else stored_answer(session, chat_id, update_id)


def last_answer(session: Session, chat_id: int) -> Message | None:
    """The chat's last stored answer."""
    return session.scalar(select(Message).where(Message.chat_id == chat_id, Message.role == "assistant")
                          .order_by(Message.id.desc()).limit(1))


def mode_name(level: str | None, model: str | None) -> str:
    """A mode as people write it: "LEVEL MODEL"."""
    return f"{level or '?'} {model or '?'}"


def vote_outcomes(session: Session, season: int | None = None) -> list[tuple[str, str, str]]:
    """(mode A, mode B, vote) of every vote, of one season or all; for the leaderboard's fit."""
    stmt = (select(Comparison.level_a, Comparison.model_a, Comparison.level_b, Comparison.model_b, Vote.vote)
            .join(Vote, Vote.compare_id == Comparison.id))
    if season is not None:
        stmt = stmt.where(Vote.season == season)
    return [(mode_name(la, ma), mode_name(lb, mb), vote) for la, ma, lb, mb, vote in session.execute(stmt)]


@dataclass
class ModeCounts:
    """What people said about one mode's answers over a period."""

    up: int = 0
    down: dict[str, int] = field(default_factory=dict)  # by reason; "unspecified" when none was given
    corrections: int = 0
    votes: int = 0  # votes on comparisons the mode took part in

    @property
    def down_total(self) -> int:
        return sum(self.down.values())


def feedback_counts(session: Session, since: datetime) -> dict[str, ModeCounts]:
    """Counts per mode ("LEVEL MODEL") of 👍, 👎 by reason, corrections and votes since a time (for /feedback)."""
    counts: dict[str, ModeCounts] = defaultdict(ModeCounts)
    rows = session.execute(
        select(Feedback.level, Feedback.model, Feedback.kind, Feedback.rating, Feedback.reason, func.count())
        .where(Feedback.created_at >= since)
        .group_by(Feedback.level, Feedback.model, Feedback.kind, Feedback.rating, Feedback.reason))
    for level, model, kind, rating, reason, n in rows:
        entry = counts[mode_name(level, model)]
        if kind == "correction":
            entry.corrections += n
        elif rating == "up":
            entry.up += n
        else:
            key = reason or "unspecified"
            entry.down[key] = entry.down.get(key, 0) + n
    for side in ("a", "b"):
        level, model = getattr(Comparison, f"level_{side}"), getattr(Comparison, f"model_{side}")
        rows = session.execute(select(level, model, func.count()).join(Vote, Vote.compare_id == Comparison.id)
                               .where(Vote.created_at >= since).group_by(level, model))
        for lv, md, n in rows:
            counts[mode_name(lv, md)].votes += n
    return dict(sorted(counts.items()))


# --- readers for the dataset export: pages in key order, each a short unit of work ------------------------------


class VotedComparison(NamedTuple):
    """A comparison with the votes on it (voters as Telegram ids: the export hashes them)."""

    id: int
    question: str
    history: list[dict[str, str]]
    system_prompt: str | None
    mode_a: str
    answer_a: str
    mode_b: str
    answer_b: str
    votes: list[tuple[int, str]]  # (voter, vote)


def voted_comparisons_page(session: Session, after_id: int, limit: int,
                           since: datetime | None = None) -> list[VotedComparison]:
    """Up to `limit` comparisons with id > after_id that have votes (since a time), in id order.

    Two range queries a page (comparisons, then the votes between the page's first and last id): no list of ids
    is sent back to the database, which cost more than the reading itself at 100 000 votes.
    """
    vote_filter = [] if since is None else [Vote.created_at >= since]
    rows = session.connection().execute(
        select(Comparison.id, Comparison.question, Comparison.history, Comparison.system_prompt, Comparison.level_a,
               Comparison.model_a, Comparison.answer_a, Comparison.level_b, Comparison.model_b, Comparison.answer_b)
        .where(Comparison.id > after_id,
               select(Vote.id).where(Vote.compare_id == Comparison.id, *vote_filter).exists())
        .order_by(Comparison.id).limit(limit)).all()
    if not rows:
        return []
    votes: dict[int, list[tuple[int, str]]] = defaultdict(list)
    # every comparison in this id range that has votes is in the page: the range holds exactly the page's votes
    for compare_id, voter, vote in session.connection().execute(
            select(Vote.compare_id, Vote.voter, Vote.vote)
            .where(Vote.compare_id.between(rows[0][0], rows[-1][0]), *vote_filter)
            .order_by(Vote.compare_id, Vote.id)).all():
        votes[compare_id].append((voter, vote))
    return [VotedComparison(id_, question, json.loads(history or "[]"), system, mode_name(level_a, model_a),
                            answer_a, mode_name(level_b, model_b), answer_b, votes[id_])
            for id_, question, history, system, level_a, model_a, answer_a, level_b, model_b, answer_b in rows]


class FeedbackRow(NamedTuple):
    user_id: int
    kind: str
    rating: str
    reason: str | None
    correction: str | None
    system_prompt: str | None
    original: str | None = None  # a correction's original answer (the message itself now holds the correction)


class ChatMessage(NamedTuple):
    """A stored message of a chat that has feedback, with the feedback on it (if any)."""

    id: int
    chat_id: int
    role: str
    content: str
    complete: bool
    mode: str
    feedback: list[FeedbackRow]


def feedback_chat_page(session: Session, after: tuple[int, int], limit: int,
                       since: datetime | None = None) -> list[ChatMessage]:
    """Up to `limit` messages after (chat id, message id), in that order, of the chats that have feedback.

    Walking these pages in order, a reader keeps each chat's recent turns and meets every rated answer with its
    history, without a query per answer. Both queries are ranges over (chat id, id) indexes: the messages after
    the last page's, then the feedback between the page's first and last message.
    """
    fb_filter = [] if since is None else [Feedback.created_at >= since]
    rows = session.connection().execute(
        select(Message.id, Message.chat_id, Message.role, Message.content, Message.complete, Message.level,
               Message.model)
        .where(tuple_(Message.chat_id, Message.id) > tuple_(*after),
               select(Feedback.id).where(Feedback.chat_id == Message.chat_id, *fb_filter).exists())
        .order_by(Message.chat_id, Message.id).limit(limit)).all()
    if not rows:
        return []
    feedback: dict[int, list[FeedbackRow]] = defaultdict(list)
    first, last = rows[0], rows[-1]
    for f in session.connection().execute(
            select(Feedback.message_id, Feedback.user_id, Feedback.kind, Feedback.rating, Feedback.reason,
                   Feedback.correction, Feedback.system_prompt, Feedback.original)
            .where(tuple_(Feedback.chat_id, Feedback.message_id) >= tuple_(first.chat_id, first.id),
                   tuple_(Feedback.chat_id, Feedback.message_id) <= tuple_(last.chat_id, last.id), *fb_filter)
            .order_by(Feedback.id)).all():
        feedback[f[0]].append(FeedbackRow(*f[1:]))
    return [ChatMessage(id_, chat_id, role, content, bool(complete), mode_name(level, model),
                        feedback.get(id_, []) if role == "assistant" else [])
            for id_, chat_id, role, content, complete, level, model in rows]


def chat_settings(session: Session, chat_id: int) -> ChatSettings | None:
    return session.get(ChatSettings, chat_id)


def update_chat_settings(session: Session, chat_id: int, defaults: dict[str, object],
                         **values: object) -> ChatSettings:
    """Set some of a chat's settings (`guard_loops`, `guard_language`, `guard_numbers`, `lang`); a chat without
    a row gets one with `defaults` first."""
    row = session.get(ChatSettings, chat_id)
    if row is None:
        row = ChatSettings(chat_id=chat_id, **defaults)
        session.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    return row


def count_guard_events(session: Conn, level: str, model: str, events: Sequence[str]) -> None:
    """Add one to each event's count for the mode: one upsert each, safe when several processes count at once."""
    insert = _upsert(session)
    for event in events:
        stmt = insert(GuardEvent).values(level=level, model=model, event=event, count=1)
        session.execute(stmt.on_conflict_do_update(
            index_elements=[GuardEvent.level, GuardEvent.model, GuardEvent.event],
            set_={"count": GuardEvent.count + stmt.excluded.count},
        ))


def guard_events(session: Session) -> list[GuardEvent]:
    rows = session.scalars(select(GuardEvent).order_by(GuardEvent.level, GuardEvent.model, GuardEvent.event))
    return list(rows)


def last_question(session: Session, chat_id: int) -> tuple[Message, Message | None] | None:
    """The chat's last user message and the answer stored with it (None: no question yet)."""
    rows = list(session.scalars(
        select(Message).where(Message.chat_id == chat_id).order_by(Message.id.desc()).limit(2)))
    user = next((r for r in rows if r.role == "user"), None)
    if user is None:
        return None
    answer = next((r for r in rows if r.role == "assistant" and r.id > user.id), None)
    return user, answer


def delete_messages(session: Conn, ids: Sequence[int]) -> None:
    if ids:
        session.execute(delete(Message).where(Message.id.in_(list(ids))))
