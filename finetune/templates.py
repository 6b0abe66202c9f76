"""Chat templates for a base without one (a GGUF base model): the template of its architecture's instruct models.

The same table as the local backend's fallback (`agents/backends/llama_chat.py`), so a model fine-tuned here is
trained on the prompts the bot would render for its base; finetune/ does not import agents/, hence the copy.
"""

from __future__ import annotations

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Google's Gemma template: no system role (a system turn opens the first user turn), the assistant is `model`.
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

# `general.architecture` -> (name, template) of that family's instruction-tuned models
ARCHITECTURE_TEMPLATES: dict[str, tuple[str, str]] = {
    "gemma": ("gemma", GEMMA_TEMPLATE),
    "gemma2": ("gemma", GEMMA_TEMPLATE),
    "gemma3": ("gemma", GEMMA_TEMPLATE),
    "gemma3n": ("gemma", GEMMA_TEMPLATE),
    "qwen2": ("chatml", CHATML_TEMPLATE),
    "qwen3": ("chatml", CHATML_TEMPLATE),
}


def template_for(architecture: str) -> tuple[str, str]:
    """(name, template) for a GGUF architecture without a chat template: its family's, else ChatML."""
    return ARCHITECTURE_TEMPLATES.get(architecture, ("chatml", CHATML_TEMPLATE))
