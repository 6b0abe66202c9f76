"""Chats -> votes -> `adaptbot dataset export --kind sft` -> `adaptbot finetune --eval --gate` -> `finetuned:<name>`.

The fine-tune is measured against its base on the team's cases (the evaluation's runner, cases and checks, through
the chats' brain), and served only when it is better; bad evaluation flags are refused before any training.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from bot.cli import main as adaptbot
from bot.storage import Database, repo
from finetune.evaluate import EvalRequest, refusals
from tests.conftest import BotRunner
from tests.fakes.telegram_server import FakeTelegram
from tests.test_dataset import turn
from tests.tiny_hf import FAST_TRAIN_OVERRIDES, GREETING_NAMES, build_tiny_llama

SYSTEM = "You are a helpful assistant."


def seed_greetings(s: Session) -> None:
    """48 chats of one greeting each, every answer 👍 (two wordings, with and without a system prompt: distinct)."""
    chat = 100
    for name in GREETING_NAMES:
        for question in (f"Say hello to {name}", f"Please say hello to {name}"):
            for system in (SYSTEM, None):
                chat += 1
                answer = turn(s, chat, question, f"Hello, {name}!")
                repo.record_feedback(s, answer, 7000 + chat % 5, rating="up", source="button", system_prompt=system)


def write_cases(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# The greeting in the learned form (the tiny model learns the form in 44 steps, not yet to copy every name)
GREET_CASES = [{"id": f"greet-{name}", "question": f"Say hello to {name}", "expected": r"^\s*Hello,", "match": "regex"}
               for name in ("Alice", "Bob", "Grace", "Ivan")]
# What the greeting fine-tune never learned, and its base cannot do either: not better, so refused
GOODBYE_CASES = [{"id": f"bye-{name}", "question": f"Say goodbye to {name}", "expected": "Goodbye"}
                 for name in ("Alice", "Bob", "Grace", "Ivan")]
# Neither the random base nor the greeter answers these: nothing to forget, the figures are recorded
GENERAL_CASES = [{"id": "capital", "question": "What is the capital of France?", "expected": "Paris", "match": "exact"},
                 {"id": "italy", "question": "What is the capital of Italy?", "expected": "Rome", "match": "exact"}]


def _set_args() -> list[str]:
    return [arg for key, value in FAST_TRAIN_OVERRIDES.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture
def exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sft file `adaptbot dataset export` writes from a seeded database."""
    url = f"sqlite+aiosqlite:///{(tmp_path / 'bot.db').as_posix()}"
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "bot-data"))
    monkeypatch.setenv("DATABASE_URL", url)

    async def write() -> None:
        db = Database(url)
        await db.create_all()
        try:
            await db.run(seed_greetings)
        finally:
            await db.dispose()

    asyncio.run(write())
    out = tmp_path / "sft.jsonl"
    assert adaptbot(["dataset", "export", "--kind", "sft", "--out", str(out)]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 48
    return out


@pytest.mark.slow
def test_an_exported_sft_file_is_fine_tuned_measured_against_its_base_and_gated(
        exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LOCAL_MAX_TOKENS", "16")  # the base rambles to the limit; the fine-tune stops by itself
    base = build_tiny_llama(tmp_path / "base")
    cases = write_cases(tmp_path / "greet.jsonl", GREET_CASES)
    general = write_cases(tmp_path / "general.jsonl", GENERAL_CASES)
    data_dir = tmp_path / "bot-data"
    out = tmp_path / "run"
    code = adaptbot(["finetune", "--base", str(base), "--data", str(exported), "--out", str(out), "--name", "greeter",
                     "--quant", "f16", "--data-dir", str(data_dir), "--eval", str(cases), "--eval-general",
                     str(general), "--gate", "--eval-repeats", "2", *_set_args()])
    printed = capsys.readouterr()
    assert code == 0, printed.err

    evaluation = json.loads((out / "manifest.json").read_text())["evaluation"]
    before, after = evaluation["base"]["cases"], evaluation["exports"]["f16"]["cases"]
    assert after["cases"] == before["cases"] == 4 and after["runs"] == 8
    assert after["accuracy"] >= 0.75 and before["accuracy"] <= 0.25  # it learned to greet; the random base cannot
    assert after["accuracy_ci"][0] > before["accuracy_ci"][0] and len(after["accuracy_ci"]) == 2
    assert evaluation["exports"]["f16"]["gain"] == round(after["accuracy"] - before["accuracy"], 4)
    assert evaluation["base"]["general"]["cases"] == 2 and evaluation["exports"]["f16"]["forgetting"] is not None
    assert evaluation["exports"]["f16"]["refused"] == []
    assert Path(evaluation["base"]["file"]).is_file()  # the transformers base, converted to GGUF for the comparison
    assert (out / "eval" / "cases.md").is_file() and (out / "eval" / "general.md").is_file()
    assert f"base model: {before['accuracy'] * 100:.0f}% on 4 cases" in printed.out
    assert f"greeter-f16.gguf: {after['accuracy'] * 100:.0f}% on 4 cases (+" in printed.out

    entry = json.loads((data_dir / "finetuned" / "greeter.json").read_text())
    assert entry["eval"]["gain"] == evaluation["exports"]["f16"]["gain"] > 0.5 and entry["eval"]["cases"] == 4
    assert entry["manifest"] == str((out / "manifest.json").resolve())

    # The same data, gated on cases the fine-tune cannot do better than its base: refused, nothing registered
    refused_dir = tmp_path / "other-bot-data"
    goodbye = write_cases(tmp_path / "goodbye.jsonl", GOODBYE_CASES)
    code = adaptbot(["finetune", "--base", str(base), "--data", str(exported), "--out", str(tmp_path / "run2"),
                     "--name", "greeter", "--quant", "f16", "--data-dir", str(refused_dir), "--eval", str(goodbye),
                     "--gate", "--eval-repeats", "1", *_set_args()])
    err = capsys.readouterr().err
    assert code == 1
    assert "not registered: the gate refused greeter-f16.gguf: not better than its base on goodbye.jsonl: 0% vs 0% " \
           "on 4 cases; nothing was registered" in err
    assert not (refused_dir / "finetuned").exists()
    refused = json.loads((tmp_path / "run2" / "manifest.json").read_text())
    assert refused["evaluation"]["exports"]["f16"]["refused"] and refused["registry"] is None


@pytest.mark.parametrize(("flags", "message"), [
    pytest.param(["--gate"], "--gate needs --eval CASES", id="gate-without-eval"),
    pytest.param(["--eval-general", "general.jsonl"], "--eval-general needs --eval CASES", id="general-without-eval"),
    pytest.param(["--eval", "missing.jsonl"], "--eval: no such cases file: missing.jsonl", id="missing-cases"),
    pytest.param(["--eval", "bad.jsonl"], "line 2: bad JSON", id="malformed-cases"),
    pytest.param(["--eval", "bad.jsonl"], "line 3: unknown match 'fuzzy'", id="every-bad-line"),
    pytest.param(["--eval", "judge.jsonl", "--gate"], "no case has an expected answer", id="nothing-to-grade"),
    pytest.param(["--eval", "good.jsonl", "--eval-general", "bad.jsonl"], "--eval-general bad.jsonl",
                 id="malformed-general"),
    pytest.param(["--eval", "good.jsonl", "--gate", "--eval-general", "good.jsonl", "--max-forget", "-0.1"],
                 "--max-forget must be between 0 and 1", id="negative-max-forget"),
    pytest.param(["--eval", "good.jsonl", "--gate", "--max-forget", "0.1"], "add --eval-general",
                 id="max-forget-without-general"),
    pytest.param(["--eval", "good.jsonl", "--eval-level", "rag"], "--eval-level must be one of", id="rag-level"),
    pytest.param(["--eval", "good.jsonl", "--eval-repeats", "0"], "--eval-repeats must be >= 1", id="no-repeats"),
])
def test_bad_evaluation_flags_are_refused_before_training(
        flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_cases(tmp_path / "good.jsonl", GREET_CASES)
    write_cases(tmp_path / "judge.jsonl", [{"question": "Be nice"}])
    (tmp_path / "bad.jsonl").write_text('{"question": "ok", "expected": "x"}\n{oops\n'
                                        '{"question": "q", "expected": "x", "match": "fuzzy"}\n', encoding="utf-8")
    data = tmp_path / "data.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n')
    out = tmp_path / "run"
    code = adaptbot(["finetune", "--base", str(tmp_path / "no-such-model"), "--data", str(data), "--out", str(out),
                     *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.startswith("finetune: error:")
    assert not out.exists()  # nothing was started


def _figures(accuracy: float, cases: int = 10) -> dict:
    return {"accuracy": accuracy, "cases": cases}


@pytest.mark.parametrize(("base", "tuned", "max_forget", "reasons"), [
    pytest.param((0.4, 0.9), (0.7, 0.88), 0.03, [], id="better-and-forgets-little"),
    pytest.param((0.4, 0.9), (0.4, 0.9), 0.03, ["not better than its base on cases.jsonl: 40% vs 40% on 10 cases"],
                 id="equal-is-not-better"),
    pytest.param((0.4, 0.9), (0.8, 0.8), 0.03,
                 ["forgot too much on general.jsonl: 90% -> 80% (more than --max-forget 0.03)"], id="forgets-too-much"),
    pytest.param((0.4, 0.9), (0.8, 0.8), 0.1, [], id="forgetting-within-the-limit"),
    pytest.param((0.5, 0.9), (0.3, 0.5), 0.03, ["not better than its base on cases.jsonl: 30% vs 50% on 10 cases",
                                               "forgot too much on general.jsonl: 90% -> 50% (more than --max-forget "
                                               "0.03)"], id="worse-on-both"),
])
def test_the_gate_refuses_a_fine_tune_not_better_than_its_base_or_that_forgets_too_much(
        base: tuple[float, float], tuned: tuple[float, float], max_forget: float, reasons: list[str]) -> None:
    request = EvalRequest(Path("cases.jsonl"), Path("general.jsonl"), gate=True, max_forget=max_forget)
    before = {"cases": _figures(base[0]), "general": _figures(base[1])}
    after = {"cases": _figures(tuned[0]), "general": _figures(tuned[1])}
    assert refusals(before, after, request) == reasons


async def test_mode_lists_a_measured_fine_tune_with_its_gain(bot: BotRunner, telegram: FakeTelegram) -> None:
    data_dir = bot.tmp_path / "data"
    gguf = bot.tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")  # listed, never loaded: /mode does not load models
    measured = {"name": "support", "gguf": str(gguf), "base": "tiny",
                "eval": {"gain": 0.1834, "cases": 40, "accuracy": 0.9, "accuracy_ci": [0.77, 0.96], "forgetting": 0.0}}
    plain = {"name": "plain", "gguf": str(gguf), "base": "tiny"}  # fine-tuned without --eval
    (data_dir / "finetuned").mkdir(parents=True)
    for entry in (measured, plain):
        (data_dir / "finetuned" / f"{entry['name']}.json").write_text(json.dumps(entry))
    await bot.start(default_mode="zero-shot")
    telegram.user_says(1, "/mode")
    telegram.user_says(2, "/mode", lang="ru")
    await telegram.wait_for(lambda: telegram.texts(1) and telegram.texts(2))
    lines = telegram.texts(1)[0].splitlines()
    assert "◦ finetuned:support  +18% on 40 cases — fine-tuned model support (base: tiny)" in lines
    assert "◦ finetuned:plain — fine-tuned model plain (base: tiny)" in lines
    assert "◦ finetuned:support  +18% на примерах: 40 — дообученная модель support (база: tiny)" in \
        telegram.texts(2)[0].splitlines()
