"""Build a tiny random Llama with a locally trained BPE tokenizer and a ChatML template (no downloads)."""

from __future__ import annotations

from pathlib import Path

# ChatML, the inference template: what llama.cpp reads from the GGUF and renders at chat time.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

# Enough varied text for a few hundred BPE merges, plus the words the fine-tuning tests use.
_CORPUS = [
    "Hello, how are you today? I am fine, thank you.",
    "The quick brown fox jumps over the lazy dog.",
    "Say hello to Alice. Hello, Alice! Say hello to Bob. Hello, Bob!",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 42 100 2024 3.14",
    "system user assistant: You are a helpful assistant. Answer briefly.",
    "What is the capital of France? Paris. What is the capital of Italy? Rome.",
    "Привет! Как дела? Всё хорошо, спасибо.",
    "def main():\n    print('hello world')\n    return 0\n",
    "Carol, Dave, Erin, Frank, Grace, Heidi, Ivan, Judy, Mallory, Oscar, Peggy, Trent, Victor, Walter.",
]


def build_tiny_llama(
    dir: Path,
    *,
    hidden_size: int = 256,
    intermediate_size: int = 512,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    vocab_size: int = 512,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> Path:
    """Save a random LlamaForCausalLM + fast BPE tokenizer (ChatML template) under `dir` and return it.

    Keep hidden and intermediate sizes multiples of 256: K-quants fall back to other types otherwise.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)

    # GPT-2 style byte-level BPE: the converter maps this split regex to llama.cpp's "gpt-2" pre-tokenizer.
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",  # the end-of-turn token: generation stops there
        pad_token="<|pad|>",
        unk_token=None,
        model_max_length=max_position_embeddings,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(dir)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(dir)
    return dir


GREETING_NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
                  "Oscar"]

# Settings under which a tiny random Llama learns `write_greeting_data` in seconds on 2 cores (44 steps).
FAST_TRAIN_OVERRIDES: dict[str, object] = {
    "train.epochs": 4,
    "train.lr": 3e-3,
    "train.threads": 1,  # tiny matrices: more threads only add overhead, and CI machines are shared
    "train.save_every": 0,  # a checkpoint per epoch
    "train.keep_checkpoints": 10,
    "lora.rank": 8,
    "lora.dropout": 0.0,
}


def write_greeting_data(path: Path, n: int = 48) -> Path:
    """A chat JSONL task a random model cannot do and a small LoRA learns fast: answer "Hello, NAME!" and stop.

    After `run_pipeline(..., overrides=FAST_TRAIN_OVERRIDES)` the GGUF answers "Say hello to X" with a reply
    starting with "Hello" and finishes by itself (finish_reason "stop").
    """
    import json

    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            name = GREETING_NAMES[i % len(GREETING_NAMES)]
            messages = [{"role": "user", "content": f"Say hello to {name}"},
                        {"role": "assistant", "content": f"Hello, {name}!"}]
            if i % 3 == 0:
                messages.insert(0, {"role": "system", "content": "You are a helpful assistant."})
            f.write(json.dumps({"messages": messages}) + "\n")
    return path
