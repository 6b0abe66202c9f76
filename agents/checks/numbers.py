"""Invented numbers: the figures of an answer that none of its sources contains, in any equivalent form.

A number is compared by what it means, not how it is written:
- thousands groups: `1 500`, `1 500` (no-break or thin space), `1,500,000`, `1.500.000` are 1500 and 1500000;
- one comma between digits depends on the text's language, because Russian writes decimals with a comma: in a
  text whose letters are mostly Cyrillic `1,5` and `1,500` are decimals (1.5); in any other text `1,500` (one to
  three digits, a comma, exactly three digits) is 1500 and `1,5` is 1.5. Two kinds of separator (`1,500.25`,
  `1.500,25`): the last one is the decimal point. One dot is always a decimal point (`1.500` is 1.5);
- scale words multiply: `1.5 million` = `1,5 млн` = `1 500 000`, `2 тыс.` = `2k` = 2000 (`k`, `M`, `B` only
  glued to the digits: `5 m` is more likely metres). A source's `1.5 million` also counts as a bare 1.5;
- `15 %`, `15%`, `15 percent`, `15 процентов` are the number 15 (a unit does not change the figure); the sign is
  not compared either ("fell by 5%" and "-5%" state the same figure);
- dates are one item each, not three numbers: `2024-03-01` = `01.03.2024` = `1 марта 2024` = `March 1, 2024`
  (`01/03/2024` may be either day/month order); a day and month without a year match any date on that day; a
  date in a source also provides its year as a number. Times are one item too (`14:30` = `2:30 pm`), and so is
  a phone number (`+7 (495) 123-45-67` = `8 495 1234567`: the last ten digits);
- ordinals and decades are their number (`21st`, `3-й`, `1990s`, `90-х`); list numbering at the start of a line
  (`1. `, `2) `) and citation markers (`[1]`) are structure, not figures, and are skipped in the answer;
- digits glued to a preceding letter (`GPT-4`, `H2O`, `COVID-19`) are names, not figures, and are skipped;
- in the answer, fenced code, inline code and URLs are skipped; sources are read whole (a figure in a
  source's code or link still supports the answer), and their number words (`twenty`, `двадцать`) count too.
Rounding is not an equivalence: `1.5 million` against a source's 1 523 000 is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import NamedTuple

from agents.checks.text import cyrillic_share, mask_code_and_urls

__all__ = ["NumberMention", "extract_numbers", "invented_numbers"]

Key = tuple[object, ...]

_MONTHS_EN = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10,
    "nov": 11, "dec": 12,
}
_MONTHS_RU = {
    "январ": 1, "феврал": 2, "март": 3, "апрел": 4, "ма": 5, "июн": 6, "июл": 7, "август": 8, "сентябр": 9,
    "октябр": 10, "ноябр": 11, "декабр": 12,
}
# Capitalised only: "5 may help" is not a date.
_MONTH_EN = (r"(?P<mon>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
             r"|Sept?(?:ember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_MONTH_RU = (r"(?P<mon>январ[яье]|феврал[яье]|марта?|марте|апрел[яье]|ма[яйе]|июн[яье]|июл[яье]|августа?|августе"
             r"|сентябр[яье]|октябр[яье]|ноябр[яье]|декабр[яье])")
_ORD = r"(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4})"
_DATE_RES = [
    re.compile(r"(?<![\d.])(?P<year>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?![\d-])"),
    re.compile(r"(?<![\d.])(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<year>\d{4})(?![\d]|\.\d)"),
    re.compile(r"(?<![\d/])(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<year>\d{4})(?![\d/])"),
    re.compile(r"(?<![\d/])(?P<year>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2})(?![\d/])"),
    re.compile(rf"(?<!\d)(?P<d>\d{{1,2}}){_ORD}(?:\s+of)?\s+{_MONTH_EN}(?:,?\s+{_YEAR})?(?!\d)"),
    re.compile(rf"\b{_MONTH_EN}\s+(?P<d>\d{{1,2}}){_ORD}(?:,?\s+{_YEAR})?(?!\d)"),
    re.compile(rf"(?<!\d)(?P<d>\d{{1,2}})(?:-?го)?\s+{_MONTH_RU}(?:\s+{_YEAR}(?:\s*(?:г\.|года?|году))?)?(?!\d)",
               re.I),
]
_TIME_RE = re.compile(r"(?<![\d:.])(?P<h>\d{1,2})(?::(?P<m>\d{2})(?::\d{2})?(?![\d:])(?:\s?(?P<ampm>[ap])\.?m\b\.?)?"
                      r"|\s?(?P<ampm2>[ap])\.?m\b\.?)", re.I)
# A phone number is one item: `+7 (495) 123-45-67` = `8 495 1234567` (the last ten digits are compared).
_PHONE_RE = re.compile(r"(?<![\w+])(?:\+\d[\d ()\-]{6,}\d|(?:\d{1,3} ?)?\(\d{3,5}\) ?\d[\d \-]{4,}\d"
                       r"|\d{3}-\d{2}-\d{2})(?![\w-])")
_LIST_MARKER_RE = re.compile(r"(?m)^[ \t>]*(?:#+[ \t]*)?(?:\*\*)?\d{1,3}[.)](?=[ \t])")
_CITATION_RE = re.compile(r"\[\d{1,2}\]")  # `[1]`: a rag answer citing its first source, not a figure
_GROUP_SPACE = "\u0020\u00a0\u202f\u2009\u2007"  # space, no-break, narrow no-break, thin, figure
_GROUP_SPACE_RE = re.compile(f"[{_GROUP_SPACE}]")
_SEPARATOR_RE = re.compile(r"[.,]")
_NUMBER_RE = re.compile(
    rf"""(?P<num>\d{{1,3}}(?:[{_GROUP_SPACE}]\d{{3}}(?!\d))+(?:[.,]\d+)*|\d+(?:[.,]\d+)*)
    (?P<suffix>
        \s?(?:%|процент\w*|percent\b|per\s?cent\b|pct\b)
      | \s?(?:тыс(?:яч\w*|\.)?|млн\.?|миллион\w*|млрд\.?|миллиард\w*|трлн\.?|триллион\w*|thousand\b|million\b
             |mln\b|mn\b|billion\b|bn\b|trillion\b)
      | (?-i:k|K|M|B)\b
      | (?:st|nd|rd|th|s)\b
      | -(?:[a-zа-яё]{{1,3}})\b
    )?""",
    re.X | re.I,
)
_SCALES = [
    ("трлн", 12), ("триллион", 12), ("trillion", 12), ("млрд", 9), ("миллиард", 9), ("billion", 9), ("bn", 9),
    ("b", 9), ("млн", 6), ("миллион", 6), ("million", 6), ("mln", 6), ("mn", 6), ("m", 6), ("тыс", 3),
    ("thousand", 3), ("k", 3),
]
_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "hundred": 100, "thousand": 1000, "ноль": 0, "один": 1, "одна": 1, "одно": 1, "два": 2,
    "две": 2, "три": 3, "четыре": 4, "пять": 5, "шесть": 6, "семь": 7, "восемь": 8, "девять": 9, "десять": 10,
    "одиннадцать": 11, "двенадцать": 12, "пятнадцать": 15, "двадцать": 20, "тридцать": 30, "сорок": 40,
    "пятьдесят": 50, "сто": 100, "тысяча": 1000,
}
_WORD_RE = re.compile(r"[a-zа-яё]+", re.I)
_DIGIT_RE = re.compile(r"\d")
# What each family of patterns cannot match without: most texts have none of it, and one scan says so.
_NUMERIC_DATE_HINT_RE = re.compile(r"\d[-./]\d")  # 2024-03-01, 01.03.2024, 01/03/2024, 2024/03/01
_MONTH_EN_HINT_RE = re.compile(r"Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec")  # _MONTH_EN: capitalised
# январ|феврал|март|апрел|ма[яйе]|июн|июл|август|сентябр|октябр|ноябр|декабр, first letters factored out: a
# case-insensitive alternation of whole names tries every name at every position (ten times slower). A hint may
# match more than the names (`яюн`): the date patterns decide.
_MONTH_RU_HINT_RE = re.compile(r"[яфмаисонд](?:нвар|еврал|арт|а[яйе]|прел|вгуст|юн|юл|ентябр|ктябр|оябр|екабр)", re.I)
_PHONE_HINT_RE = re.compile(r"\+\d|\(\d|\d-\d")
_TIME_HINT_RE = re.compile(r"\d(?::\d|\s?[ap]\.?m)", re.I)
# Any of the hints above, in one scan: most figures are bare numbers, and then none of the families is tried.
_ANY_HINT_RE = re.compile("|".join(
    f"(?i:{hint.pattern})" if hint.flags & re.I else hint.pattern
    for hint in (_NUMERIC_DATE_HINT_RE, _MONTH_EN_HINT_RE, _MONTH_RU_HINT_RE, _PHONE_HINT_RE, _TIME_HINT_RE)))


class NumberMention(NamedTuple):  # a tuple: built by the thousand in an export, three times faster than a dataclass
    """One figure as written (`text`, at `start`) and the keys it is equal to."""

    text: str
    start: int
    keys: frozenset[Key]


def _num(value: Decimal) -> Key:
    return ("n", abs(value).normalize())


_WORD_KEYS = {word: _num(Decimal(value)) for word, value in _WORDS.items()}  # what each number word equals


def _date_keys(year: int | None, month: int, day: int, answer: bool) -> set[Key]:
    """An answer's date is matched by the same full date (or day and month when it gives no year); a source's
    full date also provides its day and month and its year."""
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return set()
    if year is None:
        return {("dm", month, day)}
    if answer:
        return {("date", year, month, day)}
    return {("date", year, month, day), ("dm", month, day), _num(Decimal(year))}


def _month(name: str) -> int:
    name = name.lower()
    if name[0] in "абвгдеёжзийклмнопрстуфхцчшщъыьэюя":
        return next(v for k, v in sorted(_MONTHS_RU.items(), key=lambda kv: -len(kv[0])) if name.startswith(k))
    return _MONTHS_EN[name[:3]]


def _parse_digits(raw: str, russian: bool) -> list[Decimal]:
    """The value(s) of a run of digits and separators (several when it is a list like `1,2,3`)."""
    if raw.isdecimal():  # most figures: no separator to weigh
        return [Decimal(raw)]
    raw = _GROUP_SPACE_RE.sub("", raw)
    seps = _SEPARATOR_RE.findall(raw)
    groups = _SEPARATOR_RE.split(raw)
    try:
        if not seps:
            return [Decimal(raw)]
        if len(set(seps)) == 2:
            head, _, frac = raw.rpartition(seps[-1])
            return [Decimal(re.sub(r"[.,]", "", head) + "." + frac)]
        sep = seps[0]
        thousands = all(len(g) == 3 for g in groups[1:]) and len(groups[0]) <= 3 and groups[0][0] != "0"
        if len(seps) > 1:
            # `1,500,000` and `1.500.000` group thousands; `3.11.2` or `1,2,3` are separate numbers.
            return [Decimal("".join(groups))] if thousands else [Decimal(g) for g in groups]
        if sep == "," and thousands and not russian:
            return [Decimal("".join(groups))]
        return [Decimal(groups[0] + "." + groups[1])]
    except InvalidOperation:
        return []


def _scale(suffix: str) -> int:
    word = suffix.strip().lower().rstrip(".")
    for prefix, power in _SCALES:
        if word == prefix or (len(prefix) > 2 and word.startswith(prefix)):
            return power
    return 0


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def extract_numbers(text: str, *, answer: bool = True, words: bool = True) -> list[NumberMention]:
    """Every figure of `text` in order; `answer=False` reads a source (whole text, bare and scaled values, and
    number words unless `words=False`)."""
    if not _DIGIT_RE.search(text):  # every pattern but the number words needs a digit: most texts end here
        return [] if answer or not words else _number_words(text)
    # The language only changes how one comma between digits reads (see the module docstring)
    russian = "," in text and cyrillic_share(text) > 0.5
    work = mask_code_and_urls(text) if answer else text
    if answer:
        work = _LIST_MARKER_RE.sub(lambda m: " " * len(m.group(0)), work)
        work = _CITATION_RE.sub(lambda m: " " * len(m.group(0)), work)
    found: list[NumberMention] = []
    hinted = _ANY_HINT_RE.search(work) is not None

    for pattern in _date_patterns(work) if hinted else ():
        for m in pattern.finditer(work):
            groups = m.groupdict()
            year = int(groups["year"]) if groups.get("year") else None
            if "a" in groups:
                a, b = int(groups["a"]), int(groups["b"])
                keys = _date_keys(year, b, a, answer) | _date_keys(year, a, b, answer)
            else:
                month = _month(groups["mon"]) if groups.get("mon") else int(groups["m"])
                keys = _date_keys(year, month, int(groups["d"]), answer)
            if not keys:
                continue
            found.append(NumberMention(m.group(0), m.start(), frozenset(keys)))
            work = _blank(work, m.start(), m.end())

    for m in _PHONE_RE.finditer(work) if hinted and _PHONE_HINT_RE.search(work) else ():
        digits = re.sub(r"\D", "", m.group(0))
        if len(digits) >= 7:
            found.append(NumberMention(m.group(0), m.start(), frozenset({("phone", digits[-10:])})))
            work = _blank(work, m.start(), m.end())

    for m in _TIME_RE.finditer(work) if hinted and _TIME_HINT_RE.search(work) else ():
        hour, minute = int(m["h"]), int(m["m"] or 0)
        ampm = (m["ampm"] or m["ampm2"] or "").lower()
        if ampm and not 1 <= hour <= 12:
            continue
        hour = hour % 12 + (12 if ampm == "p" else 0) if ampm else hour
        if hour <= 24 and minute < 60:
            # `5 PM.` ends a sentence; `9 a.m.` keeps its dot.
            written = m.group(0)[:-1] if re.search(r"[ap]m\.$", m.group(0), re.I) else m.group(0)
            found.append(NumberMention(written, m.start(), frozenset({("time", hour, minute)})))
            work = _blank(work, m.start(), m.end())

    for m in _NUMBER_RE.finditer(work):
        before = work[max(0, m.start() - 2):m.start()]
        # Glued to a word (`H2O`, `GPT-4`, `COVID-19`) or to a number we did not parse: a name, not a figure.
        if before and (before[-1].isalnum() or before[-1] in "_." or (before[-1] == "-" and before[0].isalpha())):
            continue
        suffix, raw = m["suffix"] or "", m["num"]
        values = _parse_digits(raw, russian)
        if not values:
            continue
        power = _scale(suffix) if suffix and not suffix.startswith("-") else 0
        if len(values) > 1:
            offset = m.start()
            for piece, value in zip(re.split(r"[.,]", raw), values, strict=True):
                found.append(NumberMention(piece, offset, frozenset({_num(value)})))
                offset += len(piece) + 1
            continue
        value = values[0]
        keys = {_num(value * (Decimal(10) ** power)) if power else _num(value)}
        if power and not answer:
            keys.add(_num(value))
        if len(raw) >= 10 and raw.isdigit():
            keys.add(("phone", raw[-10:]))  # a phone number written without separators
        found.append(NumberMention(m.group(0).rstrip(" ."), m.start(), frozenset(keys)))

    if not answer and words:
        found += _number_words(text)
    found.sort(key=lambda mention: mention.start)
    return found


def _date_patterns(text: str) -> list[re.Pattern[str]]:
    """The date patterns that can match `text`: each needs what its hint finds (one scan instead of several)."""
    found = []
    if _NUMERIC_DATE_HINT_RE.search(text):
        found += _DATE_RES[:4]
    if _MONTH_EN_HINT_RE.search(text):
        found += _DATE_RES[4:6]
    if _MONTH_RU_HINT_RE.search(text):
        found.append(_DATE_RES[6])
    return found


def _number_words(text: str) -> list[NumberMention]:
    """A source's number words (`twenty`, `двадцать`)."""
    found = []
    for m in _WORD_RE.finditer(text):
        key = _WORD_KEYS.get(m.group(0).lower())
        if key is not None:
            found.append(NumberMention(m.group(0), m.start(), frozenset({key})))
    return found


def invented_numbers(answer: str, sources: Iterable[str]) -> list[str]:
    """The answer's figures, as written and without repeats, that no source states in any equivalent form."""
    mentions = extract_numbers(answer)
    if not mentions:  # nothing to look up: the sources are not read at all
        return []
    known: set[Key] = set()
    for source in sources:
        known |= _source_keys(source) if len(source) <= _CACHED_SOURCE_CHARS else _read_source(source)
    invented: list[str] = []
    for mention in mentions:
        if not mention.keys & known and mention.text not in invented:
            invented.append(mention.text)
    return invented


def _read_source(text: str) -> frozenset[Key]:
    """The keys of every figure a source states: `extract_numbers(text, answer=False)`'s, without the mentions."""
    keys = {key for mention in extract_numbers(text, answer=False, words=False) for key in mention.keys}
    keys.update(_WORD_KEYS[word] for word in _WORD_RE.findall(text.lower()) if word in _WORD_KEYS)
    return frozenset(keys)


# The same history turns, system prompt and passages are sources of many answers (a chat's every later turn, a
# dataset export's every example of a chat): read each once. Bounded: at most 4096 texts of up to 4000 characters.
_CACHED_SOURCE_CHARS = 4000
_source_keys = lru_cache(maxsize=4096)(_read_source)
