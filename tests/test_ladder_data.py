"""The ladder demo's data (examples/ladder): valid files, held-out cases never trained on, every fact documented."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from agents.prompts import load_prompts
from finetune.data import parse_conversations

LADDER = Path(__file__).resolve().parent.parent / "examples" / "ladder"
CASE_KEYS = {"id", "question", "expected", "match", "lang", "history", "tags"}
MATCHES = {"contains", "exact", "regex", "number", "judge", "refusal"}
# Greetings and polite openings: a question with one added is still the same question.
FILLER = {"здравствуйте", "добрый", "день", "привет", "подскажите", "пожалуйста", "скажите", "вопрос"}
NEAR_DUPLICATE = 0.75  # share of common words (Jaccard) from which two questions count as the same
# Times, thousands written with a space (`1 290`), plain numbers and decimals.
NUMBER = re.compile(r"\d{1,2}:\d{2}|\d{1,3}(?:[ \u00a0]\d{3})+(?!\d)|\d+(?:[.,]\d+)?")


def read_jsonl(name: str) -> list[dict]:
    rows = []
    for number, line in enumerate((LADDER / name).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            assert isinstance(row, dict), f"{name} line {number}: not an object"
            rows.append(row)
    return rows


def training_questions() -> list[str]:
    return [m["content"] for row in read_jsonl("train.jsonl") for m in row["messages"] if m["role"] == "user"]


def words(text: str) -> list[str]:
    return [w for w in re.findall(r"\w+", text.lower().replace("ё", "е")) if w not in FILLER]


def numbers(text: str) -> set[str]:
    return {re.sub(r"[ \u00a0]", "", n).replace(",", ".") for n in NUMBER.findall(text)}


def normal(text: str) -> str:
    return " ".join(text.lower().replace("ё", "е").split())


def docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((LADDER / "docs").glob("*.md")))


def expected_of(case: dict) -> list[str]:
    expected = case.get("expected", [])
    return [expected] if isinstance(expected, str) else list(expected)


def load_make_data(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import examples/ladder/make_data.py (not a package) for the test's duration."""
    spec = importlib.util.spec_from_file_location("ladder_make_data", LADDER / "make_data.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["cases.jsonl", "general.jsonl"])
def test_case_files_are_in_the_eval_format(name: str) -> None:
    cases = read_jsonl(name)
    ids = [case["id"] for case in cases]
    assert len(ids) == len(set(ids)), f"{name}: repeated ids"
    for case in cases:
        assert set(case) <= CASE_KEYS, f"{case['id']}: unknown keys {set(case) - CASE_KEYS}"
        assert case["question"].strip(), case["id"]
        assert case["match"] in MATCHES, case["id"]
        assert case["lang"] in ("ru", "en"), case["id"]
        assert all(isinstance(tag, str) for tag in case["tags"]), case["id"]
        if case["match"] in ("contains", "exact", "regex", "number"):
            assert expected_of(case) and all(e.strip() for e in expected_of(case)), case["id"]
        if case["match"] == "number":
            assert all(numbers(e) for e in expected_of(case)), f"{case['id']}: a `number` case needs a figure"
        if case["match"] == "regex":
            for pattern in expected_of(case):
                re.compile(pattern)


def test_the_held_out_set_is_mostly_graded_without_a_judge() -> None:
    cases = read_jsonl("cases.jsonl")
    assert len(cases) >= 40
    assert all(case["lang"] == "ru" for case in cases)
    deterministic = [c for c in cases if c["match"] in ("number", "contains", "refusal", "regex")]
    assert len(deterministic) >= 0.9 * len(cases)
    assert sum(c["match"] == "refusal" for c in cases) >= 5


def test_the_general_set_has_30_bilingual_cases_checked_by_number_or_words() -> None:
    general = read_jsonl("general.jsonl")
    assert len(general) == 30
    assert {case["match"] for case in general} <= {"number", "contains"}
    assert {case["lang"] for case in general} == {"ru", "en"}


def test_train_passes_finetunes_own_validation_with_the_demo_system_prompt() -> None:
    conversations, problems = parse_conversations(LADDER / "train.jsonl")
    assert problems == []
    assert 300 <= len(conversations) <= 400
    system = load_prompts(LADDER / "prompts.yaml").system
    for conv in conversations:
        assert [m["role"] for m in conv.messages] == ["system", "user", "assistant"], conv.line
        # The prompt and rag levels send prompts.yaml's system prompt: training must have used the same text.
        assert conv.messages[0]["content"] == system, conv.line


def test_no_held_out_or_general_question_is_trained_on_even_reworded_slightly() -> None:
    trained = [words(q) for q in training_questions()]
    trained_exact = {normal(q) for q in training_questions()}
    held = read_jsonl("cases.jsonl") + read_jsonl("general.jsonl")
    few_shot = [{"id": f"few_shot {user!r}", "question": user}
                for user, _ in load_prompts(LADDER / "prompts.yaml").few_shot]
    for case in held:
        question = words(case["question"])
        assert normal(case["question"]) not in trained_exact, case["id"]
        for other in trained:
            common = len(set(question) & set(other)) / len(set(question) | set(other))
            assert question != other and common < NEAR_DUPLICATE, f"{case['id']} is close to {' '.join(other)!r}"
        # The prompt level's examples must not hand the model a held-out question either.
        for shot in few_shot:
            shot_words = set(words(shot["question"]))
            common = len(set(question) & shot_words) / len(set(question) | shot_words)
            assert common < NEAR_DUPLICATE, f"{case['id']} is close to {shot['id']}"


def test_every_fact_a_case_expects_is_in_the_documents() -> None:
    docs = docs_text()
    documented = numbers(docs)
    answers = {m["content"] for row in read_jsonl("train.jsonl") for m in row["messages"] if m["role"] == "assistant"}
    for case in read_jsonl("cases.jsonl"):
        for expected in expected_of(case):
            if case["match"] == "contains":
                assert normal(expected) in normal(docs), f"{case['id']}: {expected!r} is not in the docs"
            elif case["match"] == "regex":
                # A format case: the fixed format it checks is the one training teaches, with documented figures.
                assert any(re.search(expected, a, re.IGNORECASE | re.MULTILINE) for a in answers), case["id"]
                assert numbers(expected) <= documented, case["id"]
            else:  # number, judge: every figure is documented
                assert numbers(expected) <= documented, f"{case['id']}: {numbers(expected) - documented} not in docs"


def test_training_answers_state_only_documented_figures() -> None:
    documented = numbers(docs_text())
    for row in read_jsonl("train.jsonl"):
        answer = row["messages"][-1]["content"]
        assert numbers(answer) <= documented, f"{answer!r}: {numbers(answer) - documented} is not in the docs"


def test_make_data_rewrites_the_committed_files_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_data = load_make_data(monkeypatch)
    train, cases, general = make_data.build()
    for name, rows in (("train.jsonl", train), ("cases.jsonl", cases), ("general.jsonl", general)):
        make_data.write_jsonl(tmp_path / name, rows)
        assert (tmp_path / name).read_bytes() == (LADDER / name).read_bytes(), f"{name} is not make_data.py's output"


def test_the_trained_answer_of_each_fact_passes_its_held_out_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    """The task is learnable: a model that gives the fixed answer it was trained on passes the held-out cases."""
    answers = {fact.key: fact.answer for fact in load_make_data(monkeypatch).all_facts()}
    checked = 0
    for case in read_jsonl("cases.jsonl"):
        answer = answers.get(case["id"].rsplit("-", 1)[0])
        if answer is None or case["match"] not in ("number", "contains"):
            continue
        for expected in expected_of(case):
            if case["match"] == "number":
                assert numbers(expected) <= numbers(answer), f"{case['id']}: {answer!r} lacks {expected!r}"
            else:
                assert normal(expected) in normal(answer), f"{case['id']}: {answer!r} lacks {expected!r}"
        checked += 1
    assert checked >= 35
