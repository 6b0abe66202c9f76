"""A chat's guard switches (`/guards`) and answer language (`/lang`), and the language an answer must be in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.checks.language import Language, detect_language
from agents.checks.text import cyrillic_share
from agents.guards import GuardConfig

if TYPE_CHECKING:
    from bot.storage.models import ChatSettings
    from bot.storage.repo import GuardRow

__all__ = ["GUARDS", "LANGS", "ChatGuards", "expected_language"]

GUARDS = ("loops", "language", "numbers")
_MIN_WORDS = 3  # words of Latin letters before the language a user writes in overrides their Telegram language
LANGS = ("ru", "en", "auto")


@dataclass(frozen=True, slots=True)
class ChatGuards:
    """A chat's guard switches (`/guards`, all on by default) and its answer language (`/lang`; None: auto)."""

    loops: bool = True
    language: bool = True
    numbers: bool = True
    lang: Language | None = None

    @classmethod
    def from_names(cls, names: str) -> ChatGuards:
        """The guards named in a comma-separated list on, the others off (the GUARDS setting)."""
        on = {name.strip().lower() for name in names.split(",")}
        return cls("loops" in on, "language" in on, "numbers" in on)

    @classmethod
    def of(cls, row: ChatSettings | GuardRow | None, default: ChatGuards | None = None) -> ChatGuards:
        if row is None:
            return default or cls()
        lang = row.lang if row.lang in ("ru", "en") else None
        return cls(row.guard_loops, row.guard_language, row.guard_numbers, lang)  # type: ignore[arg-type]

    def config(self, text: str, user_lang: str) -> GuardConfig | None:
        """The guards for a turn answering `text`; None when every guard is off (the answer is left untouched)."""
        if not (self.loops or self.language or self.numbers):
            return None
        return GuardConfig(loops=self.loops, numbers=self.numbers,
                           language=expected_language(self.lang, text, user_lang) if self.language else None)


def expected_language(chat_lang: Language | None, text: str, user_lang: str) -> Language | None:
    """The language an answer should be in: the chat's `/lang`, else the language the user writes in, else the
    user's Telegram language (None: unknown, not checked)."""
    if chat_lang is not None:
        return chat_lang
    # a word or two of Latin letters ("search x") is too little to tell English from translit; Cyrillic is not
    written = detect_language(text) if len(text.split()) >= _MIN_WORDS or cyrillic_share(text) > 0.5 else None
    if written is not None:
        return written
    return user_lang if user_lang in ("ru", "en") else None  # type: ignore[return-value]
