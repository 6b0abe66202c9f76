"""The DOCX loader: paragraphs, tables, headers and footers in order, after the zip-bomb checks."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from typing import Any

from knowledge.errors import (
    CorruptFileError,
    FileTooLargeError,
)
from knowledge.loaders.base import Extracted
from knowledge.loaders.text import clean_text

# Zip-bomb guards for DOCX, checked on the central directory before anything is decompressed.
# (zipfile never inflates an entry past its declared size, so the declared sizes bound the real work.)
MAX_ZIP_ENTRIES = 2_000
MAX_ZIP_UNPACKED = 200 * 1024 * 1024
MAX_ZIP_RATIO = 100.0  # per entry and overall; ordinary DOCX XML compresses 5-20x
ZIP_RATIO_FLOOR = 1024 * 1024  # entries smaller than this unpacked are never a threat, whatever their ratio


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
