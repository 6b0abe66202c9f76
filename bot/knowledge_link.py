"""Connects the knowledge base to the bot: opened on first use (the embedding model loads only when needed)."""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING, Any

from bot.ingest_jobs import IngestJobs

if TYPE_CHECKING:
    from bot.app import Services
    from knowledge.kb import KnowledgeBase


class LazyKnowledge:
    """A KnowledgeBase opened on first use and shared by the rag level, the agent tool and the admin handlers."""

    def __init__(self, *, max_jobs: int = 4, shutdown_grace: float = 10.0, **open_kwargs: Any) -> None:
        self._kwargs = open_kwargs
        self._kb: KnowledgeBase | None = None
        self._lock = asyncio.Lock()
        self.jobs = IngestJobs(max_jobs, shutdown_grace)  # uploads being indexed in the background

    async def get(self) -> KnowledgeBase:
        async with self._lock:
            if self._kb is None:
                # imported in a thread: numpy, chromadb and the embedding libraries take seconds to import
                kb = await asyncio.to_thread(importlib.import_module, "knowledge.kb")
                self._kb = await kb.KnowledgeBase.open(**self._kwargs)
            return self._kb

    async def search(self, query: str, k: int) -> list[Any]:
        return await (await self.get()).search(query, k)

    async def is_empty(self) -> bool:
        return await (await self.get()).is_empty()

    async def aclose(self) -> None:
        await self.jobs.aclose()  # uploads in progress stop (and say so) before the store closes
        if self._kb is not None:
            await self._kb.aclose()
            self._kb = None


def attach(services: Services) -> None:
    s = services.settings
    lazy = LazyKnowledge(data_dir=s.data_dir, embedding_model=s.embedding_model,
                         embedding_backend=s.embedding_backend, chroma_host=s.chroma_host,
                         chroma_port=s.chroma_port, max_file_bytes=s.kb_max_file_mb * 1024 * 1024,
                         max_chunks=s.kb_max_chunks, max_jobs=s.kb_max_jobs,
                         shutdown_grace=s.shutdown_timeout)
    services.brain.knowledge = lazy
    services.knowledge = lazy
