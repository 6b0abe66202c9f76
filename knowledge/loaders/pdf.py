"""The PDF loader: text per page, encrypted and oversized files refused."""

from __future__ import annotations

import io

from knowledge.errors import (
    CorruptFileError,
    EncryptedFileError,
    FileTooLargeError,
)
from knowledge.loaders.base import Extracted
from knowledge.loaders.text import clean_text

MAX_PDF_PAGES = 5_000


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
