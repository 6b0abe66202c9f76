"""Shared mode of the knowledge store: the chroma server is the truth, each process holds a mirror.

A small registry collection holds one record per document (its `nonce` says which write of the document is
current) and a generation record that every add and delete changes last. Before each read the store fetches the
generation and, when it changed, brings its private SQLite mirror and BM25 index up to date (see `store.py`).
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from typing import Any

from knowledge.lexical import BM25Index

log = logging.getLogger("knowledge.store")

_DOC_COLUMNS = "doc_id, name, kind, sha256, size, pages, chunks, date, uploader, created"
_GENERATION_ID = "~generation"  # the registry record every write changes; document ids are hex, never this
# Shared mode: a chunk no registered document owns is removed at open only once it is this old. An upload in
# another process writes its vectors first and registers the document after embedding and writing them (seconds
# to minutes for a big file), so a younger unowned chunk may be one in flight, not the remains of a crash.
ORPHAN_GRACE_S = 600.0


class SharedMirror:
    """The shared-mode half of `KnowledgeStore` (a mixin: it works on the store's database, lock and index)."""

    shared: bool
    _closed: bool
    _lock: threading.RLock
    _db: sqlite3.Connection
    _bm25: BM25Index
    _registry: Any
    _collection: Any
    _nonces: dict[str, str]
    _generation: str | None
    _chunk_count: int

    def _read_generation(self) -> str:
        got = self._registry.get(ids=[_GENERATION_ID], include=["metadatas"])
        metas = got.get("metadatas") or []
        return str(metas[0]["token"]) if got["ids"] and metas and metas[0] else ""

    def _bump_generation(self) -> None:
        """Tell the other processes that the documents changed: always the last step of a write or delete."""
        try:
            self._registry.upsert(
                ids=[_GENERATION_ID], embeddings=[[1.0]], metadatas=[{"token": secrets.token_hex(8)}]
            )
        except Exception:  # the change is stored; other processes see it at the next change
            log.exception("could not publish a knowledge base change to the other processes")

    def refresh(self) -> None:
        """Shared mode: bring the mirror up to date when another process changed the documents (one small
        request when nothing changed). An unreachable server leaves the mirror as it was."""
        if not self.shared or self._closed:
            return
        try:
            token = self._read_generation()
            if token == self._generation:
                return
            with self._lock:
                if token != self._generation:
                    self._sync(token, full=False)
        except Exception:  # the dense half of a search reports the outage; list and emptiness stay usable
            log.warning("could not refresh the knowledge base from the chroma server", exc_info=True)

    def _sync(self, token: str, full: bool) -> None:
        """Make the mirror match the registry; `full` (at open) reads every chunk once and also removes chunks
        no registered document owns, once they are older than ORPHAN_GRACE_S."""
        with self._lock:
            # Read the generation before the registry (the caller did): a change made while we read has a
            # newer generation, so the next refresh syncs again.
            registry = self._read_registry()
            for doc_id in [d for d, nonce in self._nonces.items() if registry.get(d, {}).get("nonce") != nonce]:
                self._forget(doc_id)
            wanted = {d: m for d, m in registry.items() if self._nonces.get(d) != m["nonce"]}
            if full:
                buckets: dict[tuple[str, str], list[tuple[str, str, dict[str, Any]]]] = {}
                orphans: list[str] = []
                cutoff = time.time() - ORPHAN_GRACE_S
                for cid, text, meta in self._fetch_chunks(None):
                    key = (str(meta.get("doc_id")), str(meta.get("nonce")))
                    if registry.get(key[0], {}).get("nonce") == key[1]:
                        buckets.setdefault(key, []).append((cid, text, meta))
                    elif float(meta.get("written", 0)) < cutoff:  # chunks from before timestamps count as old
                        orphans.append(cid)
                if orphans:
                    log.warning("removing %d vectors that no document owns (older than %.0f s)",
                                len(orphans), ORPHAN_GRACE_S)  # fmt: skip
                    self._delete_vectors_quietly(orphans)
                loaded = [self._load(doc_id, meta, buckets.get((doc_id, meta["nonce"]), []))
                          for doc_id, meta in sorted(wanted.items(), key=lambda item: str(item[1]["created"]))]
            else:
                loaded = [self._load(doc_id, meta, self._fetch_chunks({"$and": [{"doc_id": doc_id},
                                                                                {"nonce": meta["nonce"]}]}))
                          for doc_id, meta in wanted.items()]
            if all(loaded):  # otherwise the next refresh syncs again, document by document
                self._generation = token

    def _read_registry(self) -> dict[str, dict[str, Any]]:
        got = self._registry.get(include=["metadatas"])
        return {
            cid: dict(meta)
            for cid, meta in zip(got["ids"], got["metadatas"] or [], strict=True)
            if cid != _GENERATION_ID and meta
        }

    def _fetch_chunks(self, where: dict[str, Any] | None) -> list[tuple[str, str, dict[str, Any]]]:
        out: list[tuple[str, str, dict[str, Any]]] = []
        offset = 0
        while True:
            got = self._collection.get(
                where=where, include=["documents", "metadatas"], limit=1000, offset=offset
            )
            page = list(zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True))
            out.extend((cid, text or "", dict(meta or {})) for cid, text, meta in page)
            if len(page) < 1000:
                return out
            offset += len(page)

    def _load(self, doc_id: str, meta: dict[str, Any], chunks: list[tuple[str, str, dict[str, Any]]]) -> bool:
        """Put one registered document into the mirror; False (skipped) while its chunks are incomplete."""
        if len(chunks) != int(meta["chunks"]):
            # Another process is deleting or replacing it, or a paged read missed rows that moved under it:
            # the caller does not record this generation, so the next refresh reads the document again.
            log.info("document %s is changing in another process; loaded at the next refresh", doc_id)
            return False
        chunks.sort(key=lambda c: int(c[2].get("index", 0)))
        row = (doc_id, meta["name"], meta["kind"], meta["sha256"], int(meta["size"]), meta.get("pages"),
               int(meta["chunks"]), meta["date"], meta["uploader"], meta["created"])  # fmt: skip
        for (other,) in self._db.execute(
            "SELECT doc_id FROM documents WHERE doc_id = ? OR sha256 = ?", (doc_id, meta["sha256"])
        ).fetchall():
            self._forget(other)
        with self._transaction() as db:
            db.execute(f"INSERT INTO documents({_DOC_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            db.executemany(
                "INSERT INTO chunks(chunk_id, doc_id, idx, page, text) VALUES (?, ?, ?, ?, ?)",
                [(cid, doc_id, int(m.get("index", 0)), m.get("page"), text) for cid, text, m in chunks],
            )
        self._bm25.add((cid, text) for cid, text, _ in chunks)
        self._chunk_count += len(chunks)
        self._nonces[doc_id] = str(meta["nonce"])
        return True

    def _forget(self, doc_id: str) -> None:
        """Drop one document from the mirror (and the BM25 index); chroma is not touched."""
        ids = [r[0] for r in self._db.execute("SELECT chunk_id FROM chunks WHERE doc_id = ?", (doc_id,))]
        with self._transaction() as db:
            db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))  # chunks cascade
        self._bm25.remove(ids)
        self._chunk_count -= len(ids)
        self._nonces.pop(doc_id, None)

    def _vector_ids(self) -> set[str]:
        ids: set[str] = set()
        offset = 0
        while True:
            page = self._collection.get(include=[], limit=5000, offset=offset)["ids"]
            ids.update(page)
            if len(page) < 5000:
                return ids
            offset += len(page)
