"""The real type of a file, from its bytes alone (never its name or claimed MIME type)."""

from __future__ import annotations

import io
import re
import zipfile

from knowledge.errors import (
    CorruptFileError,
    EmptyDocumentError,
    UnsupportedFileError,
)
from knowledge.loaders.text import decode_text

# Binary formats we recognise only to name them in the refusal.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office file (.doc/.xls/.ppt)"),
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF87a", "a GIF image"),
    (0, b"GIF89a", "a GIF image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"BZh", "a bzip2 archive"),
    (0, b"\xfd7zXZ\x00", "an xz archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"Rar!\x1a\x07", "a RAR archive"),
    (0, b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (0, b"\x7fELF", "an executable"),
    (0, b"MZ", "an executable"),
    (0, b"SQLite format 3\x00", "an SQLite database"),
    (0, b"ID3", "an audio file"),
    (0, b"OggS", "an audio/video file"),
    (0, b"fLaC", "an audio file"),
    (0, b"{\\rtf", "an RTF document (save it as DOCX or PDF)"),
    (4, b"ftyp", "a video/audio file"),
)

_PDF_HEADER = re.compile(rb"(?:^|[\r\n])%PDF-\d")
_HTML_START = re.compile(
    r"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.IGNORECASE | re.DOTALL
)
_HTML_TAGS = re.compile(r"<(?:head|body|title|meta)[\s>]", re.IGNORECASE)
_HTML_CLOSE = re.compile(
    r"</(?:p|div|h[1-6]|li|ul|ol|table|tr|td|span|a|section|article|b|i|em|strong)>", re.IGNORECASE
)
_MD_SIGNALS = (
    re.compile(r"^#{1,6}\s+\S", re.MULTILINE),
    re.compile(r"^\s*(?:[-*+]|\d+\.)\s+\S", re.MULTILINE),
    re.compile(r"^```", re.MULTILINE),
    re.compile(r"\[[^\]\n]+\]\([^)\s]+\)"),
    re.compile(r"(?:\*\*|__)[^*_\n]+(?:\*\*|__)"),
    re.compile(r"^\s*\|.*\|\s*$", re.MULTILINE),
)


def detect_kind(data: bytes) -> str:
    """The real type of `data` from its content; raises for empty or unsupported content."""
    if not data.strip():
        raise EmptyDocumentError("The file is empty.")
    if _PDF_HEADER.search(data[:1024]):  # the spec tolerates junk before the header
        return "pdf"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(data)
    for offset, magic, what in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            raise UnsupportedFileError(
                f"Unsupported file type: this is {what}. Send TXT, Markdown, PDF, DOCX or HTML."
            )
    text, _ = decode_text(data)
    return text_kind(text)


def text_kind(text: str) -> str:
    """html, markdown or text, by structure."""
    head = text[:4096]
    if _HTML_START.match(head) or _HTML_TAGS.search(head) or len(_HTML_CLOSE.findall(text[:20000])) >= 5:
        return "html"
    signals = sum(1 for rx in _MD_SIGNALS if rx.search(text[:50000]))
    return "markdown" if signals >= 2 else "text"


def _zip_kind(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CorruptFileError("The file looks like a DOCX/zip archive but is damaged.") from exc
    if "word/document.xml" in names:
        return "docx"
    if any(n.startswith("xl/") for n in names):
        what = "an Excel workbook"
    elif any(n.startswith("ppt/") for n in names):
        what = "a PowerPoint presentation"
    elif "mimetype" in names:
        what = "an OpenDocument/EPUB file"
    else:
        what = "a zip archive"
    raise UnsupportedFileError(
        f"Unsupported file type: this is {what}. Send TXT, Markdown, PDF, DOCX or HTML."
    )
