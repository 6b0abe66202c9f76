"""`KnowledgeBase`: the async facade the bot and the CLI use; every blocking step runs off the event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from datetime import date as date_cls
from pathlib import Path
from typing import Any, Self

import numpy as np

from knowledge.chunking import DEFAULT_OVERLAP_CHARS, DEFAULT_TARGET_CHARS, chunk_text
from knowledge.embeddings import DEFAULT_EMBEDDING_BACKEND, DEFAULT_EMBEDDING_MODEL, Embedder
from knowledge.errors import EmptyDocumentError, FileTooLargeError, IngestCancelledError, InvalidInputError
from knowledge.loaders import check_filename, sanitize_filename
from knowledge.sandbox import ParseLimits, parse_in_subprocess
from knowledge.store import KnowledgeStore
from knowledge.types import (
    SEARCH_MODES,
    DocumentInfo,
    Hit,
    IngestProgress,
    IngestReport,
    IngestStage,
    KBStats,
    SearchMode,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[IngestProgress], Awaitable[None] | None]

DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024  # what the Telegram Bot API lets a bot download
EMBED_BATCH = 256  # chunks per embedding call: one progress event each


def parse_date(value: str | None) -> str:
    """`YYYY-MM-DD` as given, or today's UTC date; anything else is refused."""
    if value is None or not value.strip():
        return datetime.now(UTC).date().isoformat()
    try:
        return date_cls.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise InvalidInputError(f"Invalid date {value!r}: use YYYY-MM-DD, for example 2024-05-31.") from None


class KnowledgeBase:
    """Documents, hybrid search and ingestion; create with `await KnowledgeBase.open(...)`."""

    def __init__(
        self,
        store: KnowledgeStore,
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        parse_limits: ParseLimits | None = None,
        chunk_chars: int = DEFAULT_TARGET_CHARS,
        chunk_overlap: int = DEFAULT_OVERLAP_CHARS,
        max_chunks: int = 20_000,
    ) -> None:
        self._store = store
        self.max_file_bytes = max_file_bytes
        self.parse_limits = parse_limits or ParseLimits()
        self.chunk_chars = chunk_chars
        self.chunk_overlap = chunk_overlap
        self.max_chunks = max_chunks
        self._ingest_lock = asyncio.Lock()  # one ingest at a time: parsing and embedding are CPU-bound

    @classmethod
    async def open(
        cls,
        data_dir: Path,
        embedding_model: str = DEFAULT_EMBEDDING_MODEL,
        chroma_host: str | None = None,
        chroma_port: int = 8000,
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        parse_timeout_s: float = 30.0,
        parse_memory_mb: int = 1024,
        chunk_chars: int = DEFAULT_TARGET_CHARS,
        chunk_overlap: int = DEFAULT_OVERLAP_CHARS,
        max_chunks: int = 20_000,
        embedder: Embedder | None = None,
        shared_name: str = "default",
        embedding_backend: str = DEFAULT_EMBEDDING_BACKEND,
    ) -> KnowledgeBase:
        """Open (or create) the knowledge base under `data_dir`; the embedding model loads on first use.

        With `chroma_host` the knowledge base lives on the chroma server: every process opening it with the
        same `shared_name` sees the same documents (`data_dir` then holds nothing of it).
        `embedder` lets several knowledge bases in one process share a loaded model (it must be for
        `embedding_model`). `embedding_backend` (torch, onnx, onnx-int8, openvino) is exported once under
        `data_dir/models/embeddings`; changing it re-indexes the embedded store at the next open."""
        if embedder is None:
            embedder = Embedder(
                embedding_model, backend=embedding_backend, cache_dir=Path(data_dir) / "models" / "embeddings"
            )
        elif embedder.model_id != embedding_model:
            raise ValueError(f"embedder is for {embedder.model_id!r}, not {embedding_model!r}")
        store = await asyncio.to_thread(
            KnowledgeStore, Path(data_dir), embedder, chroma_host, chroma_port, shared_name
        )
        return cls(
            store,
            max_file_bytes=max_file_bytes,
            parse_limits=ParseLimits(timeout_s=parse_timeout_s, memory_mb=parse_memory_mb),
            chunk_chars=chunk_chars,
            chunk_overlap=chunk_overlap,
            max_chunks=max_chunks,
        )

    @property
    def embedder(self) -> Embedder:
        return self._store.embedder

    def precheck(self, filename: str, size: int | None = None, date: str | None = None) -> str:
        """What can be refused before the file is even downloaded: a path in the name, the size, a bad date.

        Returns the document date (`YYYY-MM-DD`); raises what `add_document` would raise for the same input."""
        check_filename(filename)  # the name is only ever displayed, but a path in it means a crafted upload
        if size is not None and size > self.max_file_bytes:
            raise FileTooLargeError(
                f"The file is {size / 2**20:.1f} MB; the limit is {self.max_file_bytes / 2**20:.0f} MB."
            )
        return parse_date(date)

    async def add_document(
        self,
        data: bytes,
        filename: str,
        uploader: str,
        date: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> IngestReport:
        """Detect, parse (sandboxed), chunk, embed and store one file; the same content replaces its copy.

        Raises a `KnowledgeError` subclass for unusable input; the knowledge base is then unchanged. Setting
        `cancel` stops the ingest at the next stage (the parser at once) with IngestCancelledError, unchanged too;
        once the write has begun it completes."""
        started = time.monotonic()
        doc_date = self.precheck(filename, len(data), date)
        name = sanitize_filename(filename)

        def event(stage: IngestStage, **fields: Any) -> IngestProgress:
            return IngestProgress(stage=stage, name=name, seconds=time.monotonic() - started, **fields)

        def check() -> None:
            if cancel is not None and cancel.is_set():
                raise IngestCancelledError()

        async with self._ingest_lock:
            check()
            await _notify(progress, event("downloaded"))
            # the worker refuses more text than max_chunks chunks hold, before sending it to us
            limits = dataclasses.replace(self.parse_limits, max_chars=self.max_chunks * self.chunk_chars)
            extracted = await asyncio.to_thread(parse_in_subprocess, data, limits, cancel)
            chunks = await asyncio.to_thread(
                chunk_text, extracted.sections, self.chunk_chars, self.chunk_overlap
            )
            if not chunks:
                raise EmptyDocumentError()
            if len(chunks) > self.max_chunks:
                raise FileTooLargeError(
                    f"The file holds too much text ({len(chunks)} chunks; the limit is {self.max_chunks})."
                )
            await _notify(
                progress, event("extracted", kind=extracted.kind, pages=extracted.pages, chunks=len(chunks))
            )
            parts = []
            for start in range(0, len(chunks), EMBED_BATCH):
                check()
                batch = [c.text for c in chunks[start : start + EMBED_BATCH]]
                parts.append(await asyncio.to_thread(self._store.embedder.embed, batch))
                done = min(start + EMBED_BATCH, len(chunks))
                await _notify(
                    progress, event("embedding", kind=extracted.kind, chunks=len(chunks), done=done)
                )
            vectors = np.concatenate(parts)
            check()  # the last moment to stop: the write below is atomic and runs to its end
            info, replaced = await asyncio.to_thread(
                self._store.write_document,
                name=name,
                kind=extracted.kind,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                pages=extracted.pages,
                date=doc_date,
                uploader=uploader,
                chunks=chunks,
                vectors=vectors,
            )
            seconds = time.monotonic() - started
            await _notify(
                progress, event("indexed", kind=extracted.kind, pages=extracted.pages, chunks=len(chunks))
            )
        log.info("indexed %s (%s): %d chunks in %.1f s", info.doc_id, extracted.kind, len(chunks), seconds)
        return IngestReport(document=info, replaced=replaced, chars=extracted.chars, seconds=seconds)

    async def list_documents(self) -> list[DocumentInfo]:
        return await asyncio.to_thread(self._store.list_documents)

    async def get_document(self, doc_id: str) -> DocumentInfo | None:
        return await asyncio.to_thread(self._store.get_document, doc_id.strip())

    async def delete(self, doc_id: str) -> bool:
        """Remove a document and its chunks; False when the id is unknown (does not wait for an ingest)."""
        return await asyncio.to_thread(self._store.delete, doc_id.strip())

    async def search(self, query: str, k: int = 5, mode: SearchMode = "hybrid") -> list[Hit]:
        """The `k` most relevant chunks, best first (hybrid: BM25 and dense fused by reciprocal rank)."""
        if mode not in SEARCH_MODES:
            raise InvalidInputError(f"Unknown search mode {mode!r}; use one of: {', '.join(SEARCH_MODES)}.")
        return await asyncio.to_thread(self._store.search, query, k, mode)

    async def is_empty(self) -> bool:
        """Whether there is nothing to search; with a chroma server, as the other processes left it."""
        if self._store.shared:
            await asyncio.to_thread(self._store.refresh)
        return self._store.is_empty()

    async def stats(self) -> KBStats:
        return await asyncio.to_thread(self._store.stats)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._store.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _notify(progress: ProgressCallback | None, event: IngestProgress) -> None:
    """Report a stage; a failing callback (a Telegram edit that hit a limit) must not fail the ingest."""
    if progress is None:
        return
    try:
        result = progress(event)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.warning("progress callback failed at stage %s", event.stage, exc_info=True)
