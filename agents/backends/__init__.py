"""Model backends and their registry."""

from agents.backends.base import Backend, ModelRegistry

__all__ = ["Backend", "ModelRegistry"]
