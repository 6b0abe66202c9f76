"""SQL tables: chats (mode), chat settings (guards, language), guard event counts, messages (memory), settings
(admin overrides), inbox (durable updates), deliveries (what of an answer Telegram has), comparisons, votes,
feedback, usage.

Columns added to a table after its first release are nullable: `Database.create_all` adds them to an existing
database on start-up.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Chat(Base):
    __tablename__ = "chats"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    level: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    show_steps: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ChatSettings(Base):
    """A chat's guard switches and answer language (`/guards`, `/lang`); a table of its own, so databases created
    before it need no migration (no row: every guard on, the language from the user)."""

    __tablename__ = "chat_settings"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guard_loops: Mapped[bool] = mapped_column(Boolean, default=True)
    guard_language: Mapped[bool] = mapped_column(Boolean, default=True)
    guard_numbers: Mapped[bool] = mapped_column(Boolean, default=True)
    lang: Mapped[str | None] = mapped_column(String(8), nullable=True)  # "ru" | "en"; None: auto
    compare: Mapped[str | None] = mapped_column(String(420), nullable=True)  # "LEVEL MODEL|LEVEL MODEL"; None: off


class GuardEvent(Base):
    """How often each guard acted, per mode (level and model): shown by /guards, /feedback and the eval report."""

    __tablename__ = "guard_events"

    level: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    event: Mapped[str] = mapped_column(String(32), primary_key=True)  # e.g. "loops.cut", "numbers.marked"
    count: Mapped[int] = mapped_column(Integer, default=0)


class Message(Base):
    """One turn of a chat. Only `complete` turns are sent to the model; failed or stopped ones stay for audit."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_chat_id_id", "chat_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    complete: Mapped[bool] = mapped_column(Boolean, default=True)
    update_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    level: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sources: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: the sources an answer cited
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Setting(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class InboxItem(Base):
    """A Telegram update, recorded before it is confirmed to Telegram; `done` once its reply is delivered."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_status_chat", "status", "chat_key", "update_id"),)

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_key: Mapped[str] = mapped_column(String(64))  # the order domain: one chat (or one lone update)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | processing | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)  # unix time
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Delivery(Base):
    """An answer as rendered for Telegram (its parts, sources included) and the message ids of the parts delivered
    so far: a run after a crash sends only the parts still missing."""

    __tablename__ = "deliveries"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    parts: Mapped[str] = mapped_column(Text)  # JSON [{"text": ..., "entities": [...]}]
    sent: Mapped[str] = mapped_column(Text)  # JSON [message id, ...] per part delivered, in order (0: id unknown)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Usage(Base):
    """Messages and tokens a user consumed on one day (UTC), for quotas and /usage."""

    __tablename__ = "usage"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    messages: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)


# --- people's verdicts: side-by-side comparisons and their votes, feedback on stored answers ------------------------


class Comparison(Base):
    """One question answered by two modes side by side, with what the chat looked like at that point."""

    __tablename__ = "comparisons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    question: Mapped[str] = mapped_column(Text)
    history: Mapped[str] = mapped_column(Text, default="[]")  # JSON [{"role", "content"}, ...] before the question
    system_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)  # the one in force, if any
    level_a: Mapped[str] = mapped_column(String(64))
    model_a: Mapped[str] = mapped_column(String(200))
    answer_a: Mapped[str] = mapped_column(Text)
    level_b: Mapped[str] = mapped_column(String(64))
    model_b: Mapped[str] = mapped_column(String(200))
    answer_b: Mapped[str] = mapped_column(Text)
    memory_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # messages.id the chat's memory keeps
    shown: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: the Telegram messages showing it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Vote(Base):
    """A person's verdict on a comparison; a second press changes it (one row per comparison and voter)."""

    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("compare_id", "voter", name="uq_votes_compare_voter"),
                      Index("ix_votes_created_at", "created_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    compare_id: Mapped[int] = mapped_column(Integer, index=True)
    voter: Mapped[int] = mapped_column(BigInteger)  # Telegram user id: never exported
    vote: Mapped[str] = mapped_column(String(16))  # a | b | tie | both_bad
    season: Mapped[int] = mapped_column(Integer, default=1)  # /leaderboard reset starts a new one
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Feedback(Base):
    """A person's verdict on one stored assistant message: 👍/👎 (with a reason) or a correction (/fix)."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("message_id", "user_id", "kind", name="uq_feedback_message_user_kind"),
                      Index("ix_feedback_created_at", "created_at"),
                      Index("ix_feedback_chat_message", "chat_id", "message_id"))  # the export's walk

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(Integer, index=True)  # messages.id of the assistant turn
    chat_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)  # Telegram user id: never exported
    kind: Mapped[str] = mapped_column(String(16))  # rating | correction: one of each per user and message
    rating: Mapped[str] = mapped_column(String(8))  # up | down (a correction is a down)
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)  # see FEEDBACK_REASONS in repo
    source: Mapped[str] = mapped_column(String(16))  # button | reaction | correction
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)
    # a correction's original answer: /fix replaces the stored answer's text in memory with the correction
    original: Mapped[str | None] = mapped_column(Text, nullable=True)
    level: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the answer's mode, as on the message
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    system_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)  # in force when it was answered
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AnswerPart(Base):
    """A Telegram message that shows (a part of) a stored answer: how a reaction or a `/fix` reply on it finds
    the answer (by its update), long after the delivery record is pruned. Deleted with the chat's memory."""

    __tablename__ = "answer_parts"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    telegram_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # its message_id
    update_id: Mapped[int] = mapped_column(BigInteger)  # the update whose stored answer it shows
