"""Evaluated prefixes of recent conversations, so a chat's next local turn evaluates only its new tokens.

llama-cpp-python reuses the KV prefix of the previous request only: when chats take turns on one model, each turn
evaluates its chat's whole history again (on Gemma 3 270M, 3 chats: 0.9 s to the first token at turn 1, 7.2 s at
turn 7). Its `LlamaRAMCache` does not help: `Llama.save_state()` copies the whole logits buffer (n_batch x n_vocab
floats: 512 MB for Gemma's 262k-token vocabulary) into every entry, so the 2 GB default holds about three states,
and every save costs that copy.

This cache keeps llama.cpp's *sequence* state instead (`llama_state_seq_get_data`: the KV cells of the sequence,
no logits; 13 MB for a 1,770-token chat on Gemma 3 270M), as llama-server's slots keep one sequence per
conversation. Entries are found by the longest common token prefix with the new prompt (a conversation *is* its
tokens, so no chat id has to reach the model; two chats that start alike share their prefix), the live context
is saved only when another conversation is about to replace it, and the least recently used entries go when the
total passes the memory cap. Everything here runs on the model's worker thread.

Sliding-window models (Gemma 2/3): llama.cpp saves only the window of the newest token of their SWA layers (on
Gemma 3 270M a state is about 7.7 MB for the window plus 3 KB a token), so a restored conversation can be
continued but not cut back; `safe_reuse` then evaluates the prompt afresh. A chat's next turn normally extends its
last one exactly (the answer's tokens, then the template's end-of-turn), so it continues.
"""

from __future__ import annotations

import collections
import ctypes
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    from llama_cpp import Llama

log = logging.getLogger(__name__)

SEQ = 0  # llama-cpp-python decodes everything as sequence 0


@dataclass(eq=False, slots=True)
class _Entry:
    tokens: np.ndarray  # the evaluated tokens whose KV cells `state` holds
    state: ctypes.Array[ctypes.c_uint8]

    @property
    def size(self) -> int:
        return len(self.state) + self.tokens.nbytes


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays."""
    import numpy as np  # imported with the first local model, like llama_cpp: no part of a cloud-only bot

    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


def _memory(llm: Llama) -> object:
    import llama_cpp

    return llama_cpp.llama_get_memory(llm.ctx)


def evaluated_tokens(llm: Llama) -> int:
    """Tokens llama.cpp has evaluated in this context so far (its own counters: prompt batches and single tokens)."""
    import llama_cpp

    perf = llama_cpp.llama_perf_context(llm.ctx)
    return int(perf.n_p_eval) + int(perf.n_eval)


def safe_reuse(llm: Llama, tokens: Sequence[int] | np.ndarray) -> int:
    """How many tokens of the live context the next `generate(tokens)` may keep; resets the context when none.

    Mirrors llama-cpp-python's prefix match (the last prompt token is evaluated again when all of it matches). With
    a sliding-window (SWA) KV cache, cells older than the window of the newest token are dropped: cutting the live
    context back further than llama.cpp still holds cells for would attend to missing cells (llama-cpp-python
    does it silently), so then the whole prompt is evaluated again, as llama-server does.
    """
    import llama_cpp
    import numpy as np

    live = np.asarray(llm.input_ids[: llm.n_tokens])
    prompt = np.asarray(tokens, dtype=live.dtype)
    keep = common_prefix(live, prompt)
    if keep == len(prompt):
        keep -= 1
    if 0 < keep < llm.n_tokens:
        pos_min = llama_cpp.llama_memory_seq_pos_min(_memory(llm), SEQ)
        n_swa = max(1, llama_cpp.llama_model_n_swa(llm.model))
        if pos_min < 0 or pos_min > max(0, keep - n_swa):
            keep = 0
    if keep <= 0 and llm.n_tokens:
        llm.reset()
        keep = 0
    return keep


class PromptCache:
    """Saved sequence states of recent conversations, at most `capacity_bytes` in total, least recently used out."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._entries: collections.OrderedDict[int, _Entry] = collections.OrderedDict()
        self._ids = 0
        self._live_saved = True  # the live context equals a saved entry (or is empty): nothing to save
        self.restores = 0  # for diagnostics and tests
        self.saves = 0

    @property
    def size_bytes(self) -> int:
        return sum(entry.size for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def prepare(self, llm: Llama, tokens: Sequence[int]) -> None:
        """Before `tokens` are evaluated: put the saved conversation that shares most of them into the context.

        The live context is saved first when it is about to be replaced (another conversation's turn comes next).
        """
        import numpy as np

        if self.capacity_bytes <= 0:
            return
        prompt = np.asarray(tokens, dtype=np.intc)
        live = np.asarray(llm.input_ids[: llm.n_tokens])
        live_match = common_prefix(live, prompt)
        if live_match < llm.n_tokens:  # the live conversation is about to be cut: keep it for its next turn
            self._save_live(llm)
        best_key, best = None, live_match
        for key, entry in self._entries.items():
            n = common_prefix(entry.tokens, prompt)
            if n > best:
                best_key, best = key, n
        if best_key is not None:
            self._entries.move_to_end(best_key)
            self._restore(llm, self._entries[best_key])
        self._live_saved = False  # this turn adds tokens to the live context

    def _save_live(self, llm: Llama) -> None:
        import llama_cpp
        import numpy as np

        if self._live_saved or llm.n_tokens == 0:
            return
        tokens = np.array(llm.input_ids[: llm.n_tokens], dtype=np.intc)
        # The live context supersedes the saved states it extends (the same conversation, earlier turns).
        for key in [k for k, e in self._entries.items() if common_prefix(e.tokens, tokens) == len(e.tokens)]:
            del self._entries[key]
        size = llama_cpp.llama_state_seq_get_size(llm.ctx, SEQ)
        if size + tokens.nbytes > self.capacity_bytes:
            return
        state = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llm.ctx, state, size, SEQ)
        if written != size:
            log.warning("prompt cache: llama.cpp saved %d of %d bytes; not cached", written, size)
            return
        self._ids += 1
        self._entries[self._ids] = _Entry(tokens, state)
        self._live_saved = True
        self.saves += 1
        total = self.size_bytes
        while total > self.capacity_bytes and self._entries:
            _, dropped = self._entries.popitem(last=False)
            total -= dropped.size

    def _restore(self, llm: Llama, entry: _Entry) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(_memory(llm), SEQ, -1, -1)
        if llama_cpp.llama_state_seq_set_data(llm.ctx, entry.state, len(entry.state), SEQ) != len(entry.state):
            log.warning("prompt cache: llama.cpp refused a saved state; evaluating the prompt in full")
            llm.reset()
            return
        n = len(entry.tokens)
        llm.input_ids[:n] = entry.tokens
        llm.n_tokens = n
        llm._requires_eval = True  # restored cells, no logits: the next decode must refresh them
        self._live_saved = True
        self.restores += 1

    def clear(self) -> None:
        self._entries.clear()
        self._live_saved = True
