"""finetune end to end on a tiny random Llama: train -> merge -> GGUF (f16, q8_0, q4_K_M) -> verify -> registry.

The first run in a fresh environment fetches llama-cpp-python's source distribution from PyPI once (the
converter lives there); it is cached under ~/.cache/adaptbot/llama-cpp-src afterwards.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from finetune.cli import main
from finetune.data import sha256_file
from finetune.manifest import Manifest
from finetune.pipeline import run_pipeline
from tests.tiny_hf import FAST_TRAIN_OVERRIDES, build_tiny_llama, write_greeting_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, Path, Path]:
    """One whole pipeline run, shared by the tests below: (manifest, out dir, bot data dir)."""
    root = tmp_path_factory.mktemp("ft")
    base = build_tiny_llama(root / "base")
    out, data_dir = root / "run", root / "bot-data"
    data = write_greeting_data(root / "greetings.jsonl")
    manifest = run_pipeline(str(base), data, out, "greeter", ("f16", "q8_0", "q4_K_M"), data_dir,
                            FAST_TRAIN_OVERRIDES, progress=False)
    return manifest, out, data_dir


def test_training_lowers_the_validation_loss(run: tuple[Manifest, Path, Path]) -> None:
    manifest, _, _ = run
    losses = manifest.losses
    assert manifest.data["val"] >= 1
    assert losses["val_after"] < 0.6 * losses["val_before"]
    assert losses["train_last"] < losses["train_first"]
    assert losses["steps"] == 4 * 11 and losses["tokens"] > 0


def test_every_gguf_passes_verification_within_tolerance(run: tuple[Manifest, Path, Path]) -> None:
    manifest, out, _ = run
    v = manifest.verification
    assert set(v) == {"f16", "q8_0", "q4_K_M"}
    for result in v.values():
        assert result["passed"], result
        assert result["tokenization_identical"] and result["chat_template_preserved"]
        assert result["end_of_turn_stops"] and result["pre_tokenizer"] == "gpt-2"
        assert result["tokens"] > 50
    assert v["f16"]["rel_l2"] <= 2e-3
    assert v["q8_0"]["rel_l2"] <= 5e-2
    assert v["q4_K_M"]["top1_agreement"] >= 0.9
    # hidden size 256: the K-quant file really holds K-quant tensors, not a silent fallback
    assert manifest.exports["q4_K_M"]["tensor_types"].get("Q4_K", 0) > 0
    assert {f"greeter-{q}.gguf" for q in v} <= {p.name for p in out.iterdir()}


def test_manifest_lists_every_output_with_its_sha256(run: tuple[Manifest, Path, Path]) -> None:
    _, out, _ = run
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["name"] == "greeter" and saved["config"]["train"]["epochs"] == 4
    assert saved["data"]["sha256"] == sha256_file(Path(saved["data"]["path"]))
    files = saved["files"]
    for expected in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json", "merged/model.safetensors",
                     "merged/tokenizer.json", "merged/chat_template.jinja", "greeter-f16.gguf", "greeter-q8_0.gguf",
                     "greeter-q4_K_M.gguf"):
        assert expected in files
    for rel, digest in files.items():
        assert sha256_file(out / rel) == digest, rel
    assert set(saved["stages"]) == {"prepare", "train", "merge", "export", "verify"}


def test_the_model_is_registered_for_the_bot(run: tuple[Manifest, Path, Path]) -> None:
    manifest, out, data_dir = run
    entry = json.loads((data_dir / "finetuned" / "greeter.json").read_text())
    assert entry["name"] == "greeter"
    assert entry["gguf"] == str((out / "greeter-q8_0.gguf").resolve())
    assert set(entry["files"]) == {"f16", "q8_0", "q4_K_M"}
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in entry["files"].values())
    assert manifest.registry == str((data_dir / "finetuned" / "greeter.json").resolve())


def test_the_fine_tuned_gguf_answers_in_the_learned_form_and_stops(run: tuple[Manifest, Path, Path]) -> None:
    import llama_cpp

    from finetune.verify import plain_cpu_kernels

    _, _, data_dir = run
    entry = json.loads((data_dir / "finetuned" / "greeter.json").read_text())
    with plain_cpu_kernels():  # the bot's local backend does the same on CPUs that report AMX
        llm = llama_cpp.Llama(entry["gguf"], n_ctx=256, n_threads=1, verbose=False)
    try:
        reply = llm.create_chat_completion([{"role": "user", "content": "Say hello to Grace"}],
                                           max_tokens=24, temperature=0.0)
    finally:
        llm.close()
    choice = reply["choices"][0]
    assert choice["message"]["content"].startswith("Hello")
    assert choice["finish_reason"] == "stop"  # the end-of-turn token was learned: it stops by itself


def test_resumed_training_matches_the_uninterrupted_run(run: tuple[Manifest, Path, Path], tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    manifest, out, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    checkpoints = sorted((copy / "checkpoints").glob("step-*.pt"))
    assert len(checkpoints) == 4  # one per epoch
    for later in checkpoints[1:]:
        later.unlink()  # as if the run had died during epoch 2
    shutil.rmtree(copy / "adapter")
    assert main(["train", "--out", str(copy), "--resume"]) == 0
    resumed = json.loads((copy / "manifest.json").read_text())["losses"]
    assert resumed["resumed_from"] == 11 and resumed["steps"] == 44
    want = load_file(out / "adapter" / "adapter_model.safetensors")
    got = load_file(copy / "adapter" / "adapter_model.safetensors")
    assert want.keys() == got.keys()
    assert all(torch.allclose(want[k], got[k], atol=1e-6) for k in want)
    assert resumed["val_after"] == pytest.approx(manifest.losses["val_after"], abs=1e-5)


def test_verify_stage_alone_reregisters_into_another_data_dir(run: tuple[Manifest, Path, Path], tmp_path: Path) -> None:
    _, out, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    saved = json.loads((copy / "manifest.json").read_text())
    del saved["dequantized_from"]  # a run recorded before GGUF bases existed
    (copy / "manifest.json").write_text(json.dumps(saved))
    assert main(["verify", "--out", str(copy), "--data-dir", str(tmp_path / "other")]) == 0
    entry = json.loads((tmp_path / "other" / "finetuned" / "greeter.json").read_text())
    assert entry["gguf"] == str((copy / "greeter-q8_0.gguf").resolve())
