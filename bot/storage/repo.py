"""Queries, one small function each, over a session the caller owns."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import Chat, Message, Setting, Usage


async def get_chat(session: AsyncSession, chat_id: int) -> Chat | None:
    return await session.get(Chat, chat_id)


async def upsert_chat(session: AsyncSession, chat_id: int, *, level: str, model: str,
                      show_steps: bool | None = None) -> Chat:
    chat = await session.get(Chat, chat_id)
    if chat is None:
        chat = Chat(id=chat_id, level=level, model=model, show_steps=bool(show_steps))
        session.add(chat)
    else:
        chat.level, chat.model = level, model
        if show_steps is not None:
            chat.show_steps = show_steps
    return chat


async def history(session: AsyncSession, chat_id: int, limit: int = 200) -> list[Message]:
    """The last `limit` complete turns, oldest first."""
    rows = await session.scalars(
        select(Message).where(Message.chat_id == chat_id, Message.complete.is_(True))
        .order_by(Message.id.desc()).limit(limit)
    )
    return list(reversed(list(rows)))


async def all_messages(session: AsyncSession, chat_id: int) -> Sequence[Message]:
    rows = await session.scalars(select(Message).where(Message.chat_id == chat_id).order_by(Message.id))
    return list(rows)


async def answered(session: AsyncSession, chat_id: int, update_id: int) -> bool:
    """Whether the update already has a stored assistant turn (a re-run must not answer twice)."""
    found = await session.scalar(
        select(func.count()).select_from(Message)
        .where(Message.chat_id == chat_id, Message.update_id == update_id, Message.role == "assistant")
    )
    return bool(found)


async def clear_history(session: AsyncSession, chat_id: int) -> int:
    result = await session.execute(delete(Message).where(Message.chat_id == chat_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def get_setting(session: AsyncSession, key: str) -> str | None:
    row = await session.get(Setting, key)
    return row.value if row else None


async def set_setting(session: AsyncSession, key: str, value: str | None) -> None:
    row = await session.get(Setting, key)
    if value is None:
        if row is not None:
            await session.delete(row)
    elif row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value


async def add_usage(session: AsyncSession, user_id: int, day: str, *, messages: int, tokens: int) -> None:
    row = await session.get(Usage, (user_id, day))
    if row is None:
        session.add(Usage(user_id=user_id, day=day, messages=messages, tokens=tokens))
    else:
        row.messages += messages
        row.tokens += tokens


async def usage_of(session: AsyncSession, user_id: int, day: str) -> Usage | None:
    return await session.get(Usage, (user_id, day))


async def usage_all(session: AsyncSession, day: str) -> list[Usage]:
    rows = await session.scalars(select(Usage).where(Usage.day == day).order_by(Usage.tokens.desc()))
    return list(rows)
