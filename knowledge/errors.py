"""Errors of the knowledge base; each message is user-facing and says what to do next.

    KnowledgeError
     +-- UnsupportedFileError      the content is not TXT/Markdown/PDF/DOCX/HTML
     +-- FileTooLargeError         over the byte limit, a zip bomb, or too much text
     +-- EmptyDocumentError        nothing to index (empty file, scanned PDF without text)
     +-- CorruptFileError          the parser could not read it
     |    +-- EncryptedFileError   a password-protected PDF
     +-- ParseTimeoutError         parsing ran past its time limit
     +-- ParseLimitError           parsing ran out of its memory limit or crashed
     +-- InvalidInputError         a bad argument (date, search mode, document id)
     |    +-- UnsafeFileNameError  a file name with a path in it (../../etc/passwd)
     +-- EmbeddingModelError       the embedding model cannot be found or loaded
     +-- StoreError                the vector store or the documents table failed
     +-- IngestCancelledError      the upload was cancelled before anything was written

The bot maps these by type to translated replies; `str(error)` is a complete English sentence.
"""

from __future__ import annotations


class KnowledgeError(Exception):
    """Base class: something the user can act on went wrong in the knowledge base."""

    default_message = "The knowledge base could not process the request."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self)


class UnsupportedFileError(KnowledgeError):
    """The file's content is of a type we do not index."""

    default_message = "Unsupported file type: send TXT, Markdown, PDF, DOCX or HTML."


class FileTooLargeError(KnowledgeError):
    """The file, its unpacked content or its text exceeds a limit."""

    default_message = "The file is too large to index."


def too_much_text(max_chars: int) -> FileTooLargeError:
    """The refusal of a document whose text is over the cap (KB_MAX_CHUNKS chunks' worth of characters)."""
    return FileTooLargeError(
        f"The document is too large: its text runs past {max_chars:,} characters, the most one file may add. "
        "Split it into smaller files."
    )


class EmptyDocumentError(KnowledgeError):
    """The file has no text to index."""

    default_message = "The file contains no text to index."


class CorruptFileError(KnowledgeError):
    """The file is damaged or malformed."""

    default_message = "The file is damaged and could not be read; check that it opens and try again."


class EncryptedFileError(CorruptFileError):
    """The file is password-protected."""

    default_message = "The PDF is password-protected; remove the password and upload it again."


class ParseTimeoutError(KnowledgeError):
    """Parsing took longer than allowed."""

    default_message = "Reading the file took too long; it may be malformed. Try a simpler or smaller file."


class ParseLimitError(KnowledgeError):
    """The parser exceeded its memory limit or crashed."""

    default_message = "Reading the file needed too much memory or crashed the parser; it may be malformed."


class InvalidInputError(KnowledgeError):
    """A bad argument: date, search mode, document id."""

    default_message = "Invalid input."


class UnsafeFileNameError(InvalidInputError):
    """The file name carries a directory part or control characters."""

    default_message = (
        "The file name contains a path or control characters; rename the file and send it again."
    )


class EmbeddingModelError(KnowledgeError):
    """The embedding model cannot be found or loaded."""

    default_message = "The embedding model could not be loaded; check EMBEDDING_MODEL."


class StoreError(KnowledgeError):
    """The vector store or the documents table failed."""

    default_message = "The knowledge store failed; nothing was changed. Try again later."


class IngestCancelledError(KnowledgeError):
    """The upload was cancelled; nothing was written."""

    default_message = "The upload was cancelled; the knowledge base is unchanged."


# Errors the parse worker may report by name (a whitelist: the worker's output never names arbitrary classes).
WORKER_ERRORS: dict[str, type[KnowledgeError]] = {
    cls.__name__: cls
    for cls in (
        UnsupportedFileError,
        FileTooLargeError,
        EmptyDocumentError,
        CorruptFileError,
        EncryptedFileError,
        ParseTimeoutError,
        ParseLimitError,
    )
}
