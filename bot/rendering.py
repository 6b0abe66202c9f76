"""Model Markdown -> Telegram messages: text plus entities (no parse_mode to break), split at 4096 UTF-16 units."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pyromark
from telegramify_markdown import convert, split_entities, utf16_len
from telegramify_markdown.converter import STANDARD_OPTIONS

log = logging.getLogger(__name__)

TELEGRAM_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Chunk:
    """One Telegram message: text and its formatting entities (Bot API dicts)."""

    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)


def render(markdown: str, limit: int = TELEGRAM_LIMIT) -> list[Chunk]:
    """Convert Markdown to one or more non-empty messages of at most `limit` UTF-16 units each."""
    try:
        text, entities = convert(keep_html_as_text(markdown))
        parts = split_entities(text, entities, limit)
        chunks = [Chunk(t, [e.to_dict() for e in ents]) for t, ents in parts]
    except Exception:  # a converter bug must not lose the answer: fall back to plain text
        log.exception("markdown conversion failed; sending plain text")
        chunks = [Chunk(p) for p in split_plain(markdown, limit)]
    chunks = [c for c in chunks if c.text.strip()]
    if not chunks and any(ch.isalnum() for ch in markdown):
        chunks = [Chunk(p) for p in split_plain(markdown, limit)]  # the markup swallowed everything: show it raw
    if any(utf16_len(c.text) > limit for c in chunks):  # defensive: never hand Telegram an oversized text
        chunks = [Chunk(p) for c in chunks for p in split_plain(c.text, limit)]
    return chunks


def keep_html_as_text(markdown: str) -> str:
    """Escape `<` outside code so raw HTML in an answer is shown, not silently dropped by the converter."""
    if "<" not in markdown:
        return markdown
    data = markdown.encode()
    code: list[tuple[int, int]] = []
    for payload, where in pyromark.events_with_range(markdown, options=STANDARD_OPTIONS):
        if isinstance(payload, dict):
            start = payload.get("Start")
            if (isinstance(start, dict) and "CodeBlock" in start) or "Code" in payload:
                code.append((where["start"], where["end"]))
    out = bytearray()
    last = 0
    for begin, end in [*code, (len(data), len(data))]:
        out += data[last:begin].replace(b"<", b"\\<") + data[begin:end]
        last = end
    return out.decode()


def split_plain(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split plain text at line breaks (else spaces, else anywhere) into non-empty parts within `limit` UTF-16 units."""
    parts: list[str] = []
    rest = text
    while rest:
        if utf16_len(rest) <= limit:
            parts.append(rest)
            break
        cut = _prefix_len(rest, limit)
        window = rest[:cut]
        for sep in ("\n\n", "\n", " "):
            at = window.rfind(sep)
            if at > cut // 2:
                cut = at + len(sep)
                break
        parts.append(rest[:cut])
        rest = rest[cut:]
    return [p for p in parts if p.strip()]


def _prefix_len(text: str, limit: int) -> int:
    """The longest prefix (in code points) of `text` within `limit` UTF-16 units, never splitting a pair."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return max(i, 1)
    return len(text)


def preview(text: str, limit: int = TELEGRAM_LIMIT) -> str:
    """A plain-text preview of a partial answer for streaming (the tail is cut with an ellipsis)."""
    text = text.strip()
    if utf16_len(text) <= limit:
        return text
    return text[: _prefix_len(text, limit - 2)] + " …"
