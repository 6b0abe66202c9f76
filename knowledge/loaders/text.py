"""Plain text and Markdown: the encoding guessed (BOMs, declared charsets, Cyrillic code pages), binary
refused, control characters dropped."""

from __future__ import annotations

import re
import unicodedata

from knowledge.errors import (
    CorruptFileError,
    UnsupportedFileError,
)

_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_ALLOWED_CONTROLS = {"\t", "\n", "\r", "\f", "\v"}


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode a text file (BOM, strict UTF-8, HTML meta charset, then charset-normalizer); refuse binary."""
    text: str | None = None
    encoding = ""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                text, encoding = data.decode(enc), enc
            except UnicodeDecodeError as exc:
                raise CorruptFileError(f"The text file is not valid {enc}.") from exc
            break
    if text is None and b"\x00" in data[:8192]:
        # No BOM and NUL bytes: binary (UTF-16 without a BOM is too rare to risk misreading binary as text).
        raise UnsupportedFileError("Unsupported file type: the file is binary, not text.")
    if text is None:
        try:
            text, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    if text is None:
        declared = _META_CHARSET.search(data[:4096])
        if declared:
            try:
                enc = declared.group(1).decode("ascii").lower()
                text, encoding = data.decode(enc), enc
            except (LookupError, UnicodeDecodeError):
                text = None
    if text is None:
        text, encoding = _guess_decode(data)
    _refuse_binary(text)
    return text, encoding


_CYRILLIC_CODEPAGES = ("cp1251", "koi8_r", "cp866", "mac_cyrillic", "iso8859_5")


def _guess_decode(data: bytes) -> tuple[str, str]:
    sample = data[:200_000]
    # charset-normalizer often takes short Russian text for mac_cyrillic, shift_jis or cp1125; try the
    # Cyrillic codepages first and keep the one whose letters look like real Russian (mostly lowercase).
    scored = [(_cyrillic_score(sample, enc), enc) for enc in _CYRILLIC_CODEPAGES]
    score, encoding = max(scored, key=lambda pair: pair[0])  # first wins ties: cp1251 is the most common
    if score > 0:
        return data.decode(encoding, errors="replace"), encoding
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    if best is None:
        raise UnsupportedFileError("Unsupported file type: the file is binary, not text.")
    return data.decode(best.encoding, errors="replace"), best.encoding


def _cyrillic_score(data: bytes, encoding: str) -> float:
    """How much `data` decoded with `encoding` looks like Russian; <= 0 unless most letters are Cyrillic."""
    try:
        text = data.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        return -1.0
    letters = sum(1 for ch in text if ch.isalpha())
    cyrillic = sum(1 for ch in text if "\u0400" <= ch <= "\u04ff")
    if not letters or cyrillic / letters < 0.5:
        return -1.0
    score = 0.0
    previous = " "
    for ch in text:
        if "а" <= ch <= "я" or ch == "ё":
            score += 1
        elif "А" <= ch <= "Я" or ch == "Ё":
            score -= (
                2 if previous.isalpha() else 0
            )  # capitals start words; inside one they mean a wrong codepage
        elif ch > "\x7f" and not ch.isspace():
            score -= 5  # Serbian/Macedonian letters, box drawing, currency signs: a wrong codepage
        previous = ch
    return score


def _refuse_binary(text: str) -> None:
    sample = text[:100_000]
    if not sample:
        return
    bad = sum(
        1
        for ch in sample
        if (unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS) or ch == "\ufffd"
    )
    if bad / len(sample) > 0.01:
        raise UnsupportedFileError("Unsupported file type: the file is binary, not text.")


def clean_text(text: str) -> str:
    """Normalise newlines and spaces, drop control characters, keep paragraph breaks."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "".join(ch for ch in text if ch in _ALLOWED_CONTROLS or unicodedata.category(ch) != "Cc")
    text = text.replace("\f", "\n\n").replace("\v", "\n").replace("\u00a0", " ").replace("\u200b", "")
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()
