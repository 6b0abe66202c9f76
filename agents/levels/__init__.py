"""Adaptation levels and their registry."""

from __future__ import annotations

from agents.levels.base import Level, LevelRegistry, TurnContext
from agents.levels.simple import PromptLevel, ZeroShotLevel


def default_levels() -> LevelRegistry:
    """Every level adaptbot offers, in the order of the adaptation ladder."""
    levels: list[Level] = [ZeroShotLevel(), PromptLevel()]
    try:
        from agents.levels.agent import AgentLevel

        levels.append(AgentLevel())
    except ImportError:  # pragma: no cover - while the agent level is being built
        pass
    try:
        from agents.levels.rag import RagLevel

        levels.append(RagLevel())
    except ImportError:  # pragma: no cover
        pass
    return LevelRegistry(levels)


__all__ = ["Level", "LevelRegistry", "TurnContext", "default_levels"]
