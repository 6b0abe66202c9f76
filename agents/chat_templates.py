"""Chat templates for a GGUF without one (a base model, an old conversion): its architecture's instruct template.

One table for the local backend (`agents/backends/llama_chat.py`) and the fine-tuning of a GGUF base
(`finetune/gguf_base.py`), so a model fine-tuned from a base is trained on the prompts the bot renders for it.
No heavy imports: finetune reads it too.
"""

from __future__ import annotations

from dataclasses import dataclass

# Used only when a GGUF carries no chat template (base models, old conversions): the template its architecture's
# instruction-tuned models use, else ChatML (the most common format).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Google's Gemma template: no system role (a system turn opens the first user turn), the assistant is `model`.
# llama-cpp-python's named "gemma" format drops the system turn altogether and the BOS token Gemma needs.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (prefix if loop.first else '') + message['content'] | trim"
    " + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


@dataclass(frozen=True, slots=True)
class KnownTemplate:
    """A chat template by name, with the stop strings that end its assistant turn."""

    name: str
    template: str
    stop: tuple[str, ...] = ()


CHATML = KnownTemplate("chatml", CHATML_TEMPLATE, ("<|im_end|>",))
GEMMA = KnownTemplate("gemma", GEMMA_TEMPLATE, ("<end_of_turn>",))
# `general.architecture` -> the template of that family's instruction-tuned models.
ARCHITECTURE_TEMPLATES: dict[str, KnownTemplate] = {
    "gemma": GEMMA,
    "gemma2": GEMMA,
    "gemma3": GEMMA,
    "gemma3n": GEMMA,
    "qwen2": CHATML,
    "qwen3": CHATML,
}


