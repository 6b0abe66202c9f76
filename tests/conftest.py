"""Shared fixtures: the fake Telegram server, the scripted model server, and the real bot between them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_server import ScriptedOpenAI
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


@pytest.fixture
async def bot(tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI) -> AsyncIterator[BotRunner]:
    runner = BotRunner(tmp_path, telegram, llm)
    yield runner
    await runner.stop()
