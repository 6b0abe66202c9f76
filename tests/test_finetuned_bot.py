"""A fine-tuned model is served by the running bot as `finetuned:<name>`, without a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import BotRunner
from tests.fakes.openai_server import ScriptedOpenAI
from tests.fakes.telegram_server import FakeTelegram


@pytest.mark.slow
async def test_bot_answers_with_a_model_finetuned_while_it_runs(bot: BotRunner, telegram: FakeTelegram,
                                                                llm: ScriptedOpenAI, tmp_path: Path) -> None:
    import asyncio

    from finetune.pipeline import run_pipeline
    from tests.tiny_hf import FAST_TRAIN_OVERRIDES, build_tiny_llama, write_greeting_data

    await bot.start(default_mode="zero-shot", local_max_tokens=24)
    telegram.user_says(1, "/mode finetuned:greeter")
    await telegram.wait_for(lambda: telegram.texts(1))
    assert "Unknown name “finetuned:greeter”" in telegram.texts(1)[0]

    base = build_tiny_llama(tmp_path / "base")
    data = write_greeting_data(tmp_path / "greet.jsonl")
    manifest = await asyncio.to_thread(
        run_pipeline, str(base), data, tmp_path / "run", name="greeter", quants=("q8_0",),
        data_dir=bot.tmp_path / "data", overrides=FAST_TRAIN_OVERRIDES, progress=False)
    assert manifest is not None

    telegram.user_says(1, "/mode")  # the running bot lists the new model
    await telegram.wait_for(lambda: len(telegram.texts(1)) == 2)
    assert "finetuned:greeter" in telegram.texts(1)[1]
    telegram.user_says(1, "/mode finetuned:greeter")
    await telegram.wait_for(lambda: telegram.texts(1)[-1] == "Mode: zero-shot · finetuned:greeter")
    telegram.user_says(1, "Say hello to Olga")
    await telegram.wait_for(lambda: len(telegram.texts(1)) == 4, timeout=120)
    assert telegram.texts(1)[3].startswith("Hello")
    assert not llm.requests  # the cloud model was never called
