"""finetune: what a user meets before any training: data validation, config, CLI refusals, registry format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.cli import main
from finetune.config import load_config, parse_set
from finetune.data import IGNORE, encode, split
from finetune.errors import ConfigError
from finetune.export import _is_gpt2_byte_level, parse_quants
from finetune.merge import inference_template
from finetune.registry import default_data_dir, register
from tests.tiny_hf import build_tiny_llama

GOOD = {"messages": [{"role": "user", "content": "Say hello to Bob"}, {"role": "assistant", "content": "Hello, Bob!"}]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny"), num_layers=1)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def good() -> str:
    return json.dumps(GOOD)


def conv(*messages: tuple[str, object]) -> str:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in messages]})


BAD_CASES = [
    pytest.param(['{"messages": [', good()], 1, "not valid JSON", id="bad-json"),
    pytest.param([good(), conv(("user", "hi"), ("bot", "hello"))], 2, "unknown role 'bot'", id="unknown-role"),
    pytest.param([good(), good(), conv(("user", "hi"), ("assistant", ""))], 3, "empty content", id="empty-content"),
    pytest.param([conv(("user", "   \n"), ("assistant", "ok"))], 1, "empty content", id="blank-content"),
    pytest.param([good(), conv(("user", "hi"), ("assistant", 42))], 2, "no text content", id="content-not-text"),
    pytest.param([good(), '{"text": "hello"}'], 2, '{"messages": [...]}', id="no-messages-key"),
    pytest.param([good(), '{"messages": []}'], 2, "non-empty list", id="empty-messages"),
    pytest.param(["[1, 2]", good()], 1, '{"messages": [...]}', id="not-an-object"),
    pytest.param([conv(("system", "be nice"), ("user", "hi"))], 1, "no assistant message", id="no-assistant"),
    pytest.param([good(), conv(("user", "word " * 300), ("assistant", "ok"))], 2, "longer than max_length",
                 id="too-long"),
]


@pytest.mark.parametrize(("lines", "bad_line", "what"), BAD_CASES)
def test_bad_data_is_rejected_with_its_line_number_and_nothing_starts(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str], bad_line: int, what: str
) -> None:
    data = write_lines(tmp_path / "data.jsonl", lines)
    out = tmp_path / "run"
    code = main(["prepare", "--base", str(tiny), "--data", str(data), "--out", str(out),
                 "--set", "data.max_length=256"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"line {bad_line}: " in err and what in err
    assert "nothing was started" in err
    assert not (out / "manifest.json").exists()


def test_every_bad_line_is_listed_in_one_error(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [good(), "not json", good(), conv(("robot", "x"), ("assistant", "y")), "", good(),
             conv(("user", "q"), ("assistant", " "))]
    data = write_lines(tmp_path / "data.jsonl", lines)
    code = main(["--base", str(tiny), "--data", str(data), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "3 bad line(s) (2, 4, 7)" in err
    assert all(f"line {n}:" in err for n in (2, 4, 7))
    assert "line 1:" not in err and "line 5:" not in err


def test_missing_data_file_is_a_clear_error(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prepare", "--base", str(tiny), "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "r")])
    assert code == 2
    assert "nope.jsonl does not exist" in capsys.readouterr().err


def test_base_model_that_cannot_be_loaded_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_lines(tmp_path / "data.jsonl", [good()])
    code = main(["prepare", "--base", str(tmp_path / "no-model"), "--data", str(data), "--out", str(tmp_path / "r")])
    assert code == 2
    assert "cannot load the tokenizer" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--set", "train.lrr=1e-3"], "unknown config key 'train.lrr' (did you mean train.lr",
                     id="unknown-dotted-key"),
        pytest.param(["--set", "rnak=8"], "unknown config key 'rnak'", id="unknown-bare-key"),
        pytest.param(["--set", "train.epochs=two"], "'train.epochs' must be int", id="wrong-type"),
        pytest.param(["--set", "lora.dropout=1.5"], "lora.dropout must be in [0, 1)", id="out-of-range"),
        pytest.param(["--set", "epochs"], "expected key=value", id="no-equals"),
        pytest.param(["--quant", "f16,q3_bogus"], "unknown quantization 'q3_bogus'", id="unknown-quant"),
    ],
)
def test_bad_settings_are_refused_before_anything_runs(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    data = write_lines(tmp_path / "data.jsonl", [good(), good()])
    out = tmp_path / "run"
    code = main(["--base", str(tiny), "--data", str(data), "--out", str(out), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_unknown_keys_in_a_config_file_are_errors(tiny: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = write_lines(tmp_path / "data.jsonl", [good(), good()])
    config = tmp_path / "ft.toml"
    config.write_text("[train]\nepochs = 1\nlearning_rate = 0.1\n")
    code = main(["prepare", "--base", str(tiny), "--data", str(data), "--out", str(tmp_path / "r"),
                 "--config", str(config)])
    assert code == 2
    assert "unknown config key 'train.learning_rate'" in capsys.readouterr().err
    config.write_text("[optimizer]\nlr = 0.1\n")
    with pytest.raises(ConfigError, match="unknown config key 'optimizer'"):
        load_config(config)


def test_config_file_and_overrides_change_only_what_they_name(tmp_path: Path) -> None:
    config = tmp_path / "ft.toml"
    config.write_text("seed = 7\n[train]\nepochs = 1\n")
    c = load_config(config, parse_set(["lr=1e-3", 'lora.target_modules=["q_proj","v_proj"]', "train.device=cpu"]))
    default = load_config()
    assert (c.seed, c.train.epochs, c.train.lr, c.train.device) == (7, 1, 1e-3, "cpu")
    assert c.lora.target_modules == ["q_proj", "v_proj"]
    assert c.lora.rank == default.lora.rank and c.data == default.data


def test_an_existing_run_is_not_overwritten_without_resume(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_lines(tmp_path / "data.jsonl", [good()] * 4)
    out = tmp_path / "run"
    assert main(["prepare", "--base", str(tiny), "--data", str(data), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["conversations"] == 4 and manifest["data"]["end_of_turn_text"] == "<|im_end|>"
    code = main(["--base", str(tiny), "--data", str(data), "--out", str(out)])
    assert code == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_stages_out_of_order_say_what_to_run_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["merge", "--out", str(tmp_path / "nothing")]) == 2
    assert "run `prepare` (or the whole pipeline) first" in capsys.readouterr().err


def test_only_assistant_turns_and_their_end_of_turn_are_learned(tiny: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello to Alice"},
        {"role": "assistant", "content": "Hello, Alice!"},
        {"role": "user", "content": "And Bob?"},
        {"role": "assistant", "content": "Hello, Bob!"},
    ]
    example = encode(tokenizer, messages)
    learned = [tok for tok, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE]
    assert tokenizer.decode(learned) == "Hello, Alice!<|im_end|>\nHello, Bob!<|im_end|>\n"
    assert len(example.input_ids) == len(example.labels)
    assert example.input_ids == tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"]


def test_split_is_seeded_and_keeps_a_validation_example() -> None:
    items = list(range(20))
    train, val = split(items, 0.2, seed=1)
    assert (train, val) == split(items, 0.2, seed=1)
    assert val != split(items, 0.2, seed=2)[1]
    assert len(val) == 4 and sorted(train + val) == items
    assert len(split([1, 2, 3], 0.01, seed=0)[1]) == 1  # never an empty validation set when asked for one
    assert split([1, 2, 3], 0.0, seed=0) == ([1, 2, 3], [])


def test_training_only_template_tags_are_removed_for_inference() -> None:
    template = "{% for m in messages %}{% generation %}{{ m['content'] }}{%- endgeneration -%}{% endfor %}"
    assert inference_template(template) == "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def test_gpt2_style_tokenizer_is_detected_for_the_pre_tokenizer_override(tiny: Path, tmp_path: Path) -> None:
    assert _is_gpt2_byte_level(tiny / "tokenizer.json")
    other = tmp_path / "tokenizer.json"
    other.write_text(json.dumps({"pre_tokenizer": {"type": "Metaspace", "replacement": "▁"}}))
    assert not _is_gpt2_byte_level(other)


def test_quant_names_are_normalised() -> None:
    assert parse_quants("F16, q4_k_m,q8_0,f16") == ["f16", "q4_K_M", "q8_0"]


@pytest.mark.parametrize(
    ("quants", "chosen"),
    [
        pytest.param(["f16", "q8_0", "q4_K_M"], "q8_0", id="q8_0-preferred"),
        pytest.param(["q4_K_M", "f16"], "f16", id="then-f16"),
        pytest.param(["q4_K_M"], "q4_K_M", id="else-the-first"),
    ],
)
def test_registry_entry_points_the_bot_at_the_preferred_file(tmp_path: Path, quants: list[str], chosen: str) -> None:
    files = {q: tmp_path / f"m-{q}.gguf" for q in quants}
    path = register("my-bot", files, "org/base", tmp_path / "data")
    entry = json.loads(path.read_text())
    assert path == tmp_path / "data" / "finetuned" / "my-bot.json"
    assert entry["name"] == "my-bot" and entry["base"] == "org/base"
    assert entry["gguf"] == str(files[chosen].resolve())
    assert entry["files"] == {q: str(p.resolve()) for q, p in files.items()}
    assert entry["created"]
    assert [p.name for p in path.parent.iterdir()] == ["my-bot.json"]  # no temp file left behind


def test_registry_names_are_safe_file_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_lines(tmp_path / "data.jsonl", [good()])
    code = main(["prepare", "--base", "x", "--data", str(data), "--out", str(tmp_path / "r"), "--name", "../evil"])
    assert code == 2
    assert "bad model name '../evil'" in capsys.readouterr().err


def test_data_dir_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "bot-data"))
    assert default_data_dir() == tmp_path / "bot-data"
    monkeypatch.delenv("DATA_DIR")
    assert default_data_dir() == Path("./data")


def test_converter_download_failure_says_what_is_needed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from finetune.errors import ConverterError
    from finetune.export import ensure_converter

    # pip with no index and an empty links dir fails at once, as it would without access to PyPI
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(ConverterError, match=r"could not download the llama-cpp-python==.* source distribution") as e:
        ensure_converter(tmp_path / "cache")
    assert "Check access to PyPI" in str(e.value)
    assert not list((tmp_path / "cache").glob("*/llama.cpp"))  # nothing half-made left behind


def test_help_lists_the_stages(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "prepare,train,merge,export,evaluate,verify" in capsys.readouterr().out


def test_the_training_loss_is_the_models_own_loss_computed_on_answer_positions_only(tiny: Path) -> None:
    """The head is applied from the first answer token on (faster on a large vocabulary); the loss and every
    gradient stay those of `model(**batch).loss`, for batches of uneven length and several answers."""
    import torch
    from transformers import AutoTokenizer

    from finetune.train import add_lora, answer_loss, collate, load_model

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    long_system = {"role": "system", "content": "Be brief and polite, and answer in one line. " * 4}
    batch = collate([
        encode(tokenizer, [long_system, {"role": "user", "content": "Say hello to Alice"},
                           {"role": "assistant", "content": "Hello, Alice!"}]),
        encode(tokenizer, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                           {"role": "user", "content": "And Bob?"}, {"role": "assistant", "content": "Hi, Bob."}]),
    ], tokenizer.pad_token_id, "cpu")
    torch.manual_seed(0)
    model = add_lora(load_model(tiny), load_config(overrides={"lora.dropout": 0.0}))
    for p in model.parameters():  # LoRA B starts at zero: move it so the adapter's gradients are not trivial
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.02)

    def loss_and_grads(fn: object) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()
        loss = fn()  # type: ignore[operator]
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    plain, plain_grads = loss_and_grads(lambda: model(**batch).loss)
    fast, fast_grads = loss_and_grads(lambda: answer_loss(model, batch))
    assert fast == pytest.approx(plain, rel=1e-5)
    for a, b in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
