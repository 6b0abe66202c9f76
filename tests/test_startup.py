"""Start-up: `adaptbot run` polls before anything heavy is imported, and a cloud-only conversation never loads the
local model's, the knowledge base's or the agent runtime's libraries.

The bot runs as a real process (`bot.cli.main(["run"])`) against the fakes in this process; a wrapper around the
polling loop prints the modules the process holds when polling starts, and again when it exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import API_KEY
from tests.fakes.openai_server import ScriptedOpenAI
from tests.fakes.telegram_server import FakeTelegram

pytestmark = pytest.mark.slow

# Libraries only a local model, the knowledge base or the agent level needs (and their heaviest dependencies).
HEAVY = ("torch", "transformers", "sentence_transformers", "chromadb", "llama_cpp", "onnxruntime", "numpy",
         "langgraph", "knowledge")

WRAPPER = """
import atexit, gc, json, sys
import bot.pump

def modules(when):
    print(when, json.dumps(sorted({name.split(".")[0] for name in sys.modules})), flush=True)

real_poll = bot.pump.poll

async def poll(*args, **kwargs):
    modules("POLLING")
    return await real_poll(*args, **kwargs)

bot.pump.poll = poll
atexit.register(modules, "EXIT")
atexit.register(lambda: print("FROZEN", gc.get_freeze_count(), flush=True))
from bot.cli import main
raise SystemExit(main(["run"]))
"""


async def test_the_bot_polls_without_heavy_libraries_and_a_cloud_chat_never_loads_them(
        tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "OPENAI_", "WEBHOOK_"))}
    env.update(TELEGRAM_BOT_TOKEN=telegram.token, TELEGRAM_API_BASE=telegram.base_url, OPENAI_API_KEY=API_KEY,
               OPENAI_BASE_URL=llm.base_url, OPENAI_MODEL="scripted", DATA_DIR=str(tmp_path / "data"),
               DEFAULT_MODE="prompt cloud", SEND_INTERVAL="0", LOG_LEVEL="WARNING",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRAPPER, cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        loaded: dict[str, list[str]] = {}

        async def read() -> None:
            assert proc.stdout is not None
            async for line in proc.stdout:
                when, _, names = line.decode().partition(" ")
                if when in ("POLLING", "EXIT", "FROZEN"):
                    loaded[when] = json.loads(names)

        reader = asyncio.create_task(read())
        await telegram.wait_for(lambda: "POLLING" in loaded or reader.done(), timeout=120)
        assert "POLLING" in loaded, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
        assert [name for name in HEAVY if name in loaded["POLLING"]] == []

        telegram.user_says(7, "hello there")  # a cloud-only conversation: the prompt level on the cloud model
        assert (await telegram.wait_texts(7, 1, timeout=60)) == ["echo: hello there"]
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        await reader
        assert [name for name in HEAVY if name in loaded["EXIT"]] == []
        assert "langchain_openai" in loaded["EXIT"]  # the cloud client itself did load: the check sees imports
        # once warmed up, the process froze what start-up built: full collections no longer walk it (bench_gc.py)
        assert loaded["FROZEN"] > 200_000  # type: ignore[operator]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
