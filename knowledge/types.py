"""Plain data returned by the knowledge base: hits, documents, ingest reports and progress events."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

SearchMode = Literal["hybrid", "bm25", "dense"]
SEARCH_MODES: tuple[str, ...] = ("hybrid", "bm25", "dense")

IngestStage = Literal["downloaded", "extracted", "embedding", "indexed"]

# How the embedding model runs (`knowledge.embeddings.Embedder`); the default chosen by bench/bench_embed.py.
EMBEDDING_BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8", "openvino")
DEFAULT_EMBEDDING_BACKEND = "openvino"


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved chunk; satisfies `agents.levels.base.Passage`. `score` is the fused RRF score in hybrid
    mode, the BM25 score in bm25 mode and the cosine similarity in dense mode."""

    text: str
    source: str  # the document's display name
    page: int | None
    date: str | None  # YYYY-MM-DD
    score: float
    doc_id: str
    chunk_id: str
    index: int  # position of the chunk in its document
    bm25_score: float | None = None
    dense_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """One document of the knowledge base."""

    doc_id: str
    name: str
    kind: str  # text, markdown, pdf, docx, html
    sha256: str
    size: int  # bytes of the uploaded file
    pages: int | None
    chunks: int
    date: str  # YYYY-MM-DD: the date the document carries, else its upload date
    uploader: str
    created: str  # ISO 8601 UTC time of the upload

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class IngestReport:
    """The outcome of `add_document`."""

    document: DocumentInfo
    replaced: bool  # the same content was already there and has been replaced
    chars: int  # characters of extracted text
    seconds: float

    @property
    def doc_id(self) -> str:
        return self.document.doc_id

    @property
    def chunks(self) -> int:
        return self.document.chunks

    @property
    def pages(self) -> int | None:
        return self.document.pages


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """A stage of an ingest, for a status message or a progress bar."""

    stage: IngestStage
    name: str
    seconds: float  # since the ingest started
    kind: str | None = None
    pages: int | None = None
    chunks: int | None = None
    done: int | None = None  # chunks embedded so far (stage "embedding")

    @property
    def message(self) -> str:
        """One English line describing the stage."""
        if self.stage == "downloaded":
            return f"{self.name}: downloaded"
        if self.stage == "extracted":
            pages = f"{self.pages} pages, " if self.pages else ""
            return f"{self.name}: extracted {pages}{self.chunks} chunks"
        if self.stage == "embedding":
            return f"{self.name}: embedded {self.done}/{self.chunks} chunks"
        return f"{self.name}: {self.chunks} chunks indexed in {self.seconds:.1f} s"


@dataclass(frozen=True, slots=True)
class KBStats:
    """Sizes of the knowledge base (vectors should equal chunks)."""

    documents: int
    chunks: int
    vectors: int
    lexical: int
