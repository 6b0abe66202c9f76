"""SQL tables: chats (mode), chat settings (guards, language), guard event counts, messages (memory), settings
(admin overrides), inbox (durable updates), usage."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Index, Integer, String, Text
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


class Usage(Base):
    """Messages and tokens a user consumed on one day (UTC), for quotas and /usage."""

    __tablename__ = "usage"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    messages: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
