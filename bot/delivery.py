"""What of an answer Telegram already has, so that a run after a crash sends only the rest.

An answer's parts (rendered, sources included) are stored with the first part delivered, and the message id of each
part as it is delivered. A re-run of the update (the process died before the inbox marked it done, or Telegram was
out of reach) sends the parts still missing, exactly as the first run rendered them. A part whose send may have
reached Telegram without an answer coming back is recorded as delivered (id 0): sending it again could double it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Connection

from bot.rendering import Chunk
from bot.storage import Database, repo


@dataclass(frozen=True, slots=True)
class Delivered:
    parts: list[Chunk]  # the answer as rendered by the first run
    sent: list[int]  # message ids of the parts delivered, in order


class DeliveryJournal:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, update_id: int) -> Delivered | None:
        """What an earlier run of this update delivered; None when it delivered nothing."""
        row = await self.db.run(lambda s: repo.get_delivery(s, update_id))
        if row is None:
            return None
        parts = [Chunk(p["text"], p.get("entities") or []) for p in json.loads(row.parts)]
        return Delivered(parts, [int(i) for i in json.loads(row.sent)])

    async def record(self, update_id: int, chat_id: int, parts: list[Chunk], sent: list[int], *,
                     link: bool = False) -> None:
        """Note that `sent` (one id per part, in order) of the answer `parts` reached Telegram. `link`: once every
        part is delivered, remember in the same transaction which messages show the stored answer (reactions and
        /fix replies find it by them)."""
        rendered = json.dumps([{"text": c.text, "entities": c.entities} for c in parts], ensure_ascii=False)
        complete = link and len(sent) == len(parts)

        def work(s: Connection) -> None:
            repo.record_delivery(s, update_id, chat_id, rendered, json.dumps(sent))
            if complete:
                repo.link_answer_parts(s, chat_id, update_id, sent)

        await self.db.run_core(work)
