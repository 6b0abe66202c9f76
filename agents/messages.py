"""Shared message plumbing: stored turns -> LangChain messages, trimming to a token budget, streaming text."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from agents.backends.cloud import plain_text_stream
from agents.types import ReplyEvent, TextDelta, Turn, Usage

if TYPE_CHECKING:  # LangChain is imported once the bot polls (0.8 s of start-up): see agents.backends.cloud
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage


def to_messages(history: Sequence[Turn]) -> list[BaseMessage]:
    from langchain_core.messages import AIMessage, HumanMessage

    return [HumanMessage(t.content) if t.role == "user" else AIMessage(t.content) for t in history]


def trim_history(history: list[BaseMessage], budget: int, *, fixed: Sequence[BaseMessage] = (),
                 head: Sequence[BaseMessage] = ()) -> list[BaseMessage]:
    """Keep the newest history that fits `budget` tokens beside the `fixed` messages; returns head + kept history.

    Only what is sent is trimmed: the stored history stays whole. History starts on a user turn.
    """
    from langchain_core.messages.utils import count_tokens_approximately, trim_messages

    left = max(0, budget - count_tokens_approximately(list(fixed)))
    kept = trim_messages(history, max_tokens=left, token_counter=count_tokens_approximately,
                         strategy="last", start_on="human", allow_partial=False) if history else []
    return [*head, *kept]


async def stream_text(model: BaseChatModel, messages: list[BaseMessage]) -> AsyncIterator[ReplyEvent]:
    """Stream the model's answer as TextDelta events, then a Usage event."""
    from langchain_core.messages import AIMessageChunk

    prompt_tokens = completion_tokens = 0
    reported = False
    text_len = 0
    plain = plain_text_stream(model, messages)
    if plain is not None:  # our cloud model: the text straight from the stream
        async with contextlib.aclosing(plain):  # a guard that stops the answer closes the connection at once
            async for text, usage in plain:
                if usage:
                    reported = True
                    prompt_tokens += int(usage.get("prompt_tokens") or 0)
                    completion_tokens += int(usage.get("completion_tokens") or 0)
                if text:
                    text_len += len(text)
                    yield TextDelta(text)
    else:
        async for chunk in model.astream(messages):
            if isinstance(chunk, AIMessageChunk) and chunk.usage_metadata:
                reported = True
                prompt_tokens += chunk.usage_metadata.get("input_tokens", 0)
                completion_tokens += chunk.usage_metadata.get("output_tokens", 0)
            text = str(chunk.text)
            if text:
                text_len += len(text)
                yield TextDelta(text)
    yield Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens) if reported else \
        estimated_usage(messages, text_len)


def estimated_usage(prompt: Sequence[BaseMessage], completion_chars: int, extra_prompt_tokens: int = 0) -> Usage:
    """A model call's usage when the provider reports none: about 4 characters a token (quotas still count it)."""
    from langchain_core.messages.utils import count_tokens_approximately

    return Usage(prompt_tokens=count_tokens_approximately(list(prompt)) + extra_prompt_tokens,
                 completion_tokens=completion_chars // 4 + 1)


@functools.lru_cache(maxsize=16)
def _tags(names: tuple[str, ...]) -> re.Pattern[str]:
    words = "|".join(r"[\s_-]*".join(re.escape(part) for part in re.split(r"[\s_-]+", n)) for n in names)
    return re.compile(rf"<\s*/?\s*(?:{words})\b[^>]*>", re.IGNORECASE)


def defuse_tags(text: str, *names: str) -> str:
    """`text` with every opening or closing tag of `names` made inert (‹/name›), whatever its case or spacing:
    data put inside a delimited block cannot end the block and speak as instructions."""
    return _tags(names).sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›"), text)
