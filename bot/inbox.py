"""The durable inbox: every update is recorded before Telegram is told it arrived, and marked done once answered.

Order and exclusivity: updates of one chat (its `chat_key`) run one at a time in update_id order, across every bot
process sharing the database. A worker claims the oldest pending update of a chat only while no other update of
that chat is being processed under a live lease; on PostgreSQL the claim holds a per-chat advisory lock, on SQLite
the database's single writer serializes claims. A process that dies leaves its leases to expire; the work is then
claimed again. An update recorded twice (Telegram redelivery, duplicate webhook) is stored once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.storage import Database
from bot.storage.models import InboxItem


@dataclass(frozen=True, slots=True)
class Claimed:
    update_id: int
    chat_key: str
    payload: dict[str, Any]
    attempts: int


def chat_key_of(update: dict[str, Any]) -> str:
    """The ordering domain of an update: its chat, else its user, else the update alone."""
    for kind in ("message", "edited_message", "channel_post", "business_message"):
        if kind in update and isinstance(update[kind], dict) and "chat" in update[kind]:
            return f"c{update[kind]['chat']['id']}"
    query = update.get("callback_query")
    if isinstance(query, dict):
        msg = query.get("message")
        if isinstance(msg, dict) and "chat" in msg:
            return f"c{msg['chat']['id']}"
        return f"u{query['from']['id']}"
    for kind in ("my_chat_member", "chat_member", "chat_join_request"):
        if kind in update and isinstance(update[kind], dict):
            return f"c{update[kind]['chat']['id']}"
    return f"x{update.get('update_id')}"


def is_urgent(update: dict[str, Any]) -> bool:
    """Updates that must not wait behind the chat's running answer (/stop cancels it)."""
    message = update.get("message")
    if not isinstance(message, dict):
        return False
    text_ = str(message.get("text") or "")
    return text_.split("@")[0].split(" ")[0] == "/stop"


class Inbox:
    def __init__(self, db: Database, owner: str, lease_seconds: float = 30.0, max_attempts: int = 5) -> None:
        self.db, self.owner = db, owner
        self.lease_seconds, self.max_attempts = lease_seconds, max_attempts
        self.is_postgres = db.url.get_backend_name() == "postgresql"

    async def add(self, updates: Sequence[dict[str, Any]]) -> list[int]:
        """Record updates (duplicates ignored); returns the ids that were new."""
        if not updates:
            return []
        rows = [{"update_id": int(u["update_id"]), "chat_key": chat_key_of(u),
                 "payload": json.dumps(u, ensure_ascii=False), "status": "pending", "attempts": 0}
                for u in updates]
        insert = pg_insert if self.is_postgres else sqlite_insert
        stmt = insert(InboxItem).values(rows).on_conflict_do_nothing(index_elements=["update_id"])
        stmt = stmt.returning(InboxItem.update_id)
        async with self.db.session() as s, s.begin():
            result = await s.execute(stmt)
            return [int(r) for r in result.scalars()]

    async def pending_chats(self, limit: int = 1000) -> list[str]:
        """Chats with pending work, oldest first."""
        now = time.time()
        async with self.db.session() as s:
            result = await s.execute(
                select(InboxItem.chat_key, func.min(InboxItem.update_id).label("first"))
                .where(or_(InboxItem.status == "pending",
                           and_(InboxItem.status == "processing", InboxItem.lease_until < now)))
                .group_by(InboxItem.chat_key).order_by(text("first")).limit(limit)
            )
            return [row[0] for row in result]

    async def claim(self, chat_key: str) -> Claimed | None:
        """Take the chat's oldest unfinished update, unless another worker holds one of this chat."""
        now = time.time()
        async with self.db.session() as s, s.begin():
            if self.is_postgres:
                await s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": chat_key})
            busy = await s.scalar(
                select(func.count()).select_from(InboxItem).where(
                    InboxItem.chat_key == chat_key, InboxItem.status == "processing",
                    InboxItem.lease_until >= now, InboxItem.owner != self.owner))
            if busy:
                return None
            item = await s.scalar(
                select(InboxItem).where(
                    InboxItem.chat_key == chat_key,
                    or_(InboxItem.status == "pending",
                        and_(InboxItem.status == "processing", InboxItem.lease_until < now)))
                .order_by(InboxItem.update_id).limit(1))
            if item is None:
                return None
            item.status, item.owner = "processing", self.owner
            item.lease_until = now + self.lease_seconds
            item.attempts += 1
            return Claimed(item.update_id, item.chat_key, json.loads(item.payload), item.attempts)

    async def take(self, update_id: int) -> Claimed | None:
        """Claim one specific update out of order (urgent ones such as /stop)."""
        now = time.time()
        async with self.db.session() as s, s.begin():
            item = await s.get(InboxItem, update_id, with_for_update=self.is_postgres)
            if item is None or item.status not in ("pending",):
                return None
            item.status, item.owner, item.lease_until = "processing", self.owner, now + self.lease_seconds
            item.attempts += 1
            return Claimed(item.update_id, item.chat_key, json.loads(item.payload), item.attempts)

    async def renew(self, update_ids: Sequence[int]) -> None:
        if not update_ids:
            return
        async with self.db.session() as s, s.begin():
            await s.execute(update(InboxItem).where(InboxItem.update_id.in_(list(update_ids)),
                                                    InboxItem.owner == self.owner)
                            .values(lease_until=time.time() + self.lease_seconds))

    async def finish(self, update_id: int, error: str | None = None) -> None:
        async with self.db.session() as s, s.begin():
            await s.execute(update(InboxItem).where(InboxItem.update_id == update_id)
                            .values(status="failed" if error else "done", error=error, lease_until=None))

    async def release(self, update_id: int) -> None:
        """Give an unfinished update back (shutdown): it runs again, here or in another process."""
        async with self.db.session() as s, s.begin():
            await s.execute(update(InboxItem).where(InboxItem.update_id == update_id, InboxItem.owner == self.owner)
                            .values(status="pending", owner=None, lease_until=None,
                                    attempts=InboxItem.attempts - 1))

    async def release_mine(self) -> int:
        """At start-up: updates this owner left in processing (a previous life of the same process id)."""
        async with self.db.session() as s, s.begin():
            result = await s.execute(update(InboxItem).where(InboxItem.status == "processing",
                                                             InboxItem.owner == self.owner)
                                     .values(status="pending", owner=None, lease_until=None))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def counts(self) -> dict[str, int]:
        async with self.db.session() as s:
            result = await s.execute(select(InboxItem.status, func.count()).group_by(InboxItem.status))
            return {status: n for status, n in result}

    async def max_update_id(self) -> int | None:
        async with self.db.session() as s:
            return await s.scalar(select(func.max(InboxItem.update_id)))
