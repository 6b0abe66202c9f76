"""Build a tiny random-initialised Llama as a GGUF file, for tests and benches of the local backend.

Its answers are gibberish; what matters is that llama.cpp loads it in well under a second, generates
hundreds of tokens per second on two cores, tokenizes with a real (locally trained) byte-level BPE
vocabulary and carries a ChatML chat template in its metadata, like a real instruct model.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

BOS, EOS, IM_START = "<|endoftext|>", "<|im_end|>", "<|im_start|>"
SPECIAL_TOKENS = [BOS, IM_START, EOS]

# A little text to learn merges from: English, Russian (the bot's two languages) and the JSON the
# agent steps are made of, so common pieces become single tokens.
_CORPUS = """
The quick brown fox jumps over the lazy dog. A small model answers questions about the weather,
numbers and documents. The assistant calls a tool when it needs one and gives a final answer otherwise.
What is the weather in Paris today? It is sunny and warm. Compute two plus two: the result is four.
Search the knowledge base for the holiday policy; the handbook says employees get twenty days.
Быстрая бурая лиса прыгает через ленивую собаку. Маленькая модель отвечает на вопросы о погоде,
числах и документах. Какая погода в Москве? Сегодня солнечно и тепло. Посчитай два плюс два: четыре.
{"tool": "calculator", "arguments": {"expression": "2 + 2"}}
{"tool": "web_search", "arguments": {"query": "weather in Paris"}}
{"final_answer": "The answer is 4."}
{"final_answer": "Ответ: четыре."}
"""


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: the printable stand-in character -> the byte it encodes."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


_BYTES = _byte_decoder()


def _is_utf8(token: str) -> bool:
    try:
        bytes(_BYTES[c] for c in token).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return False
    return True


def _train_tokenizer(vocab_size: int) -> tuple[list[str], list[str]]:
    """Train a byte-level BPE on the corpus; returns (tokens by id, merges)."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    # The GPT-2 split regex, matching llama.cpp's `gpt-2` pre-tokenizer.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    tokens = [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, merges


def build_tiny_gguf(
    path: Path,
    *,
    seed: int = 0,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    vocab_size: int = 512,
    context_length: int = 4096,
    chat_template: str | None = CHATML_TEMPLATE,
) -> Path:
    """Write a random tiny Llama GGUF (f32 weights, BPE vocab, chat template) to `path` and return it."""
    import gguf

    tokens, merges = _train_tokenizer(vocab_size)
    token_types = [gguf.TokenType.CONTROL if tok in SPECIAL_TOKENS else gguf.TokenType.NORMAL for tok in tokens]
    n_vocab = len(tokens)
    head_dim = n_embd // n_head
    rng = np.random.default_rng(seed)

    def weight(rows: int, cols: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    def norm() -> np.ndarray:
        return np.ones(n_embd, dtype=np.float32)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name("adaptbot-tiny-llama")
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index(BOS))
    writer.add_eos_token_id(tokens.index(EOS))
    writer.add_pad_token_id(tokens.index(BOS))
    writer.add_add_bos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    # Token embeddings get a larger scale so the logits are not all equal (sampling is then seed-driven).
    writer.add_tensor("token_embd.weight", weight(n_vocab, n_embd, 1.0))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", norm())
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(n_head * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(n_embd, n_head * head_dim))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", norm())
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(n_embd, n_ff))
    writer.add_tensor("output_norm.weight", norm())
    output = weight(n_vocab, n_embd, 0.5)
    # Some tokens get zero logits while the others spread widely, so they never make the top-k:
    # - control tokens: free text runs to max_tokens (predictable lengths for tests and benches); a grammar
    #   still ends a JSON step with EOS, because it masks every other token first;
    # - tokens that are not valid UTF-8 on their own (a lone byte of a multibyte character): a trained
    #   model completes such characters, a random one would not, and llama-cpp-python's streaming then
    #   re-decodes the whole undecodable tail at every token (cubic time).
    for token_id, token in enumerate(tokens):
        if token in SPECIAL_TOKENS or not _is_utf8(token):
            output[token_id] = 0.0
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    return path


if __name__ == "__main__":
    import sys

    out = build_tiny_gguf(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny.gguf"))
    print(out, out.stat().st_size, "bytes")
