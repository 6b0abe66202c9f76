"""Knowledge base: sandboxed loaders, chunking, embeddings, chroma + BM25 hybrid search, an async facade.

`KnowledgeBase` is imported lazily: importing `knowledge` (as the parse worker does) loads neither chromadb
nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from knowledge.errors import (
    CorruptFileError,
    EmbeddingModelError,
    EmptyDocumentError,
    EncryptedFileError,
    FileTooLargeError,
    IngestCancelledError,
    InvalidInputError,
    KnowledgeError,
    ParseLimitError,
    ParseTimeoutError,
    StoreError,
    UnsafeFileNameError,
    UnsupportedFileError,
)
from knowledge.types import DocumentInfo, Hit, IngestProgress, IngestReport, KBStats, SearchMode

if TYPE_CHECKING:
    from knowledge.embeddings import Embedder
    from knowledge.kb import KnowledgeBase

__all__ = [
    "CorruptFileError",
    "DocumentInfo",
    "Embedder",
    "EmbeddingModelError",
    "EmptyDocumentError",
    "EncryptedFileError",
    "FileTooLargeError",
    "Hit",
    "IngestCancelledError",
    "IngestProgress",
    "IngestReport",
    "InvalidInputError",
    "KBStats",
    "KnowledgeBase",
    "KnowledgeError",
    "ParseLimitError",
    "ParseTimeoutError",
    "SearchMode",
    "StoreError",
    "UnsafeFileNameError",
    "UnsupportedFileError",
]


def __getattr__(name: str) -> Any:
    if name == "KnowledgeBase":
        from knowledge.kb import KnowledgeBase

        return KnowledgeBase
    if name == "Embedder":
        from knowledge.embeddings import Embedder

        return Embedder
    raise AttributeError(f"module 'knowledge' has no attribute {name!r}")
