"""`adaptbot dataset export`: SFT, DPO and KTO files from votes, 👍/👎 and corrections stored by the repo functions.

The database is seeded through the same functions the bot calls; the files are read back with `datasets` and the
fine-tuning pipeline's own validation (and, for SFT, its tokenizer step on a tiny ChatML model).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from bot.cli import main
from bot.dataset import ExportOptions, export_dataset
from bot.storage import Database, repo

VOTERS = (111_111, 222_222, 333_333, 444_444, 555_555)
SYSTEM = "Answer briefly."


def turn(s: Session, chat_id: int, question: str, answer: str, mode: tuple[str, str] = ("prompt", "cloud")) -> int:
    repo.add_turn(s, [dict(chat_id=chat_id, role=role, content=content, complete=True, level=mode[0], model=mode[1])
                      for role, content in (("user", question), ("assistant", answer))])
    return repo.all_messages(s, chat_id)[-1].id


def seed(s: Session) -> None:
    """What a few days of the bot leave behind."""
    turn(s, 1, "Hi there, how are you?", "Hello! I am fine.")
    paris = turn(s, 1, "What is the capital of France?", "The capital of France is Paris.")
    repo.record_feedback(s, paris, VOTERS[0], rating="up", source="button", system_prompt=SYSTEM)
    people = turn(s, 1, "How many people live in Paris?", "About 2.1 million people live in Paris.")
    repo.record_feedback(s, people, VOTERS[0], rating="up", source="reaction")  # an invented figure
    english = turn(s, 2, "Какая столица Германии?", "The capital of Germany is Berlin.", ("zero-shot", "local"))
    repo.record_feedback(s, english, VOTERS[1], rating="up", source="button")  # the wrong language
    wrong = turn(s, 2, "Какая столица Италии?", "Столица Италии — Милан.", ("zero-shot", "local"))
    repo.record_feedback(s, wrong, VOTERS[1], rating="down", source="button", reason="wrong_facts")
    repo.record_feedback(s, wrong, VOTERS[1], rating="down", source="correction", correction="Столица Италии — Рим.")
    for _ in range(2):  # the same comparison stored twice: exported once
        cid = repo.add_comparison(s, chat_id=3, question="Name a primary colour.", history=[], system_prompt=SYSTEM,
                                  mode_a=("prompt", "cloud"), answer_a="Red is a primary colour.",
                                  mode_b=("zero-shot", "local"), answer_b="Banana.")
        for voter, vote in zip(VOTERS[2:], ("a", "a", "b"), strict=True):
            repo.record_vote(s, cid, voter, vote)
    tie = repo.add_comparison(s, chat_id=3, question="Which is better?", history=[], system_prompt=None,
                              mode_a=("prompt", "cloud"), answer_a="This one.", mode_b=("zero-shot", "local"),
                              answer_b="That one.")
    repo.record_vote(s, tie, VOTERS[2], "tie")
    repo.record_vote(s, tie, VOTERS[3], "both_bad")


@pytest.fixture
def seeded(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", database_url)

    async def write() -> None:
        db = Database(database_url)
        await db.create_all()
        try:
            await db.run(seed)
        finally:
            await db.dispose()

    asyncio.run(write())  # the CLI runs its own event loop: these tests are synchronous
    return database_url


def export(tmp_path: Path, kind: str, *extra: str) -> tuple[int, list[dict], str]:
    out = tmp_path / f"{kind}.jsonl"
    code = main(["dataset", "export", "--kind", kind, "--out", str(out), *extra])
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] if out.exists() else []
    return code, rows, out.read_text(encoding="utf-8") if out.exists() else ""


def loads_with_datasets(path: Path) -> int:
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train", cache_dir=str(path.parent / "hf")).num_rows


def passes_finetune_validation(path: Path, conversations: list[list[dict]]) -> None:
    from finetune.data import parse_conversations

    check = path.with_suffix(".check.jsonl")
    check.write_text("".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in conversations))
    good, problems = parse_conversations(check)
    assert problems == [] and len(good) == len(conversations)


def no_user_ids(text: str) -> None:
    assert not any(str(v) in text for v in VOTERS)


def test_sft_has_the_answers_people_endorsed_with_their_history_and_system_prompt(
        seeded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, text = export(tmp_path, "sft")
    assert code == 0
    last = {(r["messages"][-2]["content"], r["messages"][-1]["content"]): r for r in rows}
    assert set(last) == {("What is the capital of France?", "The capital of France is Paris."),  # 👍
                         ("Name a primary colour.", "Red is a primary colour."),  # won 2 votes to 1, stored twice
                         ("Какая столица Италии?", "Столица Италии — Рим.")}  # the correction, not the answer
    paris = last[("What is the capital of France?", "The capital of France is Paris.")]["messages"]
    assert [m["role"] for m in paris] == ["system", "user", "assistant", "user", "assistant"]
    assert paris[0]["content"] == SYSTEM and paris[1]["content"] == "Hi there, how are you?"
    assert last[("Name a primary colour.", "Red is a primary colour.")]["meta"]["mode"] == "prompt cloud"
    no_user_ids(text)
    out = capsys.readouterr().out
    assert "sft: 3 examples" in out and "mode prompt cloud: 2" in out and "mode zero-shot local: 1" in out
    assert "flagged: invented numbers): 1" in out and "flagged: wrong language): 1" in out
    assert "duplicate): 1" in out
    path = tmp_path / "sft.jsonl"
    assert loads_with_datasets(path) == 3
    passes_finetune_validation(path, [r["messages"] for r in rows])


def test_sft_tokenizes_with_the_finetune_pipelines_own_step(seeded: str, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from finetune.data import parse_conversations, tokenize_all
    from tests.tiny_hf import build_tiny_llama

    code, rows, _ = export(tmp_path, "sft", "--keep-flagged")
    assert code == 0 and len(rows) == 5  # the flagged two are back
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_llama(tmp_path / "tiny", num_layers=1))
    conversations, problems = parse_conversations(tmp_path / "sft.jsonl")
    examples, problems = tokenize_all(tokenizer, conversations, max_length=512)
    assert problems == [] and len(examples) == 5


def test_dpo_pairs_vote_winners_with_losers_and_corrections_with_originals(seeded: str, tmp_path: Path) -> None:
    code, rows, text = export(tmp_path, "dpo")
    assert code == 0
    pairs = {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows}
    assert pairs == {("Red is a primary colour.", "Banana."), ("Столица Италии — Рим.", "Столица Италии — Милан.")}
    for r in rows:
        assert r["prompt"][-1]["role"] == "user" and r["chosen"][0]["role"] == r["rejected"][0]["role"] == "assistant"
    no_user_ids(text)
    path = tmp_path / "dpo.jsonl"
    assert loads_with_datasets(path) == 2
    passes_finetune_validation(path, [r["prompt"] + r["chosen"] for r in rows] + [r["prompt"] + r["rejected"]
                                                                                    for r in rows])


def test_kto_labels_thumbs_up_and_down(seeded: str, tmp_path: Path) -> None:
    code, rows, text = export(tmp_path, "kto")
    assert code == 0
    labels = {(r["completion"][0]["content"], r["label"]) for r in rows}
    assert labels == {("The capital of France is Paris.", True), ("Столица Италии — Милан.", False)}
    no_user_ids(text)
    path = tmp_path / "kto.jsonl"
    assert loads_with_datasets(path) == 2
    passes_finetune_validation(path, [r["prompt"] + r["completion"] for r in rows])


def test_kto_thumbs_up_on_an_answer_corrected_since_label_the_models_text(database_url: str, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """/fix changes the answer in memory, not the Telegram message people rated: their 👍 judged the model's text."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))

    def write(s: Session) -> None:
        answer = turn(s, 1, "What is the capital of France?", "The capital of France is Paris.")
        for voter in VOTERS[:2]:
            repo.record_feedback(s, answer, voter, rating="up", source="button")
        original = repo.correct_answer(s, answer, "Paris is the capital of France.")  # what /fix does
        repo.record_feedback(s, answer, VOTERS[2], rating="down", source="correction",
                             correction="Paris is the capital of France.", original=original)

    async def seed_and_export() -> list[dict]:
        db = Database(database_url)
        await db.create_all()
        try:
            await db.run(write)
            out = tmp_path / "kto.jsonl"
            await export_dataset(db, ExportOptions(kind="kto"), out, salt=b"salt")
            return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        finally:
            await db.dispose()

    rows = asyncio.run(seed_and_export())
    assert [(r["completion"][0]["content"], r["label"]) for r in rows] == [("The capital of France is Paris.", True)]


def test_filters_by_language_mode_and_votes(seeded: str, tmp_path: Path) -> None:
    _, rows, _ = export(tmp_path, "sft", "--lang", "ru")
    assert [r["messages"][-1]["content"] for r in rows] == ["Столица Италии — Рим."]
    _, rows, _ = export(tmp_path, "dpo", "--mode", "zero-shot   local")
    assert {r["meta"]["mode"] for r in rows} == {"prompt cloud", "zero-shot local"}  # Banana lost: still its pair
    _, rows, _ = export(tmp_path, "sft", "--mode", "zero-shot local")
    assert [r["messages"][-1]["content"] for r in rows] == ["Столица Италии — Рим."]
    _, rows, _ = export(tmp_path, "sft", "--min-votes", "2")  # the 👍 of one person goes; a correction stays
    assert [r["messages"][-1]["content"] for r in rows] == ["Red is a primary colour.", "Столица Италии — Рим."]
    code, rows, _ = export(tmp_path, "kto", "--min-votes", "2")
    assert code == 2 and rows == []
    assert export(tmp_path, "kto", "--since", "2026-01-01")[0] == 0
    code, _, _ = export(tmp_path, "dpo", "--since", "2999-01-01")
    assert code == 2


def test_since_with_a_utc_offset_means_the_same_moment_on_every_backend(seeded: str, tmp_path: Path) -> None:
    """`--since 2026-11-01T12:00+03:00` is 09:00 UTC: a verdict given at 10:00 UTC is after it (SQLite too)."""
    from datetime import UTC, datetime

    from sqlalchemy import update

    from bot.storage.models import Feedback, Vote

    async def at_ten() -> None:
        db = Database(seeded)
        try:
            moment = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
            await db.run(lambda s: [s.execute(update(t).values(created_at=moment)) for t in (Feedback, Vote)])
        finally:
            await db.dispose()

    asyncio.run(at_ten())
    code, rows, _ = export(tmp_path, "kto", "--since", "2026-11-01T12:00+03:00")  # 09:00 UTC
    assert code == 0 and len(rows) == 2
    (tmp_path / "kto.jsonl").unlink()
    code, rows, _ = export(tmp_path, "kto", "--since", "2026-11-01T08:00-03:00")  # 11:00 UTC
    assert code == 2 and rows == []


def test_an_empty_result_is_refused_and_writes_nothing(seeded: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kto.jsonl").write_text("kept\n")
    code = main(["dataset", "export", "--kind", "kto", "--out", str(tmp_path / "kto.jsonl"), "--mode", "agent cloud"])
    assert code == 2 and (tmp_path / "kto.jsonl").read_text() == "kept\n"  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    err = capsys.readouterr().err
    assert "nothing to export as kto" in err and "--mode" in err
    with pytest.raises(SystemExit) as exc:
        main(["dataset", "export", "--kind", "xml", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["dataset", "export", "--kind", "sft", "--out", str(tmp_path / "x.jsonl"), "--since", "last week"])
    assert exc.value.code == 2 and "expected a date" in capsys.readouterr().err


def test_raters_are_salted_hashes_stable_per_install(seeded: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _, first, _ = export(tmp_path, "dpo")
    _, again, _ = export(tmp_path, "dpo")
    assert [r["meta"]["raters"] for r in first] == [r["meta"]["raters"] for r in again]
    assert (tmp_path / "data" / "dataset_salt").stat().st_mode & 0o077 == 0  # private to the bot's user
    monkeypatch.setenv("DATASET_SALT", "another install")
    _, other, _ = export(tmp_path, "dpo")
    assert [r["meta"]["raters"] for r in first] != [r["meta"]["raters"] for r in other]
    assert all(len(h) == 16 for r in other for h in r["meta"]["raters"])


async def test_small_pages_give_the_same_file_as_one_page(seeded: str, tmp_path: Path) -> None:
    """Pages split chats and comparisons anywhere; every answer still meets its own history."""
    db = Database(seeded)
    await db.create_all()
    try:
        for kind in ("sft", "dpo", "kto"):
            options = ExportOptions(kind=kind, keep_flagged=True)  # type: ignore[arg-type]
            one = await export_dataset(db, options, tmp_path / f"{kind}-1.jsonl", salt=b"s", page_size=10_000)
            small = await export_dataset(db, options, tmp_path / f"{kind}-2.jsonl", salt=b"s", page_size=1)
            assert one.written == small.written > 0
            assert (tmp_path / f"{kind}-1.jsonl").read_bytes() == (tmp_path / f"{kind}-2.jsonl").read_bytes()
    finally:
        await db.dispose()


async def test_the_export_leaves_the_event_loop_free_between_pages(seeded: str, tmp_path: Path) -> None:
    """What /export in the bot relies on: other chats keep being served while a file is written."""
    db = Database(seeded)
    await db.create_all()
    try:
        export = asyncio.create_task(export_dataset(db, ExportOptions(kind="sft"), tmp_path / "bot.jsonl", salt=b"s",
                                                    page_size=1))
        served_during = 0
        while not export.done():
            served_during += 1
            await asyncio.sleep(0)  # another handler's turn
        assert (await export).written == 3 and served_during > 10
    finally:
        await db.dispose()


def test_the_salt_is_never_empty_even_when_many_processes_make_it_at_once(tmp_path: Path) -> None:
    """An empty salt would leave raters' hashes unkeyed (ids could be found by trying them all)."""
    from concurrent.futures import ProcessPoolExecutor

    from bot.dataset import SALT_FILE, load_salt

    left_by_a_crash = tmp_path / "old"
    left_by_a_crash.mkdir()
    (left_by_a_crash / SALT_FILE).write_bytes(b"")
    salt = load_salt(left_by_a_crash)
    assert len(salt) == 64 and load_salt(left_by_a_crash) == salt
    assert (left_by_a_crash / SALT_FILE).stat().st_mode & 0o077 == 0

    for attempt in range(5):  # processes racing to create it: one salt, the same for all, never empty
        data = tmp_path / f"race-{attempt}"
        with ProcessPoolExecutor(4) as pool:
            salts = list(pool.map(load_salt, [data] * 8))
        assert len(set(salts)) == 1 and len(salts[0]) == 64
        assert [p.name for p in data.iterdir()] == [SALT_FILE]  # nothing left aside
