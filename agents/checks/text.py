"""Text helpers every check shares: normalisation for matching, and masking of code and URLs.

`normalize` decides when two answers "say the same words": case, runs of whitespace (no-break and thin spaces
included) and `ё`/`е` do not matter, because models and people write them either way. `mask_code_and_urls`
blanks fenced code, inline code and URLs with spaces of the same length, so a check can skip them and still
report offsets and spans in the original text.
"""

from __future__ import annotations

import re

__all__ = ["CYRILLIC", "URL_RE", "cyrillic_share", "mask_code_and_urls", "normalize"]

_SPACE_RE = re.compile(r"\s+")
# An unclosed fence runs to the end of the text: a streamed answer may stop inside one.
_FENCE_RE = re.compile(r"(^|\n)[ \t]*(```|~~~)[^\n]*\n.*?(\n[ \t]*\2[ \t]*(?=\n|$)|$)", re.S)
_INLINE_CODE_RE = re.compile(r"`[^`\n]+`")
URL_RE = re.compile(r"""(?:https?://|ftp://|www\.)[^\s<>"'()\[\]{}]+|\b[\w.+-]+@[\w-]+\.[\w.-]+""", re.I)
CYRILLIC = re.compile(r"[а-яё]", re.I)
_LETTER_RE = re.compile(r"[^\W\d_]")


def normalize(text: str) -> str:
    """Lower-cased text with `ё` as `е` and every run of whitespace as one space, trimmed."""
    return _SPACE_RE.sub(" ", text.casefold().replace("ё", "е")).strip()


def _blank(match: re.Match[str]) -> str:
    # Keep newlines so line-based rules (list markers, tables) still see the same lines.
    return "".join(c if c == "\n" else " " for c in match.group(0))


def mask_code_and_urls(text: str) -> str:
    """`text` with fenced code, inline code and URLs replaced by spaces (same length, newlines kept)."""
    if "`" in text or "~~~" in text:  # most texts have no code: skip the scans that cannot match
        text = _FENCE_RE.sub(_blank, text)
        text = _INLINE_CODE_RE.sub(_blank, text)
    if "://" in text or "@" in text or "www." in text.lower():
        text = URL_RE.sub(_blank, text)
    return text


def cyrillic_share(text: str) -> float:
    """Share of letters in `text` that are Cyrillic (0.0 when it has no letters)."""
    letters = _LETTER_RE.findall(text)
    if not letters:
        return 0.0
    return sum(1 for c in letters if CYRILLIC.match(c)) / len(letters)
