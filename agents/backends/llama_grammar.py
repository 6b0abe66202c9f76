"""Tool calls under a grammar: the step schema a local model must follow, its GBNF grammar, the tool
instructions in the prompt, and which tools a `tool_choice` leaves."""

from __future__ import annotations

import copy
import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.errors import ModelCallError

if TYPE_CHECKING:
    from llama_cpp import Llama


log = logging.getLogger("agents.backends.llama_chat")

@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A bound tool as the model sees it."""

    name: str
    description: str
    parameters: dict[str, Any]

    @classmethod
    def from_openai(cls, tool: dict[str, Any]) -> ToolSpec:
        function = tool["function"]
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        return cls(function["name"], function.get("description", ""), parameters)


_ANNOTATIONS = frozenset({"title", "description", "examples", "default", "$schema"})


def _inline_refs(schema: Any, defs: dict[str, Any], drop: frozenset[str], depth: int = 0) -> Any:
    """Replace local `$ref`s by their definitions (a tool schema gets embedded in a larger one)."""
    if isinstance(schema, list):
        return [_inline_refs(item, defs, drop, depth) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
        if depth > 8:  # a recursive model: stop constraining below this depth
            return {}
        target = defs.get(ref.rsplit("/", 1)[-1], {})
        return _inline_refs(target, defs, drop, depth + 1)
    return {
        key: _inline_refs(value, defs, drop, depth)
        for key, value in schema.items()
        # A property may be *named* "title": only annotation values (not sub-schemas) are dropped.
        if key not in ("$defs", "definitions") and not (key in drop and not isinstance(value, dict))
    }


def _arguments_schema(parameters: dict[str, Any], *, for_grammar: bool = True) -> dict[str, Any]:
    """A tool's arguments schema, self-contained; annotations kept only for the model to read."""
    defs = {**parameters.get("definitions", {}), **parameters.get("$defs", {})}
    drop = _ANNOTATIONS if for_grammar else frozenset({"title", "$schema"})
    return _inline_refs(copy.deepcopy(parameters), defs, drop)


def step_schema(tools: Sequence[ToolSpec], *, allow_final: bool) -> dict[str, Any]:
    """JSON schema of one agent step: a call of one of `tools`, or (if allowed) a final answer."""
    options: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": tool.name}, "arguments": _arguments_schema(tool.parameters)},
            "required": ["tool", "arguments"],
        }
        for tool in tools
    ]
    if allow_final:
        options.append(
            {
                "type": "object",
                "properties": {"final_answer": {"type": "string"}},
                "required": ["final_answer"],
            }
        )
    return options[0] if len(options) == 1 else {"oneOf": options}


def step_grammar(tools: Sequence[ToolSpec], *, allow_final: bool) -> str:
    """GBNF grammar for one agent step.

    A tool whose schema the converter cannot express is constrained to "any JSON object" (its arguments are
    then checked by the tool itself and a mistake goes back to the model as an observation).
    """
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    safe: list[ToolSpec] = []
    for tool in tools:
        try:
            json_schema_to_gbnf(json.dumps(_arguments_schema(tool.parameters)))
            safe.append(tool)
        except Exception as exc:  # noqa: BLE001 - any converter failure means: relax this tool's schema
            log.warning("tool %s: arguments schema not expressible as a grammar (%s); relaxing it", tool.name, exc)
            safe.append(ToolSpec(tool.name, tool.description, {"type": "object"}))
    return json_schema_to_gbnf(json.dumps(step_schema(safe, allow_final=allow_final)))


@functools.lru_cache(maxsize=64)
def cached_step_grammar(tools_json: str, allow_final: bool) -> str:
    """`step_grammar` memoised on the tools' JSON (an agent binds the same tools at every step)."""
    return step_grammar([ToolSpec(**tool) for tool in json.loads(tools_json)], allow_final=allow_final)


def check_grammar(llm: Llama, grammar: str) -> None:
    """Fail clearly on a grammar llama.cpp rejects (it would otherwise add a null sampler)."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(
        llama_cpp.llama_model_get_vocab(llm.model), grammar.encode("utf-8"), b"root"
    )
    if not sampler:
        raise ModelCallError("llama.cpp rejected the tool-call grammar (an unsupported tool arguments schema?)")
    llama_cpp.llama_sampler_free(sampler)


def tool_instructions(tools: Sequence[ToolSpec], *, allow_final: bool) -> str:
    """The system-prompt addition that tells the model the step format and the tools."""
    lines = [
        "You can use tools. Reply with exactly one JSON object and nothing else:",
        '- to call a tool: {"tool": "<tool name>", "arguments": {<arguments>}}',
    ]
    if allow_final:
        lines.append('- to answer the user: {"final_answer": "<your answer>"}')
        lines.append("Call a tool only when you need its result; after you see the result, answer or call another.")
    else:
        lines.append("You must call one of the tools now.")
    lines.append("Tools:")
    for tool in tools:
        schema = _arguments_schema(tool.parameters, for_grammar=False)
        args = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
        description = " ".join(tool.description.split())
        lines.append(f"- {tool.name}: {description} Arguments schema: {args}")
    return "\n".join(lines)


def select_tools(tools: list[ToolSpec], tool_choice: Any) -> tuple[list[ToolSpec], bool]:
    """Apply LangChain's `tool_choice` to the bound tools; returns (offered tools, final answer allowed)."""
    if tool_choice in (None, "auto"):
        return tools, True
    if tool_choice == "none":
        return [], True
    if tool_choice in ("any", "required", True):
        return tools, False
    if isinstance(tool_choice, dict):
        tool_choice = (tool_choice.get("function") or tool_choice).get("name")
    chosen = [tool for tool in tools if tool.name == tool_choice]
    if not chosen:
        raise ValueError(f"tool_choice {tool_choice!r} is not one of the bound tools: {[t.name for t in tools]}")
    return chosen, False
