"""Prompt files: the defaults ship here as YAML; PROMPTS_PATH may point at another file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from agents.errors import AgentsError
from agents.types import PromptSet


class PromptFileError(AgentsError):
    """The prompts file is missing or malformed."""


def default_prompts_path() -> Path:
    return Path(str(resources.files("agents.prompts").joinpath("default.yaml")))


def load_prompts(path: Path | None = None) -> PromptSet:
    """Read a prompts file; raise `PromptFileError` with the path and the problem."""
    path = path or default_prompts_path()
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PromptFileError(f"cannot read prompts file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PromptFileError(f"prompts file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("system"), str) or not data["system"].strip():
        raise PromptFileError(f"prompts file {path} needs a non-empty `system` text")
    shots = []
    for i, shot in enumerate(data.get("few_shot") or []):
        if not (isinstance(shot, dict) and all(isinstance(shot.get(k), str) for k in ("user", "assistant"))):
            raise PromptFileError(f"prompts file {path}: few_shot[{i}] needs `user` and `assistant` texts")
        shots.append((shot["user"].strip(), shot["assistant"].strip()))
    return PromptSet(
        system=data["system"].strip(),
        chain_of_thought=str(data.get("chain_of_thought") or "").strip(),
        few_shot=shots,
        agent_instructions=str(data.get("agent") or "").strip(),
        rag_instructions=str(data.get("rag") or "").strip(),
    )
