"""Queries, one small function each, over a session the caller owns (inside `Database.run`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy import insert as insert_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.storage.models import Chat, ChatSettings, GuardEvent, Message, Setting, Usage


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


def history(session: Session, chat_id: int, limit: int = 200) -> list[Message]:
    """The last `limit` complete turns, oldest first."""
    rows = session.scalars(
        select(Message).where(Message.chat_id == chat_id, Message.complete.is_(True))
        .order_by(Message.id.desc()).limit(limit)
    )
    return list(reversed(list(rows)))


def all_messages(session: Session, chat_id: int) -> Sequence[Message]:
    rows = session.scalars(select(Message).where(Message.chat_id == chat_id).order_by(Message.id))
    return list(rows)


def stored_answer(session: Session, chat_id: int, update_id: int) -> Message | None:
    """The assistant turn stored for an update, if any (a re-run must not answer twice)."""
    return session.scalar(
        select(Message).where(Message.chat_id == chat_id, Message.update_id == update_id, Message.role == "assistant")
        .order_by(Message.id).limit(1)
    )


def clear_history(session: Session, chat_id: int) -> int:
    result = session.execute(delete(Message).where(Message.chat_id == chat_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def get_setting(session: Session, key: str) -> str | None:
    row = session.get(Setting, key)
    return row.value if row else None


def set_setting(session: Session, key: str, value: str | None) -> None:
    row = session.get(Setting, key)
    if value is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value


def add_usage(session: Session, user_id: int, day: str, *, messages: int, tokens: int) -> None:
    """Add to a user's count for the day: one upsert, safe when several processes count at once."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(Usage).values(user_id=user_id, day=day, messages=messages, tokens=tokens)
    session.execute(stmt.on_conflict_do_update(
        index_elements=[Usage.user_id, Usage.day],
        set_={"messages": Usage.messages + stmt.excluded.messages, "tokens": Usage.tokens + stmt.excluded.tokens},
    ))


def add_turn(session: Session, rows: list[dict[str, object]]) -> None:
    """Store a turn's messages (dicts of Message columns) in one statement."""
    session.execute(insert_(Message), rows)


def usage_of(session: Session, user_id: int, day: str) -> Usage | None:
    return session.get(Usage, (user_id, day))


def usage_all(session: Session, day: str) -> list[Usage]:
    rows = session.scalars(select(Usage).where(Usage.day == day).order_by(Usage.tokens.desc()))
    return list(rows)


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


def count_guard_events(session: Session, level: str, model: str, events: Sequence[str]) -> None:
    """Add one to each event's count for the mode: one upsert each, safe when several processes count at once."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
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


def delete_messages(session: Session, ids: Sequence[int]) -> None:
    if ids:
        session.execute(delete(Message).where(Message.id.in_(list(ids))))
