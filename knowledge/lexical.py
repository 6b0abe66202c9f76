"""Lexical search: a tokenizer for Russian and English that keeps codes whole, and an Okapi BM25 index.

The index is an inverted index (token -> postings), so a query touches only the chunks that contain its
tokens; rank-bm25 scores every chunk in Python for every query token, which costs tens of milliseconds
per query at 10,000 chunks. The index lives in memory and is rebuilt from the documents table at start.
"""

from __future__ import annotations

import heapq
import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

# A word, or a code made of words and digits joined by - . / : _ (ZX-4417, 2024-05, v1.2.3, A/B).
_TOKEN = re.compile(r"[^\W_]+(?:[-./:_][^\W_]+)*")
_JOINERS = re.compile(r"[-./:_]")

_STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "do",
        "does",
        "did",
        "can",
        "you",
        "your",
        "we",
        "our",
        "they",
        "their",
        "there",
        "these",
        "those",
        "than",
        "then",
        "и",
        "в",
        "во",
        "не",
        "что",
        "он",
        "на",
        "я",
        "с",
        "со",
        "как",
        "а",
        "то",
        "все",
        "она",
        "так",
        "его",
        "но",
        "да",
        "ты",
        "к",
        "у",
        "же",
        "вы",
        "за",
        "бы",
        "по",
        "только",
        "ее",
        "её",
        "мне",
        "было",
        "вот",
        "от",
        "меня",
        "еще",
        "ещё",
        "нет",
        "о",
        "из",
        "ему",
        "теперь",
        "когда",
        "даже",
        "ну",
        "вдруг",
        "ли",
        "если",
        "уже",
        "или",
        "ни",
        "быть",
        "был",
        "него",
        "до",
        "вас",
        "нибудь",
        "опять",
        "уж",
        "вам",
        "ведь",
        "там",
        "потом",
        "себя",
        "ничего",
        "ей",
        "может",
        "они",
        "тут",
        "где",
        "есть",
        "надо",
        "ней",
        "для",
        "мы",
        "тебя",
        "их",
        "чем",
        "была",
        "сам",
        "чтоб",
        "без",
        "будто",
        "чего",
        "раз",
        "тоже",
        "себе",
        "под",
        "будет",
        "ж",
        "тогда",
        "кто",
        "этот",
        "того",
        "потому",
        "этого",
        "какой",
        "совсем",
        "ним",
        "здесь",
        "этом",
        "один",
        "почти",
        "мой",
        "тем",
        "чтобы",
        "нее",
        "неё",
        "сейчас",
        "были",
        "куда",
        "зачем",
        "всех",
        "никогда",
        "можно",
        "при",
        "наконец",
        "два",
        "об",
        "другой",
        "хоть",
        "после",
        "над",
        "больше",
        "тот",
        "через",
        "эти",
        "нас",
        "про",
        "всего",
        "них",
        "какая",
        "много",
        "разве",
        "три",
        "эту",
        "моя",
        "впрочем",
        "хорошо",
        "свою",
        "этой",
        "перед",
        "иногда",
        "лучше",
        "чуть",
        "том",
        "нельзя",
        "такой",
        "им",
        "более",
        "всегда",
        "конечно",
        "всю",
        "между",
        "это",
        "ли",
        "какие",
        "каков",
        "какова",
    ]
)


_local = threading.local()


def _stemmers() -> tuple[object, object]:
    """This thread's English and Russian stemmers: a snowball stemmer keeps the word it works on in the
    instance, so one shared by ingest and search threads returns another thread's stem."""
    pair: tuple[object, object] | None = getattr(_local, "stemmers", None)
    if pair is None:
        import snowballstemmer

        pair = _local.stemmers = (snowballstemmer.stemmer("english"), snowballstemmer.stemmer("russian"))
    return pair


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    if any(ch.isdigit() for ch in word) or len(word) < 3:
        return word
    english, russian = _stemmers()
    stemmer = russian if any("а" <= ch <= "я" for ch in word) else english
    return stemmer.stemWord(word)  # type: ignore[attr-defined,no-any-return]


def normalize(text: str) -> str:
    """NFKC, lower case, ё -> е (Russian texts use both spellings of the same words)."""
    return unicodedata.normalize("NFKC", text).lower().replace("ё", "е")


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed tokens; a code like `ZX-4417` yields `zx-4417` and also `zx`, `4417`."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(normalize(text)):
        token = match.group()
        if _JOINERS.search(token):
            tokens.append(token)  # the exact code, the strongest match for a query that quotes it
            tokens.extend(_stem(part) for part in _JOINERS.split(token) if part and part not in _STOP_WORDS)
        elif token not in _STOP_WORDS:
            tokens.append(_stem(token))
    return tokens


def exact_terms(text: str) -> set[str]:
    """The codes and numbers of `text` as whole tokens (`zx-4417`, `2024-05`, `16`): what a user quoting them
    expects to find verbatim."""
    return {m.group() for m in _TOKEN.finditer(normalize(text)) if any(ch.isdigit() for ch in m.group())}


class BM25Index:
    """Okapi BM25 over chunks keyed by id; thread-safe; add and remove are proportional to the chunk size."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._lock = threading.Lock()
        self._postings: dict[str, dict[str, int]] = {}  # token -> chunk id -> term frequency
        self._lengths: dict[str, int] = {}  # chunk id -> number of tokens
        self._terms: dict[str, tuple[str, ...]] = {}  # chunk id -> its distinct tokens, for removal
        self._total = 0

    def __len__(self) -> int:
        return len(self._lengths)

    def add(self, items: Iterable[tuple[str, str]]) -> None:
        """Index (chunk id, text) pairs; an id already present is replaced."""
        tokenized = [
            (chunk_id, tokenize(text)) for chunk_id, text in items
        ]  # outside the lock: the slow part
        with self._lock:
            for chunk_id, tokens in tokenized:
                self._remove_locked(chunk_id)
                self._lengths[chunk_id] = len(tokens)
                self._total += len(tokens)
                counts = Counter(tokens)
                self._terms[chunk_id] = tuple(counts)
                for token, tf in counts.items():
                    self._postings.setdefault(token, {})[chunk_id] = tf

    def remove(self, chunk_ids: Iterable[str]) -> None:
        with self._lock:
            for chunk_id in chunk_ids:
                self._remove_locked(chunk_id)

    def _remove_locked(self, chunk_id: str) -> None:
        length = self._lengths.pop(chunk_id, None)
        if length is None:
            return
        self._total -= length
        for token in self._terms.pop(chunk_id, ()):
            postings = self._postings.get(token)
            if postings is not None:
                postings.pop(chunk_id, None)
                if not postings:
                    del self._postings[token]

    def matching_terms(self, chunk_id: str, terms: set[str]) -> int:
        """How many of `terms` (exact tokens) the chunk contains."""
        with self._lock:
            return len(terms.intersection(self._terms.get(chunk_id, ())))

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The `k` best (chunk id, score) pairs, best first; chunks sharing no token with the query are left out."""
        terms = set(tokenize(query))
        with self._lock:
            n = len(self._lengths)
            if not n or not terms or k <= 0:
                return []
            avg = self._total / n or 1.0
            scores: dict[str, float] = {}
            for term in terms:
                postings = self._postings.get(term)
                if not postings:
                    continue
                idf = math.log(1.0 + (n - len(postings) + 0.5) / (len(postings) + 0.5))
                for chunk_id, tf in postings.items():
                    norm = self.k1 * (1.0 - self.b + self.b * self._lengths[chunk_id] / avg)
                    scores[chunk_id] = scores.get(chunk_id, 0.0) + idf * tf * (self.k1 + 1.0) / (tf + norm)
        return heapq.nsmallest(k, scores.items(), key=lambda item: (-item[1], item[0]))
