"""A fake web-search provider on loopback: answers every provider's path (SearXNG, Tavily, Brave, SerpAPI)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


@dataclass
class FakeSearchServer:
    """One aiohttp app answering every provider's path with whatever the test sets."""

    status: int = 200
    body: Any = None  # JSON-able, or bytes sent as they are
    delay: float = 0.0
    requests: list[Seen] = field(default_factory=list)
    url: str = ""
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json() if request.can_read_body else None
        self.requests.append(Seen(request.method, request.path, dict(request.query), dict(request.headers),
                                  payload))
        if self.delay:
            try:  # a slow provider; let go at teardown so the test does not wait it out
                await asyncio.wait_for(self.release.wait(), self.delay)
            except TimeoutError:
                pass
        if isinstance(self.body, bytes):
            return web.Response(body=self.body, status=self.status, content_type="application/json")
        return web.json_response(self.body, status=self.status)


@pytest.fixture()
async def search_server() -> AsyncIterator[FakeSearchServer]:
    fake = FakeSearchServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)  # the provider's log, not ours
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    fake.release.set()
    await runner.cleanup()


def searxng_body(n: int, snippet: str = "A snippet.") -> dict[str, Any]:
    """The shape of SearXNG's `format=json` answer (trimmed to the fields that matter)."""
    return {
        "query": "q", "number_of_results": n,
        "results": [{"url": f"https://example.com/{i}", "title": f"Result {i}", "content": snippet,
                     "engine": "duckduckgo", "engines": ["duckduckgo"], "score": 1.0, "category": "general"}
                    for i in range(n)],
        "answers": [], "corrections": [], "infoboxes": [], "suggestions": [], "unresponsive_engines": [],
    }


