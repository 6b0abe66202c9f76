"""Errors of the agents package.

    AgentsError
    ├── UnknownNameError        a level or model name that is not registered (lists the valid ones)
    ├── ModelUnavailableError   the backend cannot be used as configured (missing key, missing file)
    ├── KnowledgeUnavailableError  the knowledge base cannot be reached (the cause is logged, never shown)
    └── ModelCallError          the model call failed: timeout, rate limit, server error, refused connection
        └── ModelTimeoutError

Tool failures are not errors here: they go back to the model as observations.
"""

from __future__ import annotations


class AgentsError(Exception):
    """Base of everything `agents/` raises on purpose."""


class UnknownNameError(AgentsError, LookupError):
    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")


class ModelUnavailableError(AgentsError):
    """The model cannot be used as configured; the message says what to set."""


class KnowledgeUnavailableError(AgentsError):
    """The knowledge base failed (a chroma server down, a broken store); the details went to the log only."""


class ModelCallError(AgentsError):
    """A call to the model failed; `reason` is short and safe to show (no secrets)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ModelTimeoutError(ModelCallError):
    pass
