"""`make ladder`'s runner (examples/ladder/run.py): stages that resume after a crash, one runner per stage at a
time, and one report over every rung with the forgetting figure. The full run is a documented command, not CI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from evals.metrics import Run, recommend
from evals.report import build_report

LADDER = Path(__file__).resolve().parent.parent / "examples" / "ladder"


@pytest.fixture(scope="module")
def ladder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ladder_run", LADDER / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def recorder(ladder: ModuleType, log: list[str], name: str, fail: bool = False) -> Any:
    def action() -> dict[str, Any]:
        log.append(name)
        if fail:
            raise ladder.StageFailed(f"{name} broke")
        return {"what": name}

    return ladder.Stage(name, f"stage {name}", action)


def test_a_rerun_after_a_crash_starts_at_the_stage_that_failed(ladder: ModuleType, tmp_path: Path) -> None:
    marks, log = tmp_path / "stages", []
    first = [recorder(ladder, log, "a"), recorder(ladder, log, "b", fail=True), recorder(ladder, log, "c")]
    with pytest.raises(ladder.StageFailed, match="b broke"):
        ladder.run_stages(first, marks, say=lambda _: None)
    assert log == ["a", "b"]
    assert sorted(p.name for p in marks.iterdir()) == ["a.json"]  # the failed stage is not marked, nor locked

    said: list[str] = []
    done = ladder.run_stages([recorder(ladder, log, n) for n in "abc"], marks, say=said.append)
    assert log == ["a", "b", "b", "c"]  # a is not redone
    assert "skipped" in said[0] and said[0].startswith("[1/3] a")
    assert done["a"]["what"] == "a" and done["c"]["what"] == "c" and done["c"]["seconds"] >= 0
    assert json.loads((marks / "b.json").read_text())["what"] == "b"


def test_only_runs_the_named_stages(ladder: ModuleType, tmp_path: Path) -> None:
    log: list[str] = []
    ladder.run_stages([recorder(ladder, log, n) for n in "abc"], tmp_path, only=["b"], say=lambda _: None)
    assert log == ["b"]
    assert not (tmp_path / "a.json").exists() and (tmp_path / "b.json").exists()


def test_a_stage_another_runner_holds_is_waited_for_not_run_twice(ladder: ModuleType, tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    (tmp_path / "a.lock").write_text(str(other.pid))
    said: list[str] = []
    waiting = threading.Event()

    def say(line: str) -> None:
        said.append(line)
        if "another runner" in line:
            waiting.set()

    log: list[str] = []
    runner = threading.Thread(target=ladder.run_stages, args=([recorder(ladder, log, "a")], tmp_path),
                              kwargs={"say": say, "poll_s": 0.05})
    runner.start()
    try:
        assert waiting.wait(60), said
        assert log == []  # the holder is alive: nothing ran
        # the other runner finishes the stage and exits
        (tmp_path / "a.json").write_text(json.dumps({"what": "theirs", "seconds": 1}))
        (tmp_path / "a.lock").unlink()
    finally:
        other.communicate(b"")
        runner.join(60)
    assert log == [] and "skipped" in said[-1]


def test_a_lock_left_by_a_dead_runner_is_taken_over(ladder: ModuleType, tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    (tmp_path / "a.lock").write_text(gone.stdout.strip())
    log: list[str] = []
    ladder.run_stages([recorder(ladder, log, "a")], tmp_path, say=lambda _: None)
    assert log == ["a"] and not (tmp_path / "a.lock").exists()


def test_a_training_sample_is_seeded_and_keeps_the_file_order(ladder: ModuleType, tmp_path: Path) -> None:
    source = tmp_path / "all.jsonl"
    source.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(50)))
    one = ladder.training_data(source, tmp_path / "one.jsonl", 20)
    again = ladder.training_data(source, tmp_path / "two.jsonl", 20)
    rows = [json.loads(line)["n"] for line in one.read_text().splitlines()]
    assert len(rows) == 20 and rows == sorted(rows) and one.read_text() == again.read_text()
    assert ladder.training_data(source, tmp_path / "x.jsonl", 0) == source
    assert ladder.training_data(source, tmp_path / "x.jsonl", 80) == source


def runs(mode: str, passed: int, total: int, loops: int, tags: tuple[str, ...] = ("tariff",)) -> list[Run]:
    return [Run(case=f"c{i}", mode=mode, repeat=0, answer="Тариф «Дом»: 690 ₽." if i < passed else "Дом Дом Дом",
                passed=i < passed, checks={"loops": i < loops, "wrong_language": False, "invented_numbers": False},
                latency_s=1.0, tags=tags) for i in range(total)]


def report_of(mode_runs: dict[str, list[Run]]) -> dict[str, Any]:
    all_runs = [r for rs in mode_runs.values() for r in rs]
    return json.loads(json.dumps(build_report(all_runs, list(mode_runs), repeats=1, target=0.8)))


def test_one_report_over_every_rung_with_forgetting_and_the_issues_checks(ladder: ModuleType,
                                                                          tmp_path: Path) -> None:
    base = report_of({"zero-shot local": runs("zero-shot local", 2, 50, 40),
                      "prompt local": runs("prompt local", 5, 50, 10),
                      "rag local": runs("rag local", 10, 50, 5)})
    tuned = report_of({"prompt finetuned:ladder": runs("prompt finetuned:ladder", 42, 50, 1),
                       "rag finetuned:ladder": runs("rag finetuned:ladder", 40, 50, 0)})
    before = report_of({"zero-shot local": runs("zero-shot local", 12, 30, 3, ("general",))})
    after = report_of({"zero-shot finetuned:ladder": runs("zero-shot finetuned:ladder", 9, 30, 0, ("general",))})

    report = ladder.ladder_report(base, tuned, before, after, target=0.8)
    assert [m["mode"] for m in report["modes"]] == ["zero-shot local", "prompt local", "rag local",
                                                    "prompt finetuned:ladder", "rag finetuned:ladder"]
    assert report["recommendation"] == recommend(report["modes"], 0.8)  # what `adaptbot eval` would say
    assert report["recommendation"]["mode"] == "prompt finetuned:ladder"
    checks = {claim: (holds, figures) for claim, holds, figures in report["checks"]}
    assert checks["the base model loops on most cases at zero-shot"] == (True, "80% of answers loop")
    assert checks["the fine-tune loops on under 5% of cases"] == (True, "at most 2% (of its levels)")
    assert checks["the fine-tune at its best level reaches 0.6"] == (True, "prompt finetuned:ladder: 0.84")
    assert checks["... and is at least 0.4 above the base at its best"][0] is True
    assert checks["... with 95% intervals that do not overlap"][0] is True
    assert checks["forgetting on the general set is reported"] == (None, "0.40 -> 0.30 (drop +0.10)")

    paths = ladder.write(report, {"date": "2026-11-30", "machine": "test"}, tmp_path / "report")
    md = paths["md"].read_text(encoding="utf-8")
    assert "- machine: test" in md
    assert "| the fine-tune loops on under 5% of cases | yes | at most 2% (of its levels) |" in md
    assert "| finetuned:ladder | 30% |" in md and "| local | 40% |" in md  # forgetting: after and before
    assert "## The held-out cases (54), every rung" in md and "| rag finetuned:ladder | 80% |" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert saved["facts"]["machine"] == "test" and len(saved["runs"]) == 250


def test_the_second_runner_takes_the_fine_tune_with_the_same_settings(ladder: ModuleType, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr(ladder.subprocess, "Popen", lambda argv, **_: started.append(argv))
    args = ladder.parser().parse_args(["--dir", str(tmp_path), "--epochs", "2", "--gguf", "m.gguf", "--fresh"])
    ladder._fine_tune_runner(args)
    (argv,) = started
    helper = ladder.parser().parse_args(argv[2:])
    assert helper.only == "model,ft-prepare,ft-train,ft-merge,ft-export,ft-verify" and helper.runners == 1
    assert not helper.fresh  # the first runner cleared the directory; the second must not clear it again
    same = {k: v for k, v in vars(args).items() if k not in ("only", "runners", "fresh")}
    assert {k: v for k, v in vars(helper).items() if k in same} == same


def test_stopping_the_second_runner_stops_the_stage_it_runs(ladder: ModuleType) -> None:
    """A trainer left running after its runner was stopped would race the next run's for the same directory."""
    stage = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; "
             "time.sleep(60)']); print(p.pid, flush=True); time.sleep(60)")
    helper = subprocess.Popen([sys.executable, "-c", stage], stdout=subprocess.PIPE, start_new_session=True)
    assert helper.stdout is not None
    child = int(helper.stdout.readline())
    ladder._stop(helper, grace_s=10)
    assert helper.returncode is not None
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and "Z" not in _state(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child)  # gone (or dead, not yet reaped)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_the_loop_check_reads_the_zero_shot_run_with_room_for_a_loop(ladder: ModuleType, tmp_path: Path) -> None:
    """At the rungs' one-line cut three copies of a question do not fit: the check takes the long-answer run."""
    base = report_of({"zero-shot local": runs("zero-shot local", 0, 50, 10),
                      "prompt local": runs("prompt local", 5, 50, 1)})
    tuned = report_of({"prompt finetuned:ladder": runs("prompt finetuned:ladder", 42, 50, 0)})
    general = report_of({"zero-shot local": runs("zero-shot local", 12, 30, 3, ("general",))})
    long_zero = report_of({"zero-shot local": runs("zero-shot local", 0, 50, 35)})
    report = ladder.ladder_report(base, tuned, general, general, target=0.8, long_zero=long_zero, long_tokens=256)
    checks = {claim: (holds, figures) for claim, holds, figures in report["checks"]}
    assert checks["the base model loops on most cases at zero-shot"] == (
        True, "70% of answers loop at 256 tokens; 20% at the rungs' cut")
    assert [m["mode"] for m in report["modes"]] == ["zero-shot local", "prompt local", "prompt finetuned:ladder"]
    md = ladder.write(report, {"machine": "test"}, tmp_path / "report")["md"].read_text(encoding="utf-8")
    assert "70% of answers loop at 256 tokens" in md


def test_a_fine_tune_that_does_not_beat_the_base_is_reported_as_such(ladder: ModuleType) -> None:
    base = report_of({"zero-shot local": runs("zero-shot local", 2, 50, 10),
                      "rag local": runs("rag local", 20, 50, 0)})
    tuned = report_of({"prompt finetuned:ladder": runs("prompt finetuned:ladder", 25, 50, 5)})
    general = report_of({"zero-shot local": runs("zero-shot local", 12, 30, 3, ("general",))})
    checks = {c: h for c, h, _ in ladder.ladder_report(base, tuned, general, general, target=0.8)["checks"]}
    assert checks["the base model loops on most cases at zero-shot"] is False
    assert checks["the fine-tune loops on under 5% of cases"] is False
    assert checks["the fine-tune at its best level reaches 0.6"] is False
    assert checks["... and is at least 0.4 above the base at its best"] is False
    assert checks["... with 95% intervals that do not overlap"] is False


def test_the_children_get_none_of_the_bots_secrets(ladder: ModuleType, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluating and fine-tuning need no key, token, salt or webhook secret: none reaches the child processes."""
    from pydantic import SecretStr

    from bot.config import Settings

    secrets = [name.upper() for name, f in Settings.model_fields.items() if SecretStr in getattr(
        f.annotation, "__args__", (f.annotation,))]
    assert "OPENAI_API_KEY" in secrets and "DATASET_SALT" in secrets
    for name in secrets:
        monkeypatch.setenv(name, f"secret-of-{name}")
    env = ladder.child_env(tmp_path, None, tmp_path / "prompts.yaml")
    assert [name for name, value in env.items() if value.startswith("secret-of-")] == []
