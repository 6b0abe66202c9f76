"""Shared fixtures: the fake Telegram server, the scripted model server, and the real bot between them."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bot import lazy_types  # noqa: F401 - first, as in the bot process: aiogram's types build on first use
from tests.fakes.openai_server import ScriptedOpenAI
from tests.fakes.search_server import search_server  # noqa: F401 - a fixture, for every test module
from tests.fakes.telegram_server import FakeTelegram

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

API_KEY = "sk-test-secret-key-0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's .env or environment: settings come from the test alone."""
    for name in list(os.environ):
        if name.split("_")[0] in {"TELEGRAM", "OPENAI", "ADMIN", "ALLOWED", "DEFAULT", "DATABASE", "SEARCH",
                                  "LOCAL", "EMBEDDING", "CHROMA", "WEBHOOK", "RATE", "DAILY"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    # langchain-openai caches one httpx client per (base URL, timeout) for the whole process; a test whose scripted
    # server got a port an earlier test used would get that test's client, bound to its closed event loop
    from langchain_openai.chat_models import _client_utils

    _client_utils._cached_async_httpx_client.cache_clear()
    _client_utils._cached_sync_httpx_client.cache_clear()


@pytest.fixture
async def llm() -> AsyncIterator[ScriptedOpenAI]:
    async with ScriptedOpenAI() as server:
        yield server


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


def make_settings(tmp_path: Path, telegram: FakeTelegram | None, llm: ScriptedOpenAI | None, **overrides: Any):
    from bot.config import load_settings

    values: dict[str, Any] = dict(
        data_dir=tmp_path / "data",
        openai_api_key=API_KEY,
        openai_base_url=llm.base_url if llm else "http://127.0.0.1:9/v1",
        openai_model="scripted",
        openai_timeout=5.0,
        openai_max_retries=0,
        stream_edit_interval=0.05,
        stream_grace=0.0,  # previews from the first token, so streaming is visible to the tests
        send_interval=0.0,
        group_send_interval=0.0,
        send_retry_seconds=20.0,
        shutdown_timeout=10.0,
        rate_limit_per_minute=0,
    )
    if telegram is not None:
        values.update(telegram_bot_token=telegram.token, telegram_api_base=telegram.base_url)
    values.update(overrides)
    return load_settings(**values)


class BotRunner:
    """Starts and stops the real bot against the fakes; `restart()` keeps the same data directory."""

    def __init__(self, tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
        self.tmp_path, self.telegram, self.llm = tmp_path, telegram, llm
        self.app: Any = None
        self.overrides: dict[str, Any] = {}

    async def start(self, **overrides: Any) -> Any:
        from bot.app import BotApp

        self.overrides.update(overrides)
        settings = make_settings(self.tmp_path, self.telegram, self.llm, **self.overrides)
        self.app = await BotApp.create(settings)
        await self.app.start()
        return self.app

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None

    async def restart(self, **overrides: Any) -> Any:
        await self.stop()
        return await self.start(**overrides)


WEBHOOK_SECRET = "test-webhook-secret_0123456789"


def free_port() -> int:
    """A TCP port nobody listens on right now (for a server whose URL must be known before it starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebhookBot:
    """One bot 'process' in webhook mode inside the test: its own app, port and data dir; the database is shared."""

    def __init__(self, tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI, name: str = "a",
                 database_url: str | None = None) -> None:
        self.tmp_path, self.telegram, self.llm, self.name = tmp_path, telegram, llm, name
        self.database_url = database_url or f"sqlite+aiosqlite:///{(tmp_path / 'shared.db').as_posix()}"
        self.port = free_port()
        self.app: Any = None
        self.server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/telegram"

    async def start(self, **overrides: Any) -> Any:
        from bot.app import BotApp
        from bot.webhook import start_webhook

        values: dict[str, Any] = dict(data_dir=self.tmp_path / f"data-{self.name}", database_url=self.database_url,
                                      webhook_url=self.url, webhook_secret=WEBHOOK_SECRET,
                                      webhook_host="127.0.0.1", webhook_port=self.port)
        values.update(overrides)
        self.app = await BotApp.create(make_settings(self.tmp_path, self.telegram, self.llm, **values))
        self.server = await start_webhook(self.app)
        return self.app

    async def stop(self) -> None:
        from bot.webhook import stop_webhook

        if self.app is not None:
            await stop_webhook(self.app, self.server)
            self.app = self.server = None


@pytest.fixture
async def bot(tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI) -> AsyncIterator[BotRunner]:
    runner = BotRunner(tmp_path, telegram, llm)
    yield runner
    await runner.stop()


# --- databases: every storage test runs on SQLite and, when PG_TEST_URL is set, on PostgreSQL ------------------------


def _pg_admin(sql: str) -> None:
    """Run one statement on the PG_TEST_URL server (in a thread with its own event loop: fixtures here are sync)."""
    from tests.pg import pg_execute

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, pg_execute(os.environ["PG_TEST_URL"], sql)).result()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh empty PostgreSQL database for this test alone, dropped afterwards."""
    if not os.environ.get("PG_TEST_URL"):
        reason = ("PostgreSQL not available: set PG_TEST_URL (`make test` starts a throwaway server when the "
                  "PostgreSQL server binaries are installed)")
        if os.environ.get("CI") == "true":  # CI must run them: a silent skip would count tests that never ran
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    from sqlalchemy.engine import make_url

    name = f"adaptbot_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(os.environ["PG_TEST_URL"]).set(database=name).render_as_string(hide_password=False)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL of each backend: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{(tmp_path / 'db' / 'adaptbot.db').as_posix()}"
    return str(request.getfixturevalue("pg_url"))
