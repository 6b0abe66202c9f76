"""Split extracted text into overlapping chunks along paragraphs and sentences, keeping page numbers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_TARGET_CHARS = 800
DEFAULT_OVERLAP_CHARS = 150

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# A sentence ends at . ! ? … (with closing quotes/brackets) before whitespace and an upper-case letter,
# a digit or an opening quote; Cyrillic capitals count.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'»”)\]]*\s+(?=[\"'«“(\[]?[A-ZА-ЯЁ0-9])")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document: its text, the page it is on (PDF) and its position in the document."""

    text: str
    page: int | None
    index: int


@dataclass(frozen=True, slots=True)
class _Unit:
    text: str
    joiner: str  # what goes between this unit and the previous one


def split_sentences(text: str) -> list[str]:
    """Sentences of one paragraph (a heuristic: abbreviations may split early, which is harmless here)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _units(paragraph: str, target: int) -> list[_Unit]:
    """A paragraph as pieces no longer than `target`: itself, else its lines, sentences, then words."""
    if len(paragraph) <= target:
        return [_Unit(paragraph, "\n\n")]
    out: list[_Unit] = []
    lines = [line.strip() for line in paragraph.split("\n") if line.strip()]
    for li, line in enumerate(lines):
        pieces = [line] if len(line) <= target else split_sentences(line)
        for si, piece in enumerate(pieces):
            joiner = "\n\n" if li == 0 and si == 0 else ("\n" if si == 0 else " ")
            for wi, part in enumerate(_hard_split(piece, target)):
                out.append(_Unit(part, joiner if wi == 0 else " "))
    return out


def _hard_split(text: str, target: int) -> list[str]:
    """Split at spaces (or anywhere, for a space-less run) into pieces of at most `target` characters."""
    if len(text) <= target:
        return [text]
    parts: list[str] = []
    current = ""
    for word in text.split(" "):
        while len(word) > target:  # a huge token (base64, a URL): cut it
            if current:
                parts.append(current)
                current = ""
            parts.append(word[:target])
            word = word[target:]
        if current and len(current) + 1 + len(word) > target:
            parts.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        parts.append(current)
    return parts


def _join(units: list[_Unit]) -> str:
    return "".join((u.joiner if i else "") + u.text for i, u in enumerate(units)).strip()


def chunk_text(
    sections: Iterable[tuple[int | None, str]],
    target_chars: int = DEFAULT_TARGET_CHARS,
    overlap_chars: int = DEFAULT_OVERLAP_CHARS,
) -> list[Chunk]:
    """Pack paragraphs (or their sentences) into chunks of about `target_chars`, repeating about
    `overlap_chars` of the previous chunk's tail; chunks never span pages, so each keeps its page number."""
    if target_chars < 50:
        raise ValueError("target_chars must be at least 50")
    overlap_chars = max(0, min(overlap_chars, target_chars // 2))
    chunks: list[Chunk] = []
    for page, text in sections:
        units = [
            u for p in _PARAGRAPH_BREAK.split(text) if p.strip() for u in _units(p.strip(), target_chars)
        ]
        current: list[_Unit] = []
        size = 0
        fresh = False  # whether `current` holds anything beyond the overlap carried from the last chunk
        for unit in units:
            extra = len(unit.joiner) + len(unit.text)
            if current and size + extra > target_chars:
                if fresh:
                    chunks.append(Chunk(_join(current), page, len(chunks)))
                current, size = _tail(current, overlap_chars)
                if size + extra > target_chars:  # overlap and this unit do not fit together: drop the overlap
                    current, size = [], 0
            current.append(unit)
            size += extra if len(current) > 1 else len(unit.text)
            fresh = True
        if current and fresh:
            chunks.append(Chunk(_join(current), page, len(chunks)))
    return chunks


def _tail(units: list[_Unit], overlap_chars: int) -> tuple[list[_Unit], int]:
    """The last units of a chunk whose total length fits in `overlap_chars` (whole sentences only)."""
    tail: list[_Unit] = []
    size = 0
    for unit in reversed(units):
        extra = len(unit.text) + (len(unit.joiner) if tail else 0)
        if size + extra > overlap_chars:
            break
        tail.insert(0, unit)
        size += extra
    return tail, size
