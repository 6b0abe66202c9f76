"""The durable inbox: every update is recorded before Telegram is told it arrived, and marked done once answered.

Order and exclusivity: updates of one chat (its `chat_key`) run one at a time in update_id order, across every bot
process sharing the database. A claim is one conditional UPDATE: it takes the chat's oldest unfinished update only
while no other owner holds a live lease on that chat. On PostgreSQL the claim first takes a per-chat advisory lock
(so the condition is checked against committed state, not a stale snapshot); on SQLite the database's single writer
serializes claims. Owners renew their leases while they work (a heartbeat). When an owner dies, its leases expire
and the work is claimed again; an owner on this machine that provably died (its process is gone) is reaped at once.
An update recorded twice (Telegram redelivery, a duplicate webhook) is stored once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Float,
    String,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.storage import Database
from bot.storage.models import Delivery, InboxItem

log = logging.getLogger(__name__)
_ITEM = InboxItem.__table__


@dataclass(frozen=True, slots=True)
class Claimed:
    update_id: int
    chat_key: str
    payload: dict[str, Any]
    attempts: int
    created: float = 0.0  # unix time the update was recorded


def _unix(value: Any) -> float:
    """A stored created_at as unix time (SQLite gives it back without its time zone: it is UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return time.time()
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


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
    for kind in ("my_chat_member", "chat_member", "chat_join_request", "message_reaction"):
        if kind in update and isinstance(update[kind], dict):
            return f"c{update[kind]['chat']['id']}"
    return f"x{update.get('update_id')}"


def _command(message: dict[str, Any]) -> str | None:
    """The command a message's text starts with ("/stop" for "/stop@bot now"); None when it is not one."""
    text_ = str(message.get("text") or "")
    return text_.split("@")[0].split(" ")[0] if text_.startswith("/") else None


def is_urgent(update: dict[str, Any]) -> bool:
    """Updates that must not wait behind the chat's running answer (/stop cancels it)."""
    message = update.get("message")
    return isinstance(message, dict) and _command(message) == "/stop"


def is_question(update: dict[str, Any], user_id: int | None = None, bot: tuple[int, str | None] | None = None) -> bool:
    """A text message of `user_id` (None: of anyone) that the bot would answer, or a /retry: what /stop may
    withdraw unanswered. In a group a text must be addressed to `bot` (id, username): a mention or a reply."""
    message = update.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("text"), str):
        return False
    command = _command(message)
    if command not in (None, "/retry"):
        return False
    sender, chat = message.get("from"), message.get("chat")
    if user_id is not None and not (isinstance(sender, dict) and sender.get("id") == user_id):
        return False
    if command or (isinstance(chat, dict) and chat.get("type") == "private"):
        return True
    if bot is None:
        return False
    bot_id, username = bot
    replied = message.get("reply_to_message")
    if isinstance(replied, dict) and isinstance(replied.get("from"), dict) and replied["from"].get("id") == bot_id:
        return True
    return bool(username) and f"@{username}".lower() in message["text"].lower()


# --- owners: who holds a lease, and whether that process provably died ------------------------------------------
# An owner id is "<pid namespace>.<boot id>.<pid>.<process start time>.<random>". A pid means something only inside
# its pid namespace and boot, so another process can judge an owner only when both match its own; the start time
# tells a reused pid from the original. Owners elsewhere (other containers, other hosts) are left to lease expiry.


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # the command name (field 2) may hold spaces and parentheses: count fields after its closing parenthesis
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _namespace() -> str | None:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None
    return "".join(ch for ch in link if ch.isdigit()) or None


def _boot() -> str | None:
    boot = _read("/proc/sys/kernel/random/boot_id")
    return boot.replace("-", "")[:12] if boot else None


def process_identity() -> str:
    """A fresh owner id for this process (each call differs: two apps in one process are two owners)."""
    pid = os.getpid()
    ns, boot, started = _namespace(), _boot(), _start_time(pid)
    rand = secrets.token_hex(4)
    if ns is None or boot is None or started is None:  # no /proc (not Linux): only leases protect
        host = hashlib.sha1(os.uname().nodename.encode()).hexdigest()[:12]
        return f"x.{host}.{pid}.0.{rand}"
    return f"{ns}.{boot}.{pid}.{started}.{rand}"[:64]


def owner_is_dead(owner: str) -> bool:
    """True only when `owner` ran on this machine, in this pid namespace and boot, and its process is gone."""
    parts = owner.split(".")
    if len(parts) != 5 or parts[0] == "x":
        return False
    ns, boot, pid_s, started, _ = parts
    if ns != _namespace() or boot != _boot() or not pid_s.isdigit():
        return False
    current = _start_time(int(pid_s))
    return current is None or current != started


# --- the inbox ------------------------------------------------------------------------------------------------


def _workable(item: Any, now: Any) -> Any:
    """Rows that may be claimed: pending, or processing under a lease that ran out."""
    return or_(item.status == "pending", and_(item.status == "processing", item.lease_until < now))


class Inbox:
    def __init__(self, db: Database, owner: str, *, lease_seconds: float = 20.0, max_attempts: int = 5) -> None:
        self.db, self.owner = db, owner
        self.lease_seconds, self.max_attempts = lease_seconds, max_attempts
        self.is_postgres = not db.is_sqlite
        self._build_statements()

    def _build_statements(self) -> None:
        # Built once, with bound parameters: building and hashing these statements for every claim cost more
        # CPU than the rest of the inbox together (measured with py-spy under bench/bench_bot.py).
        # Core statements on the table, not the ORM class: the ORM's bulk UPDATE and INSERT paths cost more than
        # the SQL itself (bench/bench_bot.py, issue 17), and nothing here needs ORM objects.
        now, key = bindparam("now", type_=Float), bindparam("key", type_=String)
        claim_values = dict(status="processing", owner=self.owner, lease_until=bindparam("new_lease", type_=Float),
                            attempts=_ITEM.c.attempts + 1)
        first = _ITEM.alias("first_item")
        oldest = select(func.min(first.c.update_id)).where(first.c.chat_key == key, _workable(first.c, now))
        self._claim = (update(_ITEM)
                       .where(_ITEM.c.update_id == oldest.scalar_subquery(), _workable(_ITEM.c, now),
                              ~self._busy_elsewhere(key, now))
                       .values(**claim_values)
                       .returning(_ITEM.c.update_id, _ITEM.c.payload, _ITEM.c.attempts, _ITEM.c.created_at))
        self._take = (update(_ITEM)
                      .where(_ITEM.c.update_id == bindparam("uid", type_=BigInteger), _ITEM.c.status == "pending",
                             ~self._busy_elsewhere(key, now))
                      .values(**claim_values)
                      .returning(_ITEM.c.payload, _ITEM.c.attempts, _ITEM.c.created_at))
        self._pending = (select(_ITEM.c.chat_key, func.min(_ITEM.c.update_id).label("first"))
                         .where(_workable(_ITEM.c, now), ~self._busy_elsewhere(_ITEM.c.chat_key, now))
                         .group_by(_ITEM.c.chat_key).order_by(text("first")).limit(bindparam("limit")))
        # only the owner finishes: a process whose lease ran out must not mark done what another now runs
        self._finish = (update(_ITEM).where(_ITEM.c.update_id == bindparam("uid", type_=BigInteger),
                                            _ITEM.c.owner == self.owner)
                        .values(status=bindparam("new_status"), error=bindparam("new_error"), lease_until=None))
        # one statement for any number of rows (executemany, sent as multi-row INSERTs): a VALUES list built per
        # call is compiled again for every call
        insert = pg_insert if self.is_postgres else sqlite_insert
        self._add = (insert(_ITEM).on_conflict_do_nothing(index_elements=[_ITEM.c.update_id])
                     .returning(_ITEM.c.update_id))

    async def add(self, updates: Sequence[dict[str, Any]]) -> list[int]:
        """Record updates (duplicates ignored); returns the ids that were new."""
        if not updates:
            return []
        rows = {int(u["update_id"]): {"update_id": int(u["update_id"]), "chat_key": chat_key_of(u),
                                      "payload": json.dumps(u, ensure_ascii=False), "status": "pending",
                                      "attempts": 0} for u in updates}
        return await self.db.run_core(lambda s: [int(r) for r in s.execute(self._add, list(rows.values())).scalars()])

    def _busy_elsewhere(self, chat_key: Any, now: Any) -> Any:
        """Another owner holds a live lease on an update of this chat."""
        other = _ITEM.alias("other_item")
        return exists().where(other.c.chat_key == chat_key, other.c.status == "processing",
                              other.c.lease_until >= now, other.c.owner != self.owner)

    def _lock_chat(self, s: Connection, chat_key: str) -> None:
        if self.is_postgres:
            s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": chat_key})

    async def pending_chats(self, limit: int = 1000) -> list[str]:
        """Chats with work this owner could claim now (none busy under another owner), oldest first."""
        params = {"now": time.time(), "limit": limit}
        return await self.db.run_core(lambda s: [row[0] for row in s.execute(self._pending, params)])

    async def claim(self, chat_key: str) -> Claimed | None:
        """Take the chat's oldest unfinished update, unless another owner is working on this chat."""
        return await self.db.run_core(lambda s: self._claim_in(s, chat_key))

    def _claim_in(self, s: Connection, chat_key: str) -> Claimed | None:
        self._lock_chat(s, chat_key)
        while True:
            now = time.time()
            row = s.execute(self._claim, {"now": now, "key": chat_key, "new_lease": now + self.lease_seconds}).first()
            if row is None:
                return None
            update_id, payload, attempts = int(row[0]), str(row[1]), int(row[2])
            if attempts > self.max_attempts:
                # it keeps failing or killing its workers: stop here instead of blocking the chat forever
                log.error("update %s gave up after %d attempts", update_id, attempts - 1)
                s.execute(self._finish, {"uid": update_id, "new_status": "failed",
                                         "new_error": f"gave up after {attempts - 1} attempts"})
                continue
            return Claimed(update_id, chat_key, json.loads(payload), attempts, _unix(row[3]))

    async def take(self, update_id: int, chat_key: str) -> Claimed | None:
        """Claim one pending update out of order (urgent ones such as /stop).

        None when it is gone, or when another owner is running this chat: that owner picks it up (`urgent_for`),
        since only the process running the chat's answer can stop it.
        """

        def work(s: Connection) -> Claimed | None:
            self._lock_chat(s, chat_key)
            now = time.time()
            row = s.execute(self._take, {"uid": update_id, "now": now, "key": chat_key,
                                         "new_lease": now + self.lease_seconds}).first()
            return None if row is None else Claimed(update_id, chat_key, json.loads(str(row[0])), int(row[1]),
                                                    _unix(row[2]))

        return await self.db.run_core(work)

    async def urgent_for(self, chat_keys: Sequence[str]) -> list[tuple[int, str]]:
        """Pending urgent updates (/stop) of the given chats: (update_id, chat_key)."""
        if not chat_keys:
            return []
        stmt = (select(InboxItem.update_id, InboxItem.chat_key, InboxItem.payload)
                .where(InboxItem.status == "pending", InboxItem.chat_key.in_(list(chat_keys)),
                       InboxItem.payload.contains('"/stop'))
                .order_by(InboxItem.update_id))
        rows = await self.db.run_core(lambda s: s.execute(stmt).all())
        return [(int(uid), key) for uid, key, payload in rows if is_urgent(json.loads(payload))]

    async def withdraw(self, chat_key: str, before: int, user_id: int | None,
                       bot: tuple[int, str | None] | None = None) -> list[int]:
        """Mark done, unanswered, the questions (`is_question`) of `user_id` (None: anyone's) waiting in this chat
        that arrived before update `before` (/stop); returns their ids. Those another process took meanwhile run."""
        waiting = (select(InboxItem.update_id, InboxItem.payload)
                   .where(InboxItem.chat_key == chat_key, InboxItem.status == "pending", InboxItem.update_id < before))

        def work(s: Connection) -> list[int]:
            self._lock_chat(s, chat_key)
            ids = [int(uid) for uid, payload in s.execute(waiting)
                   if is_question(json.loads(payload), user_id, bot)]
            if not ids:
                return []
            stmt = (update(InboxItem).where(InboxItem.update_id.in_(ids), InboxItem.status == "pending")
                    .values(status="done", error="withdrawn by /stop").returning(InboxItem.update_id)
                    .execution_options(synchronize_session=False))
            return sorted(int(r) for r in s.execute(stmt).scalars())

        return await self.db.run_core(work)

    async def renew(self, update_ids: Sequence[int]) -> set[int]:
        """Extend the leases this owner still holds; returns the ids whose lease was extended."""
        if not update_ids:
            return set()

        def work(s: Connection) -> set[int]:
            result = s.execute(
                update(InboxItem).where(InboxItem.update_id.in_(list(update_ids)), InboxItem.owner == self.owner,
                                        InboxItem.status == "processing")
                .values(lease_until=time.time() + self.lease_seconds)
                .returning(InboxItem.update_id).execution_options(synchronize_session=False))
            return {int(r) for r in result.scalars()}

        return await self.db.run_core(work)

    async def finish(self, update_id: int, error: str | None = None, *,
                     then_claim: str | None = None) -> Claimed | None:
        """Mark an update done (or failed); with `then_claim`, claim that chat's next update in the same unit."""
        params = {"uid": update_id, "new_status": "failed" if error else "done", "new_error": error}

        def work(s: Connection) -> Claimed | None:
            if then_claim is not None:
                self._lock_chat(s, then_claim)  # the chat lock before any row lock, as in claim(): no deadlock
            if not s.execute(self._finish, params).rowcount:
                log.error("update %s: its lease ran out before it finished and another process took it over",
                          update_id)
                return None
            return self._claim_in(s, then_claim) if then_claim is not None else None

        return await self.db.run_core(work)

    async def release(self, update_id: int, *, failed: bool = False) -> None:
        """Give an unfinished update back: it runs again, here or elsewhere.

        A shutdown does not count as an attempt; a retryable failure (`failed`) does.
        """
        attempts = InboxItem.attempts if failed else InboxItem.attempts - 1
        stmt = (update(InboxItem).where(InboxItem.update_id == update_id, InboxItem.owner == self.owner,
                                        InboxItem.status == "processing")
                .values(status="pending", owner=None, lease_until=None, attempts=attempts)
                .execution_options(synchronize_session=False))
        await self.db.run_core(lambda s: s.execute(stmt))

    async def reap(self) -> int:
        """Give back the updates held by owners on this machine whose process is gone (killed, crashed)."""
        owners = await self.db.run_core(lambda s: s.scalars(
            select(InboxItem.owner).distinct().where(InboxItem.status == "processing", InboxItem.owner != self.owner)
        ).all())
        dead = [o for o in owners if o and owner_is_dead(o)]
        if not dead:
            return 0
        stmt = (update(InboxItem).where(InboxItem.status == "processing", InboxItem.owner.in_(dead))
                .values(status="pending", owner=None, lease_until=None).execution_options(synchronize_session=False))
        n = await self.db.run_core(lambda s: int(s.execute(stmt).rowcount or 0))  # type: ignore[attr-defined]
        if n:
            log.warning("took back %d updates from %d stopped processes", n, len(dead))
        return n

    async def prune(self, keep_seconds: float) -> int:
        """Forget finished updates older than `keep_seconds` (Telegram redelivers for about a day)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=keep_seconds)
        stmt = (delete(InboxItem).where(InboxItem.status.in_(("done", "failed")), InboxItem.created_at < cutoff)
                .execution_options(synchronize_session=False))
        # what was delivered of an answer matters only while its update may run again
        sent = delete(Delivery).where(Delivery.created_at < cutoff).execution_options(synchronize_session=False)

        def work(s: Connection) -> int:
            s.execute(sent)
            return int(s.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]

        return await self.db.run_core(work)

    async def counts(self) -> dict[str, int]:
        stmt = select(InboxItem.status, func.count()).group_by(InboxItem.status)
        return await self.db.run_core(lambda s: {status: n for status, n in s.execute(stmt)})
