"""A GGUF file as the fine-tuning base: de-quantized, given a chat template, trained, exported, verified, served.

The base is the tiny Llama of tests/tiny_hf.py exported to a Q4_K_M GGUF without a chat template, like a base
model from the hub; the first run in a fresh environment fetches llama.cpp's converter once (see
test_finetune_e2e.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from finetune.cli import main
from finetune.data import sha256_file
from finetune.templates import CHATML_TEMPLATE
from tests.conftest import BotRunner
from tests.fakes.openai_server import ScriptedOpenAI
from tests.fakes.telegram_server import FakeTelegram
from tests.tiny_hf import FAST_TRAIN_OVERRIDES, build_tiny_llama, write_greeting_data


@pytest.fixture(scope="module")
def gguf_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama as a Q4_K_M GGUF with no chat template."""
    from finetune.export import export

    root = tmp_path_factory.mktemp("gguf-base")
    hf = build_tiny_llama(root / "hf")
    (hf / "chat_template.jinja").unlink()  # a base model: the tokenizer knows no chat format
    (exported,) = export(hf, root, "tiny-base", ["q4_K_M"])
    return exported.path


def _set_args() -> list[str]:
    return [arg for key, value in FAST_TRAIN_OVERRIDES.items() for arg in ("--set", f"{key}={value}")]


@pytest.mark.slow
async def test_a_gguf_base_is_fine_tuned_verified_and_served_by_the_bot(
    gguf_base: Path, bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import llama_cpp

    from finetune.verify import plain_cpu_kernels

    await bot.start(default_mode="zero-shot", local_max_tokens=24)
    data = write_greeting_data(tmp_path / "greet.jsonl")
    out = tmp_path / "run"
    # f16 is the file the bot serves (the registry prefers it when there is no q8_0); q4_K_M checks a K-quant
    code = await asyncio.to_thread(main, [
        "--base", str(gguf_base), "--data", str(data), "--out", str(out), "--name", "greeter",
        "--quant", "f16,q4_K_M", "--data-dir", str(bot.tmp_path / "data"), *_set_args()])
    assert code == 0

    manifest = json.loads((out / "manifest.json").read_text())
    source = manifest["dequantized_from"]
    assert source["path"] == str(gguf_base.resolve()) and source["sha256"] == sha256_file(gguf_base)
    assert source["architecture"] == "llama" and source["file_type"] == "Q4_K_M"
    assert source["tensor_types"].get("Q4_K", 0) > 0
    assert source["chat_template"] == "chatml (added: the file has none)"
    assert manifest["files"]["base/model.safetensors"] == sha256_file(out / "base" / "model.safetensors")
    assert manifest["losses"]["val_after"] < 0.6 * manifest["losses"]["val_before"]
    for quant in ("f16", "q4_K_M"):
        result = manifest["verification"][quant]
        assert result["passed"], result  # against the merged de-quantized model
        assert result["tokenization_identical"] and result["end_of_turn_stops"]
        assert result["pre_tokenizer"] == "gpt-2"  # the base file's vocabulary, carried over
    assert manifest["verification"]["f16"]["rel_l2"] <= 2e-3
    with plain_cpu_kernels():
        exported = llama_cpp.Llama(str(out / "greeter-f16.gguf"), n_ctx=64, vocab_only=True, verbose=False)
    try:
        assert exported.metadata["tokenizer.chat_template"] == CHATML_TEMPLATE
    finally:
        exported.close()

    # exporting again needs the base file (its vocabulary goes into the export): a clear refusal, nothing lost
    moved = gguf_base.rename(gguf_base.with_name("moved.gguf"))
    try:
        assert main(["export", "--out", str(out)]) == 2
    finally:
        moved.rename(gguf_base)
    assert f"the base GGUF {gguf_base.resolve()} is gone" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text()) == manifest

    telegram.user_says(1, "/mode finetuned:greeter")
    await telegram.wait_for(lambda: telegram.texts(1)[-1:] == ["Mode: zero-shot · finetuned:greeter"])
    telegram.user_says(1, "Say hello to Olga")
    await telegram.wait_for(lambda: len(telegram.texts(1)) == 2, timeout=120)
    assert telegram.texts(1)[1].startswith("Hello")
    assert not llm.requests  # the cloud model was never called


def test_a_gguf_base_with_its_own_template_keeps_it(tmp_path: Path) -> None:
    """The file's chat template wins over its architecture's; prepare alone de-quantizes the base."""
    from finetune.train import load_tokenizer
    from tests.tiny_gguf import build_tiny_gguf

    # a template no fallback produces: ChatML's tokens, but "role: text" inside the turn
    template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + ': ' + m['content'] + '<|im_end|>' }}"
                "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant: ' }}{% endif %}")
    base = build_tiny_gguf(tmp_path / "templated.gguf", chat_template=template)
    data = write_greeting_data(tmp_path / "greet.jsonl", n=6)
    assert main(["prepare", "--base", str(base), "--data", str(data), "--out", str(tmp_path / "run")]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["dequantized_from"]["chat_template"] == "the file's"
    assert load_tokenizer(tmp_path / "run" / "base").chat_template == template
    assert manifest["data"]["end_of_turn_text"] == "<|im_end|>"


def test_resuming_a_gguf_run_keeps_its_dequantized_base(tmp_path: Path) -> None:
    from tests.tiny_gguf import build_tiny_gguf

    base = build_tiny_gguf(tmp_path / "tiny.gguf")
    data = write_greeting_data(tmp_path / "greet.jsonl", n=6)
    args = ["prepare", "--base", str(base), "--data", str(data), "--out", str(tmp_path / "run")]
    assert main(args) == 0
    weights = tmp_path / "run" / "base" / "model.safetensors"
    written = weights.stat().st_mtime_ns
    record = json.loads((tmp_path / "run" / "manifest.json").read_text())["dequantized_from"]
    assert main([*args, "--resume"]) == 0
    assert weights.stat().st_mtime_ns == written  # not de-quantized again: minutes on a real model
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["dequantized_from"] == record


@pytest.mark.parametrize(("make", "message"), [
    pytest.param(lambda p: p, "does not exist", id="missing"),
    pytest.param(lambda p: (p.write_bytes(b"not a gguf at all"), p)[1], "is not a readable GGUF file", id="not-gguf"),
])
def test_a_bad_gguf_base_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, message: str
) -> None:
    base = make(tmp_path / "model.gguf")  # type: ignore[operator]
    data = write_greeting_data(tmp_path / "greet.jsonl", n=4)
    code = main(["--base", str(base), "--data", str(data), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "model.gguf" in err
    assert not (tmp_path / "run" / "manifest.json").exists()
