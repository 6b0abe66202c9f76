"""File loaders: detect the real type from the bytes, then extract text per page or section.

These functions parse untrusted input; call them through `knowledge.sandbox.parse_in_subprocess`, which runs
them in a child process with time and memory limits. Nothing here looks at a file name or a claimed MIME type.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from knowledge.errors import (
    CorruptFileError,
    EmptyDocumentError,
    EncryptedFileError,
    FileTooLargeError,
    UnsafeFileNameError,
    UnsupportedFileError,
)

KINDS = ("text", "markdown", "pdf", "docx", "html")

# Zip-bomb guards for DOCX, checked on the central directory before anything is decompressed.
# (zipfile never inflates an entry past its declared size, so the declared sizes bound the real work.)
MAX_ZIP_ENTRIES = 2_000
MAX_ZIP_UNPACKED = 200 * 1024 * 1024
MAX_ZIP_RATIO = 100.0  # per entry and overall; ordinary DOCX XML compresses 5-20x
ZIP_RATIO_FLOOR = 1024 * 1024  # entries smaller than this unpacked are never a threat, whatever their ratio
MAX_PDF_PAGES = 5_000

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

_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)

_PDF_HEADER = re.compile(rb"(?:^|[\r\n])%PDF-\d")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
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
_ALLOWED_CONTROLS = {"\t", "\n", "\r", "\f", "\v"}


@dataclass(slots=True)
class Extracted:
    """Text extracted from one file: sections in document order, each with its page (PDF) or None."""

    kind: str
    sections: list[tuple[int | None, str]] = field(default_factory=list)
    pages: int | None = None
    encoding: str | None = None

    @property
    def chars(self) -> int:
        return sum(len(text) for _, text in self.sections)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "sections": self.sections, "pages": self.pages, "encoding": self.encoding}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Extracted:
        sections = [(None if p is None else int(p), str(t)) for p, t in obj["sections"]]
        return cls(
            kind=str(obj["kind"]), sections=sections, pages=obj.get("pages"), encoding=obj.get("encoding")
        )


def check_filename(name: str) -> None:
    """Refuse a name with a directory part, a traversal or control characters (never sent by real clients)."""
    if (
        re.search(r"[\\/]", name)
        or name.strip() in (".", "..")
        or any(unicodedata.category(ch) == "Cc" for ch in name)
    ):
        raise UnsafeFileNameError(
            f"The file name {sanitize_filename(name)!r} contains a path or control characters; "
            "rename the file and send it again."
        )


def sanitize_filename(name: str | None, default: str = "document") -> str:
    """A display name safe to show and store: no directories, control characters or leading dots."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[\\/]", name)[-1]  # both separators: a Windows path arrives on Linux too
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")  # controls, bidi overrides, ...
    name = re.sub(r"\s+", " ", name).strip().lstrip(".").strip()
    if len(name) > 120:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 120 - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 else name[:120]
    return name or default


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


# --- extraction ---------------------------------------------------------------------------------


def extract(data: bytes) -> Extracted:
    """Detect the type of `data` and extract its text; raises a `KnowledgeError` on anything unusable."""
    kind = detect_kind(data)
    if kind == "pdf":
        result = extract_pdf(data)
    elif kind == "docx":
        result = extract_docx(data)
    else:
        text, encoding = decode_text(data)
        if kind == "html":
            result = Extracted("html", [(None, html_to_text(text))], encoding=encoding)
        else:
            result = Extracted(kind, [(None, clean_text(text))], encoding=encoding)
    result.sections = [(page, text) for page, text in result.sections if text.strip()]
    if not result.sections:
        if kind == "pdf":
            raise EmptyDocumentError(
                "The PDF has no extractable text (a scan?). Upload a PDF with a text layer."
            )
        raise EmptyDocumentError()
    return result


def extract_pdf(data: bytes) -> Extracted:
    """Text of each page of a PDF; encrypted PDFs open only when their user password is empty."""
    import logging

    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # malformed files log a warning per object
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                    raise EncryptedFileError()
            except (DependencyError, NotImplementedError, PdfReadError) as exc:
                raise EncryptedFileError() from exc
        count = len(reader.pages)
    except EncryptedFileError:
        raise
    except Exception as exc:
        raise CorruptFileError("The PDF is damaged and could not be read.") from exc
    if count == 0:
        raise CorruptFileError("The PDF has no pages.")
    if count > MAX_PDF_PAGES:
        raise FileTooLargeError(f"The PDF has {count} pages; the limit is {MAX_PDF_PAGES}.")
    sections: list[tuple[int | None, str]] = []
    failed = 0
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception:  # noqa: BLE001 - one broken page should not lose the others
            failed += 1
            continue
        sections.append((number, clean_text(text)))
    if failed == count:
        raise CorruptFileError("The PDF is damaged: no page could be read.")
    return Extracted("pdf", sections, pages=count)


def check_zip(data: bytes) -> None:
    """Refuse zip bombs from the central directory alone, before decompressing anything."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CorruptFileError("The DOCX file is damaged (not a valid zip archive).") from exc
    if len(infos) > MAX_ZIP_ENTRIES:
        raise FileTooLargeError(f"The DOCX file has too many parts ({len(infos)}); it may be a zip bomb.")
    unpacked = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    if unpacked > MAX_ZIP_UNPACKED:
        raise FileTooLargeError(
            f"The DOCX file unpacks to {unpacked // 2**20} MB (limit {MAX_ZIP_UNPACKED // 2**20} MB); "
            "it may be a zip bomb."
        )
    for info in infos:
        if info.file_size > ZIP_RATIO_FLOOR and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
            raise FileTooLargeError("The DOCX file is compressed suspiciously well; it may be a zip bomb.")
    if unpacked > ZIP_RATIO_FLOOR and unpacked > MAX_ZIP_RATIO * max(packed, 1):
        raise FileTooLargeError("The DOCX file is compressed suspiciously well; it may be a zip bomb.")


def extract_docx(data: bytes) -> Extracted:
    """Body paragraphs and tables in document order, with each section's headers and footers around it."""
    check_zip(data)
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(_docx_blocks(document))
    except Exception as exc:
        raise CorruptFileError("The DOCX file is damaged and could not be read.") from exc
    text = "\n\n".join(b for b in blocks if b.strip())
    return Extracted("docx", [(None, clean_text(text))])


def _docx_blocks(document: Any) -> Iterator[str]:
    settings_even = bool(getattr(document.settings, "odd_and_even_pages_header_footer", False))
    seen_parts: set[int] = set()
    for section in document.sections:
        headers = [section.header]
        footers = [section.footer]
        if section.different_first_page_header_footer:
            headers.insert(0, section.first_page_header)
            footers.insert(0, section.first_page_footer)
        if settings_even:
            headers.append(section.even_page_header)
            footers.append(section.even_page_footer)
        yield from _header_footer_blocks(headers, seen_parts)
        for item in section.iter_inner_content():
            yield _docx_item(item)
        yield from _header_footer_blocks(footers, seen_parts)


def _header_footer_blocks(parts: list[Any], seen: set[int]) -> Iterator[str]:
    for part in parts:
        if part.is_linked_to_previous:
            continue  # the same text as the previous section's: say it once
        key = id(part.part)
        if key in seen:
            continue
        seen.add(key)
        for item in part.iter_inner_content():
            yield _docx_item(item)


def _docx_item(item: Any) -> str:
    from docx.table import Table

    if isinstance(item, Table):
        return _docx_table(item)
    text = item.text.strip()
    style = getattr(getattr(item, "style", None), "name", "") or ""
    match = re.match(r"Heading (\d)", style)
    if text and match:
        return "#" * int(match.group(1)) + " " + text
    if text and style == "Title":
        return "# " + text
    return text


def _docx_table(table: Any, depth: int = 0) -> str:
    from docx.table import Table

    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous: Any = None
        for cell in row.cells:
            if previous is not None and cell._tc is previous:  # a merged cell repeats: keep it once
                continue
            previous = cell._tc
            parts: list[str] = []
            for inner in cell.iter_inner_content():
                if isinstance(inner, Table):
                    if depth < 3:
                        parts.append(_docx_table(inner, depth + 1))
                elif inner.text.strip():
                    parts.append(inner.text.strip())
            cells.append(" ".join(" ".join(parts).split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


_BLOCK_TAGS = (
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section", "article",
    "header", "footer", "nav", "aside", "main", "pre", "blockquote", "dd", "dt", "dl", "hr", "figure", "figcaption",
    "caption", "form", "fieldset", "address", "details", "summary",
)  # fmt: skip


def html_to_text(html: str) -> str:
    """Visible text of an HTML page: scripts and styles dropped, blocks as paragraphs, cells joined by `|`."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "svg", "head", "iframe", "object", "canvas"]):
        tag.decompose()
    for tag in soup.find_all(["td", "th"]):
        tag.insert_after(" | ")
    for tag in soup.find_all(_BLOCK_TAGS):
        if tag.name in ("h1", "h2", "h3", "h4", "h5", "h6"):
            tag.insert_before("\n\n" + "#" * int(tag.name[1]) + " ")
        else:
            tag.insert_before("\n\n" if tag.name not in ("br", "tr", "li") else "\n")
        tag.insert_after("\n\n" if tag.name not in ("br", "tr", "li") else "\n")
    text = soup.get_text("")
    text = re.sub(r"[ \t]*\|[ \t]*\n", "\n", text)  # the separator after a row's last cell
    text = clean_text(text)
    if title and not text.startswith(title):
        text = f"{title}\n\n{text}"
    return text
