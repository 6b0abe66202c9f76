"""Refusals for lack of information: does an answer say that what was asked is not known or not available?

It decides on phrasings, Russian and English, in which the writer states that the information is missing
("I couldn't find that in the documents", "there is no information about", "в документах нет сведений",
"не удалось найти", "не знаю"). Phrases must speak for the writer or the sources: "if you don't know your
password" or "если не знаете пароль" are advice, not refusals. A refusal on policy grounds ("I can't help with
that") is not a lack of information and is not matched. Code and URLs are skipped, and case, whitespace and
`ё` do not matter (`agents.checks.text.normalize`).
"""

from __future__ import annotations

import re

from agents.checks.text import mask_code_and_urls, normalize

__all__ = ["is_refusal"]

_SOURCES_EN = (r"(?:documents?|sources?|context|handbook|knowledge base|search results?|passages?|text|files?|"
               r"materials?|provided information|data you (?:gave|provided|shared))")
_SOURCES_RU = (r"(?:документ\w*|справочник\w*|источник\w*|текст\w*|материал\w*|базе знаний|контекст\w*|стать\w+|"
               r"файл\w*|инструкци\w+|руководств\w+|регламент\w*|договор\w*|результат\w* поиска)")
_RU_NOT_SAID = (r"не (?:упоминается|упоминаются|указан[аоы]?|сказано|говорится|описан[аоы]?|содержится|"
                r"содержат|приводится|приведен[аоы]?|освещается|рассматривается)")
_EN = [
    r"\bi (?:really |simply )?(?:do not|don't|dont) know\b",
    r"\bi (?:do not|don't|dont) have (?:any |enough |the |that |this |such |reliable |up-to-date |current )?"
    r"(?:information|data|details|access|knowledge)\b",
    r"\bi (?:could not|couldn't|cannot|can't|can not|was unable to|am unable to|wasn't able to|was not able to)"
    r" (?:find|locate) (?:any |the |this |that |such |relevant |specific |an? )?(?:information|data|details|mention|"
    r"answer|anything|figures?|numbers?|it|that|this)\b",
    r"\bi (?:could not|couldn't|cannot|can't|can not|am unable to) (?:answer|tell|determine|confirm|say)\b",
    r"\b(?:there is|there's|there are|i found|i have|i've got|we have) no (?:\w+ ){0,2}"
    r"(?:information|data|details|mention|record|records)\b",
    r"\bno (?:relevant |such |specific )?(?:information|data|details) (?:is |was )?(?:available|provided|given|"
    r"found)\b",
    rf"\b(?:is|are|was|were|isn't|aren't) (?:not )?(?:mentioned|specified|stated|covered|provided|listed|described|"
    rf"given|found) (?:in|by) (?:the |your |any of the |these |those )?{_SOURCES_EN}",
    rf"\b{_SOURCES_EN} (?:do not|don't|does not|doesn't|did not|didn't) (?:say|mention|contain|include|cover|"
    r"specify|state|provide|have)\b",
    r"\b(?:this|that|such|the) information is(?: not|n't) (?:available|provided|known)\b",
    r"\bbeyond (?:my|the) (?:knowledge|available information)\b",
]
_RU = [
    r"(?<!\w)(?:я )?не знаю(?!\w)",
    r"(?<!\w)не (?:могу|смогу|удалось|получилось) (?:точно |однозначно )?(?:найти|ответить|сказать|определить|"
    r"подтвердить|узнать)(?!\w)",
    r"(?<!\w)(?:я|мы) (?:\w+ )?не (?:нашел|нашла|нашли)(?!\w)",
    r"(?<!\w)(?:ничего )?не (?:нашел|нашла|нашли|нашлось|найдено|найдена|найдены) (?:\w+ ){0,3}?"
    r"(?:информаци\w*|данн\w*|сведени\w*|упоминани\w*|ответ\w*)",
    r"(?<!\w)ничего не (?:нашлось|найдено|удалось найти)(?!\w)",
    r"(?<!\w)(?:у меня )?нет (?:\w+ ){0,2}(?:информации|данных|сведений|доступа|ответа|упоминани[йя])(?!\w)",
    r"(?<!\w)(?:информации|данных|сведений|упоминаний)(?: об этом| на этот счет| по этому вопросу)? "
    r"(?:нет|не найдено|не найдены|отсутству(?:ет|ют))(?!\w)",
    r"(?<!\w)(?:информации|данных|сведений|упоминаний)[^.!?\n]{0,60} нет(?=\s*[.!?\n]|$)",
    r"(?<!\w)отсутству(?:ет|ют) (?:\w+ )?(?:информаци[яи]|данные|сведения)(?!\w)",
    rf"(?<!\w)(?:в|во|из) (?:\w+ )?{_SOURCES_RU}[^.!?\n]{{0,80}}{_RU_NOT_SAID}(?!\w)",
    rf"(?<!\w){_RU_NOT_SAID}[^.!?\n]{{0,60}}(?:в|во) (?:\w+ )?{_SOURCES_RU}",
    r"(?<!\w)не располагаю(?!\w)",
    r"(?<!\w)затрудняюсь (?:ответить|сказать)(?!\w)",
    r"(?<!\w)(?:мне|нам|это|точно) неизвестно(?!\w)",
]
# Advice that happens to contain a refusal's words: "if you don't know", "если не знаете", "in case it isn't".
_CONDITIONAL = re.compile(r"\b(?:if|in case|unless|when|whether) [^.!?\n]{0,60}$|(?<!\w)(?:если|когда|вдруг) "
                          r"[^.!?\n]{0,60}$")
_PATTERNS = re.compile("|".join(f"(?:{p})" for p in _EN + _RU))


def is_refusal(text: str) -> bool:
    """Whether the answer says the information asked for is not known or not available."""
    prepared = normalize(mask_code_and_urls(text)).replace("’", "'")
    for match in _PATTERNS.finditer(prepared):
        if not _CONDITIONAL.search(prepared[max(0, match.start() - 80):match.start()]):
            return True
    return False
