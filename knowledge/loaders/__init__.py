"""File loaders: detect the real type from the bytes, then extract text per page or section, one loader per type.

These functions parse untrusted input; call them through `knowledge.sandbox.parse_in_subprocess`, which runs
them in a child process with time and memory limits. Nothing here looks at a file name or a claimed MIME type.
Each loader is `load(data) -> Extracted` in its own module (`text`, `pdf`, `word` for DOCX, `web` for HTML);
`extract` detects the kind (`detect`) and calls the loader registered for it in `LOADERS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from knowledge.errors import EmptyDocumentError
from knowledge.loaders.base import KINDS, Extracted, check_filename, sanitize_filename
from knowledge.loaders.detect import detect_kind, text_kind
from knowledge.loaders.pdf import MAX_PDF_PAGES, extract_pdf
from knowledge.loaders.text import clean_text, decode_text
from knowledge.loaders.web import html_to_text
from knowledge.loaders.word import MAX_ZIP_ENTRIES, MAX_ZIP_RATIO, MAX_ZIP_UNPACKED, check_zip, extract_docx

__all__ = ["KINDS", "LOADERS", "MAX_PDF_PAGES", "MAX_ZIP_ENTRIES", "MAX_ZIP_RATIO", "MAX_ZIP_UNPACKED", "Extracted",
           "check_filename", "check_zip", "clean_text", "decode_text", "detect_kind", "extract", "extract_docx",
           "extract_pdf", "html_to_text", "sanitize_filename", "text_kind"]

Loader = Callable[[bytes], Extracted]


def _text(data: bytes, kind: str) -> Extracted:
    text, encoding = decode_text(data)
    return Extracted(kind, [(None, clean_text(text))], encoding=encoding)


def _html(data: bytes) -> Extracted:
    text, encoding = decode_text(data)
    return Extracted("html", [(None, html_to_text(text))], encoding=encoding)


LOADERS: dict[str, Loader] = {
    "text": functools.partial(_text, kind="text"),
    "markdown": functools.partial(_text, kind="markdown"),
    "pdf": extract_pdf,
    "docx": extract_docx,
    "html": _html,
}


def extract(data: bytes) -> Extracted:
    """Detect the type of `data` and extract its text; raises a `KnowledgeError` on anything unusable."""
    kind = detect_kind(data)
    result = LOADERS[kind](data)
    result.sections = [(page, text) for page, text in result.sections if text.strip()]
    if not result.sections:
        if kind == "pdf":
            raise EmptyDocumentError(
                "The PDF has no extractable text (a scan?). Upload a PDF with a text layer."
            )
        raise EmptyDocumentError()
    return result
