"""People's feedback on answers: 👍/👎 with a reason, reactions, corrections (/fix), and their counts (/feedback).

No aiogram here: the Telegram adapter (`bot/handlers/feedback.py`) and the commands (`bot/commands/feedback.py`)
call it with plain ids. An answer is found by the update that asked it (the buttons carry it) or by a Telegram
message that shows it (reactions and replies: `answer_parts`, written when the answer is delivered).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from bot.storage import Database, repo
from bot.storage.models import Message

REASONS = repo.FEEDBACK_REASONS
LAST_ANSWER = 0  # "the message replied to" where a transport has no replies (the terminal): the chat's last answer
PERIODS = (7, 30)  # days /feedback counts over

# Telegram reactions that mean 👍 or 👎; any other emoji is no verdict (and is ignored)
UP_EMOJI = frozenset("👍 ❤ ❤️ 🔥 🥰 👏 😍 🤩 🏆 💯 👌 🙏 🤝 🎉 ⚡ 🍾 😎 🫡 ❤‍🔥 💘 😘 🤗".split())
DOWN_EMOJI = frozenset("👎 💩 🤮 😡 🤬 🥱 🤡 🖕 😢 😭 🤨 🙈 😐 🤷 🤷‍♂ 🤷‍♀".split())


def reaction_rating(emoji: Sequence[str]) -> str | None:
    """What a person's reactions on a message say: "up", "down", or None (none left, mixed, or no verdict)."""
    ups = any(e in UP_EMOJI for e in emoji)
    downs = any(e in DOWN_EMOJI for e in emoji)
    return "up" if ups and not downs else "down" if downs and not ups else None


@dataclass(frozen=True)
class Corrected:
    """A /fix that was recorded: the answer's original text and the correction now in memory."""

    original: str
    corrected: str


@dataclass(frozen=True)
class FeedbackReport:
    """What /feedback shows: counts per mode for each period, and the guard events counted per mode."""

    periods: dict[int, dict[str, repo.ModeCounts]]  # days -> mode -> counts
    guards: dict[str, dict[str, int]]  # mode -> event -> count (since the start)


class FeedbackStore:
    """Records and counts feedback on stored answers; cheap to create (it holds only the database)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def rate(self, chat_id: int, update_id: int, user_id: int, rating: str, reason: str | None = None,
                   *, system_prompt: str | None = None) -> bool:
        """A button: 👍/👎 (a reason with 👎) on the answer to `update_id`; False when it is no longer stored."""

        def work(s: Session) -> bool:
            answer = repo.stored_answer(s, chat_id, update_id)
            if answer is None:
                return False
            repo.record_feedback(s, answer.id, user_id, rating=rating, source="button", reason=reason,
                                 system_prompt=system_prompt)
            return True

        return await self.db.run(work)

    async def react(self, chat_id: int, telegram_id: int, user_id: int, emoji: Sequence[str],
                    *, system_prompt: str | None = None) -> bool:
        """A person's reactions on a message changed: record their verdict, or forget their reaction's one.

        False when the message shows no stored answer. A reaction taken back removes only a reaction's verdict
        (a button pressed since stays)."""
        rating = reaction_rating(emoji)

        def work(s: Session) -> bool:
            answer = repo.answer_of_part(s, chat_id, telegram_id)
            if answer is None:
                return False
            if rating is None:
                repo.remove_feedback(s, answer.id, user_id, source="reaction")
            else:
                repo.record_feedback(s, answer.id, user_id, rating=rating, source="reaction",
                                     system_prompt=system_prompt)
            return True

        return await self.db.run(work)

    async def correct(self, chat_id: int, telegram_id: int, user_id: int, text: str,
                      *, system_prompt: str | None = None) -> Corrected | None:
        """/fix: keep (original, corrected) as feedback and put the corrected text in the chat's memory.

        `telegram_id`: the message replied to, or LAST_ANSWER. None when it shows no stored answer."""
        text = text.strip()

        def work(s: Session) -> Corrected | None:
            answer: Message | repo.StoredRow | None = (repo.last_answer(s, chat_id) if telegram_id == LAST_ANSWER
                                      else repo.answer_of_part(s, chat_id, telegram_id))
            if answer is None:
                return None
            original = repo.correct_answer(s, answer.id, text)
            repo.record_feedback(s, answer.id, user_id, rating="down", source="correction", correction=text,
                                 system_prompt=system_prompt, original=original)
            return Corrected(original, text)

        return await self.db.run(work)

    async def report(self, now: datetime | None = None) -> FeedbackReport:
        """Counts per mode over the last 7 and 30 days, and the guard events per mode."""
        now = now or datetime.now(UTC)

        def read(s: Session) -> FeedbackReport:
            periods = {days: repo.feedback_counts(s, now - timedelta(days=days)) for days in PERIODS}
            guards: dict[str, dict[str, int]] = {}
            for row in repo.guard_events(s):
                guards.setdefault(repo.mode_name(row.level, row.model), {})[row.event] = row.count
            return FeedbackReport(periods, guards)

        return await self.db.run(read)
