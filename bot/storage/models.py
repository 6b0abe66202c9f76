"""SQL tables: chats (mode), messages (memory), settings (admin overrides), inbox (durable updates), deliveries
(what of an answer Telegram has), usage.

Columns added to a table after its first release are nullable: `Database.create_all` adds them to an existing
database on start-up.
"""

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
