"""Levels 0 and 1: the bare model (`zero-shot`) and prompt engineering (`prompt`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from agents.levels.base import Level, TurnContext
from agents.messages import stream_text, to_messages, trim_history
from agents.types import ReplyEvent

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage


class ZeroShotLevel(Level):
    name = "zero-shot"
    description = {
        "en": "the bare model: no system prompt, your words as they are",
        "ru": "голая модель: без системного промпта, ваши слова как есть",
    }

    def stream(self, ctx: TurnContext) -> AsyncIterator[ReplyEvent]:
        from langchain_core.messages import HumanMessage

        messages = [*trim_history(to_messages(ctx.history), ctx.token_budget), HumanMessage(ctx.text)]
        return stream_text(ctx.model, messages)


class PromptLevel(Level):
    name = "prompt"
    description = {
        "en": "prompt engineering: system prompt, few-shot examples, step-by-step reasoning",
        "ru": "промпт-инжиниринг: системный промпт, примеры, рассуждение по шагам",
    }

    def stream(self, ctx: TurnContext) -> AsyncIterator[ReplyEvent]:
        return stream_text(ctx.model, build_prompt_messages(ctx))


def build_prompt_messages(ctx: TurnContext) -> list[BaseMessage]:
    """System prompt (+ chain of thought), then few-shot pairs, then trimmed history, then the question."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    system = ctx.prompts.system
    if ctx.prompts.chain_of_thought:
        system = f"{system}\n\n{ctx.prompts.chain_of_thought}"
    shots: list[BaseMessage] = []
    for user, assistant in ctx.prompts.few_shot:
        shots += [HumanMessage(user), AIMessage(assistant)]
    head: Sequence[BaseMessage] = [SystemMessage(system), *shots]
    question = HumanMessage(ctx.text)
    history = trim_history(to_messages(ctx.history), ctx.token_budget, fixed=[*head, question], head=head)
    return [*history, question]
