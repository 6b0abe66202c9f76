"""The synchronous store: documents and chunks in SQLite, vectors in chroma, BM25 in memory, fused by RRF.

Local mode (no chroma host): SQLite (`data_dir/knowledge.sqlite3`) is the source of truth for documents and
chunk texts; chroma holds the vectors (`data_dir/chroma`); the BM25 index is rebuilt from SQLite at open. A write
adds the new vectors first, then commits SQLite in one transaction, then drops the replaced vectors: a failure at
any step leaves the documents exactly as they were, and `open` removes vectors no document owns. (Over 400 lines
on purpose: that write protocol, the re-index on a model or backend change and the cancellation checks are one
ordering argument, read together.)

Shared mode (a chroma server, several bot processes): the server is the source of truth. Each chunk is stored
with its text and metadata; a small registry collection holds one record per document (its `nonce` says which
write of the document is current) and a generation record that every add and delete changes last. Each process
keeps a private in-memory SQLite mirror and BM25 index; before each read it fetches the generation (one small
request, about 1.5 ms on loopback) and, when it changed, brings the mirror up to date from the registry and the
stored chunks. Every method blocks: call them from a worker thread (`knowledge.KnowledgeBase` does).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.chunking import Chunk
from knowledge.embeddings import ChromaEmbedding, Embedder
from knowledge.errors import EmbeddingModelError, InvalidInputError, StoreError
from knowledge.fusion import FusedSearch
from knowledge.lexical import BM25Index
from knowledge.store_mirror import _DOC_COLUMNS, ORPHAN_GRACE_S, SharedMirror
from knowledge.types import DocumentInfo, KBStats

__all__ = ["ORPHAN_GRACE_S", "KnowledgeStore", "collection_name"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id   TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    kind     TEXT NOT NULL,
    sha256   TEXT NOT NULL UNIQUE,
    size     INTEGER NOT NULL,
    pages    INTEGER,
    chunks   INTEGER NOT NULL,
    date     TEXT NOT NULL,
    uploader TEXT NOT NULL,
    created  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id TEXT PRIMARY KEY,
    doc_id   TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    idx      INTEGER NOT NULL,
    page     INTEGER,
    text     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id, idx);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_SHARED_NAME = re.compile(r"[A-Za-z0-9_-]{1,12}")


def collection_name(kb_id: str, model_id: str) -> str:
    """One chroma collection per knowledge base and embedding model (with its backend, `Embedder.identity`):
    knowledge bases sharing a chroma server never see each other's vectors, and vectors of different models or
    backends never mix."""
    return f"adaptbot_kb_{kb_id[:12]}_{hashlib.sha256(model_id.encode('utf-8')).hexdigest()[:12]}"


class KnowledgeStore(SharedMirror, FusedSearch):
    """Documents, chunks, vectors and the lexical index of one knowledge base (the shared-mode mirror and the
    fused search are in `store_mirror.py` and `fusion.py`)."""

    def __init__(
        self,
        data_dir: Path,
        embedder: Embedder,
        chroma_host: str | None = None,
        chroma_port: int = 8000,
        shared_name: str = "default",
    ) -> None:
        """With `chroma_host`, every store opened with the same `shared_name` on that server is one knowledge
        base, whatever its `data_dir`."""
        self.data_dir = Path(data_dir)
        self.embedder = embedder
        self.shared = bool(chroma_host)
        if self.shared and not _SHARED_NAME.fullmatch(shared_name):
            raise InvalidInputError("shared_name: 1-12 letters, digits, - or _")
        self._lock = threading.RLock()  # one writer at a time; SQLite reads share the connection
        self._bm25 = BM25Index()
        self._closed = False
        self._nonces: dict[str, str] = {}  # shared mode: doc id -> the write the mirror holds
        self._generation: str | None = None  # shared mode: the registry generation the mirror reflects
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Shared mode keeps a private mirror in memory: replicas may share DATA_DIR, and a file written by
            # several of them would be a second source of truth to keep consistent.
            where = ":memory:" if self.shared else self.data_dir / "knowledge.sqlite3"
            self._db = sqlite3.connect(where, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"Cannot open the documents table under {self.data_dir}: {exc}") from exc
        self._client: Any = None
        try:
            self.kb_id = shared_name if self.shared else self._get_meta("kb_id") or self._init_kb_id()
            self.identity = self._settle_backend()
            self._client, self._collection = self._open_chroma(chroma_host, chroma_port)
            self._chunk_count = self._scalar("SELECT COUNT(*) FROM chunks")
            self._bm25.add(self._db.execute("SELECT chunk_id, text FROM chunks").fetchall())
            if self.shared:
                try:
                    self._registry = self._client.get_or_create_collection(
                        f"{self._collection.name}_docs", embedding_function=None  # records carry a dummy vector
                    )
                    self._sync(self._read_generation(), full=True)
                except Exception as exc:
                    raise StoreError(f"Cannot read the knowledge base from the chroma server: {exc}") from exc
            else:
                self._reconcile()
        except BaseException:
            self.close()  # a half-opened store must not keep the database or the chroma client
            raise

    # --- opening ------------------------------------------------------------------------------

    def _settle_backend(self) -> str:
        """The embedder's identity once its backend is settled (an ONNX export made or found, or torch after a
        failed one), so that the collection chosen below is the one its vectors belong in."""
        try:
            return self.embedder.prepare()
        except EmbeddingModelError:  # an unusable model: the store still opens; embedding says why, each time
            log.warning("embedding model %s could not be loaded", self.embedder.model_id, exc_info=True)
            return self.embedder.identity

    def _open_chroma(self, host: str | None, port: int) -> tuple[Any, Any]:
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        try:
            if host:
                from knowledge.chroma_http import http_client

                client = http_client(host, port, settings)  # chromadb.HttpClient with a timeout on each request
            else:
                client = chromadb.PersistentClient(path=str(self.data_dir / "chroma"), settings=settings)
            collection = client.get_or_create_collection(
                collection_name(self.kb_id, self.identity),
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"embedding_model": self.embedder.model_id, "embedding_backend": self.embedder.backend},
                embedding_function=ChromaEmbedding(self.embedder),  # never chroma's default: it downloads
            )
        except Exception as exc:
            where = f"the chroma server at {host}:{port}" if host else str(self.data_dir / "chroma")
            raise StoreError(f"Cannot open the vector store ({where}): {exc}") from exc
        return client, collection

    def _reconcile(self) -> None:
        """Make chroma hold exactly the chunks SQLite has: drop orphans of interrupted writes, embed what is
        missing (after a crash, or when EMBEDDING_MODEL changed and this model's collection is new)."""
        stored = self._vector_ids()
        known = {row[0] for row in self._db.execute("SELECT chunk_id FROM chunks")}
        orphans = sorted(stored - known)
        if orphans:
            log.warning("removing %d vectors that no document owns", len(orphans))
            self._delete_vectors(orphans)
        missing = sorted(known - stored)
        if missing:
            log.warning("embedding %d chunks that have no vector in %s", len(missing), self._collection.name)
            for start in range(0, len(missing), 512):
                batch = missing[start : start + 512]
                rows = self._chunk_rows(batch)
                texts = [rows[cid]["text"] for cid in batch]
                self._add_vectors(
                    batch, self.embedder.embed(texts), texts, [self._meta(rows[cid]) for cid in batch]
                )
        previous = self._get_meta("collection")
        if previous and previous != self._collection.name:
            try:  # the vectors of the previous EMBEDDING_MODEL or backend: all chunks now have vectors of this one
                self._client.delete_collection(previous)
            except Exception:
                log.warning("could not delete the old collection %s", previous, exc_info=True)
        self._set_meta("collection", self._collection.name)
        self._set_meta("embedding_model", self.identity)

    # --- small helpers --------------------------------------------------------------------------

    def _scalar(self, sql: str, *args: Any) -> int:
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def _get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _init_kb_id(self) -> str:
        kb_id = secrets.token_hex(8)
        self._set_meta("kb_id", kb_id)
        return kb_id

    def _set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _chunk_rows(self, chunk_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(chunk_ids), 500):
                batch = list(chunk_ids[start : start + 500])
                marks = ",".join("?" * len(batch))
                cursor = self._db.execute(
                    "SELECT c.chunk_id, c.text, c.page, c.idx, d.doc_id, d.name, d.date FROM chunks c "
                    f"JOIN documents d ON d.doc_id = c.doc_id WHERE c.chunk_id IN ({marks})",
                    batch,
                )
                for cid, text, page, idx, doc_id, name, date in cursor:
                    rows[cid] = {"text": text, "page": page, "index": idx, "doc_id": doc_id, "source": name,
                                 "date": date}  # fmt: skip
        return rows

    @staticmethod
    def _meta(row: dict[str, Any]) -> dict[str, Any]:
        meta = {"doc_id": row["doc_id"], "source": row["source"], "date": row["date"], "index": row["index"]}
        if row.get("nonce"):  # which write of the document the chunk belongs to, and when it was written
            meta["nonce"] = row["nonce"]
            meta["written"] = int(time.time())
        if row["page"] is not None:
            meta["page"] = row["page"]  # chroma metadata cannot hold None
        return meta

    def _add_vectors(
        self, ids: list[str], vectors: np.ndarray, texts: list[str], metas: list[dict[str, Any]]
    ) -> None:
        if self.embedder.identity != self.identity:  # the backend fell back after open: never mix its vectors
            raise StoreError(
                f"The embedding backend changed to {self.embedder.backend} while the knowledge base was open; "
                "restart to re-index it with that backend."
            )
        step = 1000
        for start in range(0, len(ids), step):
            self._collection.add(
                ids=ids[start : start + step],
                embeddings=vectors[start : start + step],
                documents=texts[start : start + step],
                metadatas=metas[start : start + step],
            )

    def _delete_vectors(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), 1000):
            self._collection.delete(ids=list(ids[start : start + 1000]))

    def _delete_vectors_quietly(self, ids: Sequence[str]) -> None:
        try:
            self._delete_vectors(ids)
        except Exception:  # the next open removes them: they belong to no document
            log.exception("could not delete %d vectors; they will be removed at the next start", len(ids))

    @staticmethod
    def _doc(row: Sequence[Any]) -> DocumentInfo:
        return DocumentInfo(*row)

    # --- documents ------------------------------------------------------------------------------

    def list_documents(self) -> list[DocumentInfo]:
        self.refresh()
        with self._lock:
            rows = self._db.execute(f"SELECT {_DOC_COLUMNS} FROM documents ORDER BY rowid").fetchall()
        return [self._doc(r) for r in rows]

    def get_document(self, doc_id: str) -> DocumentInfo | None:
        self.refresh()
        with self._lock:
            row = self._db.execute(
                f"SELECT {_DOC_COLUMNS} FROM documents WHERE doc_id = ?", (doc_id,)
            ).fetchone()
        return self._doc(row) if row else None

    def find_by_sha256(self, sha256: str) -> DocumentInfo | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_DOC_COLUMNS} FROM documents WHERE sha256 = ?", (sha256,)
            ).fetchone()
        return self._doc(row) if row else None

    def stats(self) -> KBStats:
        self.refresh()
        return KBStats(
            documents=self._scalar("SELECT COUNT(*) FROM documents"),
            chunks=self._scalar("SELECT COUNT(*) FROM chunks"),
            vectors=int(self._collection.count()),
            lexical=len(self._bm25),
        )

    def is_empty(self) -> bool:
        """As of the last refresh (shared mode: call `refresh` first, off the event loop)."""
        return self._chunk_count == 0

    def _new_doc_id(self, sha256: str) -> str:
        # Short ids for `/kb_del ID`, derived from the content; lengthen on the rare prefix collision.
        for length in range(8, 65, 4):
            candidate = sha256[:length]
            if self._scalar("SELECT COUNT(*) FROM documents WHERE doc_id = ?", candidate) == 0:
                return candidate
        raise StoreError("Could not allocate a document id.")

    def write_document(
        self,
        *,
        name: str,
        kind: str,
        sha256: str,
        size: int,
        pages: int | None,
        date: str,
        uploader: str,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
    ) -> tuple[DocumentInfo, bool]:
        """Store a document with its chunks and vectors, replacing a document with the same content."""
        if len(chunks) != len(vectors) or not chunks:
            raise ValueError("one vector per chunk, and at least one chunk")
        with self._lock:
            self.refresh()  # shared mode: the same content uploaded through another process is replaced
            existing = self.find_by_sha256(sha256)
            doc_id = existing.doc_id if existing else self._new_doc_id(sha256)
            created = datetime.now(UTC).isoformat(timespec="seconds")
            info = DocumentInfo(doc_id, name, kind, sha256, size, pages, len(chunks), date, uploader, created)
            nonce = secrets.token_hex(4)  # new ids per write: the old vectors stay until the commit
            ids = [f"{doc_id}-{nonce}-{c.index}" for c in chunks]
            texts = [c.text for c in chunks]
            metas = [
                self._meta(
                    {
                        "doc_id": doc_id, "source": name, "date": date, "index": c.index, "page": c.page,
                        "nonce": nonce,
                    }
                )
                for c in chunks
            ]
            old_ids = (
                [r[0] for r in self._db.execute("SELECT chunk_id FROM chunks WHERE doc_id = ?", (doc_id,))]
                if existing
                else []
            )
            try:
                self._add_vectors(ids, vectors, texts, metas)
            except Exception as exc:
                self._delete_vectors_quietly(ids)
                raise StoreError(
                    f"The vector store refused the document; nothing was changed ({exc})."
                ) from exc
            if self.shared:  # the document exists for every process once its registry record is written
                record = {"name": name, "kind": kind, "sha256": sha256, "size": size, "chunks": len(chunks),
                          "date": date, "uploader": uploader, "created": created, "nonce": nonce}  # fmt: skip
                if pages is not None:
                    record["pages"] = pages  # chroma metadata cannot hold None
                try:
                    self._registry.upsert(ids=[doc_id], embeddings=[[1.0]], metadatas=[record])
                except Exception as exc:
                    self._delete_vectors_quietly(ids)
                    raise StoreError(
                        f"The vector store refused the document; nothing was changed ({exc})."
                    ) from exc
            try:
                with self._transaction() as db:
                    db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))  # chunks cascade
                    db.execute(
                        f"INSERT INTO documents({_DOC_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (doc_id, name, kind, sha256, size, pages, len(chunks), date, uploader, created),
                    )
                    db.executemany(
                        "INSERT INTO chunks(chunk_id, doc_id, idx, page, text) VALUES (?, ?, ?, ?, ?)",
                        [(cid, doc_id, c.index, c.page, c.text) for cid, c in zip(ids, chunks, strict=True)],
                    )
            except sqlite3.Error as exc:
                self._delete_vectors_quietly(ids)
                raise StoreError(
                    f"The documents table refused the document; nothing was changed ({exc})."
                ) from exc
            self._chunk_count = self._chunk_count - len(old_ids) + len(ids)
            self._bm25.remove(old_ids)
            self._bm25.add(zip(ids, texts, strict=True))
            if old_ids:
                self._delete_vectors_quietly(old_ids)
            if self.shared:
                self._nonces[doc_id] = nonce
                self._bump_generation()
        return info, existing is not None

    def delete(self, doc_id: str) -> bool:
        """Remove a document and its chunks; False when there is no such document."""
        with self._lock:
            self.refresh()  # shared mode: a document added through another process can be deleted here
            ids = [r[0] for r in self._db.execute("SELECT chunk_id FROM chunks WHERE doc_id = ?", (doc_id,))]
            if self.shared and ids:
                try:  # unregister first: from then on no process loads it, whatever happens next
                    self._registry.delete(ids=[doc_id])
                except Exception as exc:
                    raise StoreError(f"Could not delete the document; nothing was changed ({exc}).") from exc
            try:
                with self._transaction() as db:
                    deleted = db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,)).rowcount
            except sqlite3.Error as exc:
                raise StoreError(f"Could not delete the document; nothing was changed ({exc}).") from exc
            if not deleted:
                return False
            self._chunk_count -= len(ids)
            self._bm25.remove(ids)
            self._delete_vectors_quietly(ids)
            if self.shared:
                self._nonces.pop(doc_id, None)
                self._bump_generation()
        return True

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.close()
            finally:
                close = getattr(self._client, "close", None)  # HttpClient has none in some versions
                if close is not None:
                    close()
