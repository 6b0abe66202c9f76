"""Fused search of the knowledge store: BM25 and dense lists combined by reciprocal rank, quoted codes first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from knowledge.embeddings import Embedder
from knowledge.errors import InvalidInputError
from knowledge.lexical import BM25Index, exact_terms
from knowledge.types import SEARCH_MODES, Hit

# Reciprocal-rank-fusion constant. The textbook 60 flattens the first ranks, so mediocre chunks found by both
# lists push out either list's best hit; that hurts whenever one list is weak for a query (the default,
# English-only embedding model on a Russian question). A small constant keeps each list's first hits in the
# top few while agreement still counts. Chosen by bench_retrieval on its tuning half only (40 ru+en questions
# among 416 chunks, grid 1..60: hybrid recall@5 k=1 0.925, k=3 0.950, k=5 0.950 with a lower MRR, k=60 0.750);
# the held-out half reports it: recall@5 0.900 against 0.800 with k=60.
RRF_K = 3


class FusedSearch:
    """The search half of `KnowledgeStore` (a mixin: it reads the store's index, collection and chunk rows)."""

    embedder: Embedder
    _bm25: BM25Index
    _collection: Any
    _chunk_count: int

    refresh: Callable[[], None]  # the store's: shared mode brings the mirror up to date first
    _chunk_rows: Callable[[Sequence[str]], dict[str, dict[str, Any]]]  # the store's: text and metadata by id

    def search_bm25(self, query: str, n: int) -> list[tuple[str, float]]:
        return self._bm25.search(query, n)

    def search_dense(self, query: str, n: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the `n` nearest chunks."""
        count = self._chunk_count
        if count == 0 or n <= 0:
            return []
        vector = self.embedder.embed([query])
        result = self._collection.query(
            query_embeddings=vector, n_results=min(n, count), include=["distances"]
        )
        ids = result["ids"][0]
        distances = result["distances"][0] if result.get("distances") else [0.0] * len(ids)
        return [(cid, 1.0 - float(d)) for cid, d in zip(ids, distances, strict=True)]

    def search(self, query: str, k: int, mode: str = "hybrid") -> list[Hit]:
        """The `k` best chunks for `query`: BM25, dense, or both fused by reciprocal rank."""
        if mode not in SEARCH_MODES:
            raise InvalidInputError(f"Unknown search mode {mode!r}; use one of: {', '.join(SEARCH_MODES)}.")
        query = query.strip()
        self.refresh()
        if not query or k <= 0 or self._chunk_count == 0:
            return []
        depth = max(4 * k, 30)  # fusion needs candidates beyond the top k of each list
        lexical = self.search_bm25(query, depth if mode == "hybrid" else k) if mode != "dense" else []
        dense = self.search_dense(query, depth if mode == "hybrid" else k) if mode != "bm25" else []
        bm25_scores = dict(lexical)
        dense_scores = dict(dense)
        if mode == "bm25":
            ranked = lexical
        elif mode == "dense":
            ranked = dense
        else:
            fused: dict[str, float] = {}
            for results in (lexical, dense):
                for rank, (cid, _) in enumerate(results):
                    fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank + 1)
            # A code or number quoted in the query (INC-20471, 2023-05-02) must match verbatim: dense models
            # see 2023-05-02 and 2024-05-02 as near twins, so chunks containing more of the quoted codes come
            # first, and fusion orders within each tier.
            codes = exact_terms(query)
            tier = {cid: self._bm25.matching_terms(cid, codes) for cid in fused} if codes else {}
            ranked = sorted(
                fused.items(),
                key=lambda item: (-tier.get(item[0], 0), -item[1], -bm25_scores.get(item[0], 0.0)),
            )
        rows = self._chunk_rows([cid for cid, _ in ranked[: k + 10]])  # a few spare: ids may have just gone
        hits: list[Hit] = []
        for cid, score in ranked:
            row = rows.get(cid)
            if row is None:
                continue  # deleted since the search began, or a vector the next open removes
            hits.append(
                Hit(
                    text=row["text"],
                    source=row["source"],
                    page=row["page"],
                    date=row["date"],
                    score=float(score),
                    doc_id=row["doc_id"],
                    chunk_id=cid,
                    index=row["index"],
                    bm25_score=bm25_scores.get(cid),
                    dense_score=dense_scores.get(cid),
                )
            )
            if len(hits) == k:
                break
        return hits
