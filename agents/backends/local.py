"""The `local` model (a GGUF run in-process by llama-cpp-python) and the `finetuned:NAME` models.

One `LocalBackend` = one GGUF = one `LlamaWorker` thread, loaded lazily on the first request and shared
by every chat (their turns queue for it). `finetuned_provider` turns the manifests written by the
fine-tuning pipeline (`DATA_DIR/finetuned/*.json`) into backends, rescanned on every registry lookup.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.backends.base import Backend
from agents.backends.llama_chat import ChatLlamaCpp
from agents.backends.llama_worker import LlamaWorker
from agents.errors import ModelUnavailableError
from agents.lru import LRUCache

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)

DEFAULT_REPO = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
DEFAULT_FILE = "qwen2.5-0.5b-instruct-q4_k_m.gguf"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_llama(
    model_path: Path | None,
    *,
    repo: str = DEFAULT_REPO,
    filename: str = DEFAULT_FILE,
    cache_dir: Path | None = None,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    n_gpu_layers: int = 0,
) -> Llama:
    """Load the GGUF at `model_path`, or fetch the default model once; errors are one clear line."""
    from llama_cpp import Llama

    params: dict[str, Any] = {
        "n_ctx": n_ctx,
        "n_threads": n_threads,
        "n_gpu_layers": n_gpu_layers,
        "verbose": False,
    }
    if model_path is None:
        cached = _cached_download(repo, filename, cache_dir)
        if cached is None:
            try:
                return Llama.from_pretrained(repo, filename, cache_dir=cache_dir, **params)
            except Exception as exc:  # noqa: BLE001 - network, hub and load errors all mean: set the path
                raise ModelUnavailableError(
                    f"cannot fetch the default local model {repo}/{filename} ({_one_line(exc)}); "
                    "set LOCAL_MODEL_PATH to a GGUF file"
                ) from None
        model_path = cached
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ModelUnavailableError(f"local model file not found: {path}; set LOCAL_MODEL_PATH to a GGUF file")
    try:
        return Llama(model_path=str(path), **params)
    except Exception as exc:  # noqa: BLE001 - llama.cpp reports a bad file as ValueError/RuntimeError
        raise ModelUnavailableError(
            f"cannot load the local model {path} ({_one_line(exc)}); set LOCAL_MODEL_PATH to a valid GGUF file"
        ) from None


def _cached_download(repo: str, filename: str, cache_dir: Path | None) -> Path | None:
    """The default model from an earlier download, found without touching the network."""
    if any(c in filename for c in "*?["):  # a glob needs the hub's file list
        return None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo, filename, cache_dir=cache_dir, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or no hub client): download it
        return None


class LoadedModels:
    """At most `limit` llama models loaded at once (LOCAL_MAX_LOADED_MODELS): a request to one more releases the
    least recently used, which frees its weights and thread once its current work ends and loads again when asked."""

    def __init__(self, limit: int) -> None:
        self._lru: LRUCache[LlamaWorker, None] = LRUCache(limit, on_evict=lambda worker, _: worker.release())

    def use(self, worker: LlamaWorker) -> None:
        self._lru.touch(worker, None)

    def drop(self, worker: LlamaWorker) -> None:
        """Release a model nobody can choose any more (its fine-tune was replaced or removed)."""
        self._lru.pop(worker)
        worker.release()

    def __len__(self) -> int:
        return len(self._lru)


@dataclass(frozen=True, slots=True)
class LocalSampling:
    """Sampling defenses against loops (llama.cpp's penalties; 1.0 / 0.0 turn them off)."""

    repeat_penalty: float = 1.1
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    retry_repeat_penalty: float = 1.3  # used by /retry, which usually follows a loop


class LocalBackend(Backend):
    """A GGUF model run in-process; one worker thread serves every chat in FIFO order."""

    shared_worker = True

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        repo: str = DEFAULT_REPO,
        filename: str = DEFAULT_FILE,
        cache_dir: Path | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        max_tokens: int = 512,
        sampling: LocalSampling | None = None,
        name: str = "local",
        description: dict[str, str] | None = None,
        loaded: LoadedModels | None = None,
    ) -> None:
        self.name = name
        self.description = description or {
            "en": "local GGUF model run in-process (llama.cpp)",
            "ru": "локальная GGUF-модель внутри бота (llama.cpp)",
        }
        self.model_path = model_path
        self._load_params: dict[str, Any] = {
            "repo": repo,
            "filename": filename,
            "cache_dir": cache_dir,
            "n_ctx": n_ctx,
            "n_threads": n_threads,
            "n_gpu_layers": n_gpu_layers,
        }
        self.max_tokens = max_tokens
        self.sampling = sampling or LocalSampling()
        self.loaded_models = loaded
        self.worker = LlamaWorker(self._load, name=name, on_use=loaded.use if loaded is not None else None)
        self._model: ChatLlamaCpp | None = None

    def _load(self) -> Llama:
        log.info("loading local model %s", self.model_path or "(default)")
        return load_llama(self.model_path, **self._load_params)

    def chat_model(self) -> ChatLlamaCpp:
        if self._model is None:
            s = self.sampling
            self._model = ChatLlamaCpp(worker=self.worker, model_name=self.name, max_tokens=self.max_tokens,
                                       repeat_penalty=s.repeat_penalty, frequency_penalty=s.frequency_penalty,
                                       presence_penalty=s.presence_penalty)
        return self._model

    def retry_model(self) -> ChatLlamaCpp:
        """The same model and worker, sampling with the retry's higher repetition penalty."""
        model = self.chat_model()
        penalty = max(self.sampling.retry_repeat_penalty, model.repeat_penalty)
        return model.model_copy(update={"repeat_penalty": penalty})

    async def aclose(self) -> None:
        await self.worker.aclose()


class FinetunedProvider:
    """`finetuned:NAME` backends from `data_dir/finetuned/*.json`.

    The registry asks on every turn, on the event loop, so the manifests are read again only when the directory
    changed (manifests are written by an atomic rename) or the last read is `RESCAN_S` old (a GGUF deleted under
    a manifest). A backend is reused while its name and GGUF path stay the same, so each model is loaded once; one
    whose name now points at another GGUF, or whose manifest is gone, is released (once its current work ends).
    """

    RESCAN_S = 5.0

    def __init__(self, data_dir: Path, **llama_kwargs: Any) -> None:
        self.directory = data_dir / "finetuned"
        self._llama_kwargs = llama_kwargs
        self._backends: dict[tuple[str, Path], LocalBackend] = {}
        self._warned: set[tuple[Path, float]] = set()
        self._cache: tuple[int, float, dict[str, Backend]] | None = None  # (dir mtime, read at, result)

    def __call__(self) -> dict[str, Backend]:
        try:
            stamp = self.directory.stat().st_mtime_ns
        except OSError:
            stamp = -1
        now = time.monotonic()
        if self._cache is not None and self._cache[0] == stamp and now - self._cache[1] < self.RESCAN_S:
            return dict(self._cache[2])
        found = self._scan()
        self._cache = (stamp, now, found)
        return dict(found)

    def _scan(self) -> dict[str, Backend]:
        found: dict[str, Backend] = {}
        for manifest in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []:
            entry = self._read(manifest)
            if entry is None:
                continue
            name, gguf, base = entry
            key = f"finetuned:{name}"
            if key in found:
                self._warn(manifest, f"duplicate fine-tuned model name {name!r}")
                continue
            backend = self._backends.get((name, gguf))
            if backend is None:
                backend = LocalBackend(
                    gguf,
                    name=key,
                    description={
                        "en": f"fine-tuned model {name}" + (f" (base: {base})" if base else ""),
                        "ru": f"дообученная модель {name}" + (f" (база: {base})" if base else ""),
                    },
                    **self._llama_kwargs,
                )
                self._backends[(name, gguf)] = backend
            found[key] = backend
        for pair in [p for p, b in self._backends.items() if found.get(f"finetuned:{p[0]}") is not b]:
            self._forget(self._backends.pop(pair))  # re-registered with another GGUF, or removed
        return found

    def _forget(self, backend: LocalBackend) -> None:
        if backend.loaded_models is not None:
            backend.loaded_models.drop(backend.worker)
        else:
            backend.worker.release()

    def _read(self, manifest: Path) -> tuple[str, Path, str] | None:
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            name, gguf = data["name"], data["gguf"]
            if not isinstance(name, str) or not name.strip() or not isinstance(gguf, str):
                raise ValueError("'name' and 'gguf' must be non-empty strings")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._warn(manifest, f"ignoring broken fine-tuned model manifest ({_one_line(exc)})")
            return None
        path = Path(gguf).expanduser()
        path = path if path.is_absolute() else manifest.parent / path
        if not path.is_file():
            self._warn(manifest, f"ignoring fine-tuned model {name!r}: GGUF file not found: {path}")
            return None
        base = data.get("base")
        return name.strip(), path, base if isinstance(base, str) else ""

    def _warn(self, manifest: Path, message: str) -> None:
        """Log once per manifest version (the registry rescans on every lookup)."""
        try:
            stamp = manifest.stat().st_mtime
        except OSError:
            stamp = 0.0
        if (manifest, stamp) not in self._warned:
            self._warned.add((manifest, stamp))
            log.warning("%s: %s", manifest, message)

    async def aclose(self) -> None:
        """Close every backend this provider ever created (including ones whose manifest is gone)."""
        for backend in self._backends.values():
            await backend.aclose()


def finetuned_provider(data_dir: Path, **llama_kwargs: Any) -> Callable[[], dict[str, Backend]]:
    """A registry provider for the fine-tuned models; `llama_kwargs` go to each `LocalBackend`."""
    return FinetunedProvider(data_dir, **llama_kwargs)
