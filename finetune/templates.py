"""Chat templates for a base without one: the table the local backend uses too (`agents/chat_templates.py`)."""

from __future__ import annotations

from agents.chat_templates import ARCHITECTURE_TEMPLATES, CHATML, CHATML_TEMPLATE, GEMMA_TEMPLATE

__all__ = ["CHATML_TEMPLATE", "GEMMA_TEMPLATE", "template_for"]


def template_for(architecture: str) -> tuple[str, str]:
    """(name, template) for a GGUF architecture without a chat template: its family's, else ChatML."""
    known = ARCHITECTURE_TEMPLATES.get(architecture, CHATML)
    return known.name, known.template
