"""The lexical tokenizer under concurrency: ingest and search threads stem words at the same time."""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Iterator

import pytest
import snowballstemmer

from knowledge import lexical

_EN_ROOTS = ["happi", "form", "nation", "relat", "condition", "general", "oper", "sens", "depend", "use",
             "hope", "care", "power", "develop", "connect", "direct", "effect", "organ", "respons", "activ"]
_EN_ENDINGS = ["ness", "al", "ally", "ational", "ization", "fulness", "iveness", "ing", "ed", "ly", "ers",
               "ements", "ities", "ously", "ness"]
_RU_ROOTS = ["сотрудник", "договор", "поставщик", "отчет", "проект", "клиент", "документ", "работ",
             "обработ", "провер", "выпуск", "учет", "заказ", "склад", "оплат"]
_RU_ENDINGS = ["ами", "ов", "ах", "ами", "ей", "ость", "ости", "ениями", "ениях", "ующий", "ующими",
               "овавшийся", "ку", "ками"]


def _words() -> list[str]:
    words = {root + ending for root in _EN_ROOTS for ending in _EN_ENDINGS}
    words |= {root + ending for root in _RU_ROOTS for ending in _RU_ENDINGS}
    return sorted(words)


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads switch every microsecond, so a race inside one `stemWord` call shows up on every run."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    lexical._stem.cache_clear()
    try:
        yield
    finally:
        sys.setswitchinterval(old)
        lexical._stem.cache_clear()  # a corrupted stem must not outlive this test


def test_concurrent_stemming_matches_a_single_thread(fast_switching: None) -> None:
    words = _words()
    english, russian = snowballstemmer.stemmer("english"), snowballstemmer.stemmer("russian")
    reference = {w: (russian if w[0] >= "а" else english).stemWord(w) for w in words}  # one thread, own stemmers
    assert reference["happiness"] == "happi" and reference["сотрудниками"] == "сотрудник"

    results: dict[int, dict[str, str]] = {}
    start = threading.Barrier(8)

    def work(n: int) -> None:
        order = words[:]
        random.Random(n).shuffle(order)
        start.wait()
        results[n] = {w: lexical.tokenize(w)[0] for w in order}

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n, got in results.items():
        wrong = {w: s for w, s in got.items() if s != reference[w]}
        assert not wrong, f"thread {n} got {len(wrong)} wrong stems, e.g. {list(wrong.items())[:3]}"
    # and the cache keeps the right stems afterwards: what search sees for the life of the process
    assert {w: lexical.tokenize(w)[0] for w in words} == reference
