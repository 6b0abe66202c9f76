"""Tools the agent level can offer the model: a safe calculator and web search (knowledge search lives beside).

Every tool returns its failures as observation strings; only our own bugs raise.
"""

from __future__ import annotations

from agents.tools.calculator import CalculatorError, calculate, make_calculator_tool
from agents.tools.web_search import (
    SearchConfigError,
    SearchError,
    SearchProvider,
    SearchProviderError,
    SearchResult,
    make_search_provider,
    make_web_search_tool,
)

__all__ = [
    "CalculatorError",
    "SearchConfigError",
    "SearchError",
    "SearchProvider",
    "SearchProviderError",
    "SearchResult",
    "calculate",
    "make_calculator_tool",
    "make_search_provider",
    "make_web_search_tool",
]
