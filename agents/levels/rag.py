"""Level `rag`: retrieve passages from the knowledge base, answer from them, cite the sources."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from agents.levels.base import Level, Passage, TurnContext
from agents.messages import stream_text, to_messages, trim_history
from agents.tools.knowledge import format_passages
from agents.types import Passages, ReplyEvent, Source, Sources, TextDelta

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

_CITATION = re.compile(r"\[(\d{1,2})\]")


class RagLevel(Level):
    name = "rag"
    grounded = True
    description = {
        "en": "answers from the knowledge base, with sources",
        "ru": "ответы по базе знаний, со ссылками на источники",
    }

    async def stream(self, ctx: TurnContext) -> AsyncIterator[ReplyEvent]:  # type: ignore[override]
        passages: Sequence[Passage] = []
        if ctx.knowledge is not None and not await ctx.knowledge.is_empty():
            passages = await ctx.knowledge.search(ctx.text, ctx.rag_top_k)
        if passages:
            yield Passages(tuple(p.text for p in passages))
        answer: list[str] = []
        async for event in stream_text(ctx.model, build_rag_messages(ctx, passages)):
            if isinstance(event, TextDelta):
                answer.append(event.text)
            yield event
        sources = cited_sources("".join(answer), passages)
        if sources:
            yield Sources(tuple(sources))


def build_rag_messages(ctx: TurnContext, passages: Sequence[Passage]) -> list[BaseMessage]:
    from langchain_core.messages import HumanMessage, SystemMessage

    system = f"{ctx.prompts.system}\n\n{ctx.prompts.rag_instructions}".strip()
    question = f"{format_passages(passages)}\n\nQuestion: {ctx.text}"
    head = [SystemMessage(system)]
    history = trim_history(to_messages(ctx.history), ctx.token_budget, fixed=[*head, HumanMessage(question)],
                           head=head)
    return [*history, HumanMessage(question)]


def cited_sources(answer: str, passages: Sequence[Passage]) -> list[Source]:
    """The passages the answer cites by number (all retrieved ones when it cites none), one line per source page."""
    cited = [int(n) for n in _CITATION.findall(answer) if 1 <= int(n) <= len(passages)]
    numbers = list(dict.fromkeys(cited)) or list(range(1, len(passages) + 1))
    return [Source(index=n, name=passages[n - 1].source, page=passages[n - 1].page, date=passages[n - 1].date)
            for n in numbers]
