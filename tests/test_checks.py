"""The deterministic checks (agents/checks): equivalences and legitimate repetitions, in Russian and English."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.checks.language import detect_language, wrong_language
from agents.checks.numbers import invented_numbers
from agents.checks.refusal import is_refusal
from agents.checks.repetition import LoopDetector, find_loop, repeated_tool_calls
from agents.checks.text import mask_code_and_urls, normalize

DATA = Path(__file__).parent / "data"

# ---------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param("Ёлка  зелёная\n", "елка зеленая", id="ru-yo-case-space"),
        pytest.param("The   ANSWER\tis\u00a042", "the answer is 42", id="en-case-tabs-nbsp"),
        pytest.param("  Привет, МИР  ", "привет, мир", id="ru-trim-case"),
    ],
)
def test_normalize_makes_equal_texts_equal(a: str, b: str) -> None:
    assert normalize(a) == normalize(b)


def test_normalize_keeps_different_words_apart() -> None:
    assert normalize("ёж") != normalize("уж")


def test_masking_keeps_offsets_and_lines() -> None:
    text = "see https://ex.com/a?b=1 and `x = 2`\n```py\nprint(3)\n```\nend 4"
    masked = mask_code_and_urls(text)
    assert len(masked) == len(text)
    assert masked.count("\n") == text.count("\n")
    assert "1" not in masked and "2" not in masked and "3" not in masked
    assert masked.endswith("end 4")


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("answer", "source"),
    [
        pytest.param("Штат: 1 500 человек.", "штат 1500 сотрудников", id="ru-space-thousands"),
        pytest.param("Штат: 1\u00a0500 человек.", "штат 1500 сотрудников", id="ru-nbsp-thousands"),
        pytest.param("Штат: 1\u202f500\u202f000.", "1500000", id="ru-narrow-nbsp-thousands"),
        pytest.param("Staff: 1\u2009500.", "1500 staff", id="en-thin-space-thousands"),
        pytest.param("It costs 1,500 dollars.", "Price: 1500 USD", id="en-comma-thousands"),
        pytest.param("Population 1,500,000.", "population 1 500 000", id="en-comma-millions"),
        pytest.param("Коэффициент 1,5.", "The factor is 1.5", id="ru-decimal-comma"),
        pytest.param("Средний чек 1,500 тыс. руб.", "средний чек 1,5 тыс. руб.", id="ru-comma-three-digits-is-decimal"),
        pytest.param("Итого 1 500,25 руб.", "total 1500.25", id="ru-space-and-decimal-comma"),
        pytest.param("Total 1,500.25 EUR", "Итого 1.500,25 EUR", id="en-two-separators"),
        pytest.param("Рост 15 %.", "рост составил 15%", id="ru-percent-space"),
        pytest.param("Growth was 15%.", "growth: 15 percent", id="en-percent-word"),
        pytest.param("Доля 20 процентов.", "доля 20%", id="ru-percent-word"),
        pytest.param("Revenue reached 1.5 million.", "revenue 1 500 000", id="en-million"),
        pytest.param("Выручка 1,5 млн руб.", "revenue 1.5 million", id="ru-mln-decimal-comma"),
        pytest.param("Выручка 1 500 000 руб.", "выручка 1,5 млн", id="ru-plain-vs-mln"),
        pytest.param("Около 2 тыс. пользователей.", "2000 users", id="ru-tys"),
        pytest.param("About 2k users.", "около 2 тысяч пользователей", id="en-k"),
        pytest.param("Raised $5M.", "raised 5 million dollars", id="en-capital-m"),
        pytest.param("Выпущено в 2,3 млрд экземпляров.", "2.3 billion copies", id="ru-mlrd"),
        pytest.param("Срок: 2024-03-01.", "срок 01.03.2024", id="iso-vs-dotted-date"),
        pytest.param("Due 01.03.2024.", "due March 1, 2024", id="dotted-vs-english-date"),
        pytest.param("Срок — 1 марта 2024 г.", "deadline 2024-03-01", id="ru-words-date"),
        pytest.param("Deadline: 1st March 2024.", "deadline 2024-03-01", id="en-ordinal-date"),
        pytest.param("Starts on 01/03/2024.", "starts 2024-01-03", id="slash-date-either-order"),
        pytest.param("Встреча 5 мая.", "встреча 2025-05-05 в 10:00", id="ru-day-month-no-year"),
        pytest.param("Opens at 9:00.", "opens 09:00", id="time"),
        pytest.param("Opens at 2:30 pm.", "открывается в 14:30", id="time-pm"),
        pytest.param("The call is at 10am.", "звонок в 10:00", id="time-am-no-minutes"),
        pytest.param("Released on 2024/05/01.", "released May 1, 2024", id="year-first-slash-date"),
        pytest.param("Звоните 8 (800) 555-35-35.", "телефон +7 800 5553535", id="ru-phone-formats"),
        pytest.param("Call 88005553535.", "phone: 8 (800) 555-35-35", id="phone-without-separators"),
        pytest.param("Founded in 1998.", "основана 12.05.1998", id="year-from-source-date"),
        pytest.param("В 2024 году.", "в 2024 г.", id="ru-year"),
        pytest.param("She finished 21st.", "place: 21", id="en-ordinal"),
        pytest.param("Это 3-й вариант.", "вариант 3", id="ru-ordinal"),
        pytest.param("Popular in the 1990s.", "1990", id="en-decade"),
        pytest.param("Популярно в 90-х.", "в 90 годы", id="ru-decade"),
        pytest.param("1. Open the app.\n2. Tap Settings.\n3. Tap Reset.", "Reset in settings", id="list-numbering"),
        pytest.param("Шаги:\n1) открыть\n2) нажать", "инструкция", id="ru-list-numbering-paren"),
        pytest.param("Use GPT-4 or COVID-19 data on H2O.", "", id="names-with-digits"),
        pytest.param("Run `pip install x==2.3.1` then:\n```\nsleep 45\n```", "", id="code-ignored"),
        pytest.param("See https://example.com/doc/2024/17?p=3 for details.", "", id="url-ignored"),
        pytest.param("Temperature: −5 °C.", "it fell by 5 degrees", id="sign-not-compared"),
        pytest.param("Отпуск — двадцать дней, то есть 20.", "двадцать дней отпуска", id="ru-number-word-in-source"),
        pytest.param("Twelve months: 12.", "twelve months", id="en-number-word-in-source"),
        pytest.param("Годы 2020–2024.", "с 2020 по 2024", id="range-is-two-numbers"),
    ],
)
def test_numbers_equal_in_any_form_are_not_invented(answer: str, source: str) -> None:
    assert invented_numbers(answer, ["question?", source]) == []


@pytest.mark.parametrize(
    ("answer", "sources", "invented"),
    [
        pytest.param("Рост составил 25%.", ["рост 15 %"], ["25%"], id="ru-percent"),
        pytest.param("Growth was 25 percent, revenue 1.5 million.", ["revenue 1,500,000"], ["25 percent"],
                     id="en-percent-word"),
        pytest.param("Выручка 1,5 млрд руб.", ["выручка 1,5 млн"], ["1,5 млрд"], id="ru-wrong-scale"),
        pytest.param("It costs 1,500 dollars.", ["цена 1,5 доллара"], ["1,500"], id="en-thousands-vs-ru-decimal"),
        pytest.param("Срок: 2024-03-02.", ["срок 01.03.2024"], ["2024-03-02"], id="wrong-day"),
        pytest.param("Deadline 1 March 2023.", ["deadline 2024-03-01"], ["1 March 2023"], id="wrong-year"),
        pytest.param("Revenue 1.5 million.", ["revenue 1 523 000"], ["1.5 million"], id="rounding-is-not-equal"),
        pytest.param("Отпуск 28 дней, а больничный 14.", ["отпуск 28 дней"], ["14"], id="ru-plain-integer"),
        pytest.param("The warranty is 2 years; see 2 years above.", ["warranty: 3 years"], ["2"],
                     id="en-reported-once"),
        pytest.param("Opens at 10:30.", ["opens 10:00"], ["10:30"], id="time"),
        pytest.param("Opens at 5 PM.", ["opens 17"], ["5 PM"], id="time-pm-is-not-a-number"),
        pytest.param("Call +7 (495) 123-45-68.", ["+7 495 1234567"], ["+7 (495) 123-45-68"], id="phone-one-digit-off"),
        pytest.param("Windows 11 and 3.11", ["3.11"], ["11"], id="number-after-name-counts"),
        pytest.param("The Pro plan costs 4 900 RUB [1].", ["Pro: 5 400 RUB"], ["4 900"],
                     id="citation-marker-is-not-a-figure"),
    ],
)
def test_numbers_missing_from_sources_are_reported_as_written(
    answer: str, sources: list[str], invented: list[str]
) -> None:
    assert invented_numbers(answer, sources) == invented


def test_an_answer_used_as_its_own_source_invents_nothing() -> None:
    records = [json.loads(line) for line in (DATA / "answers_clean.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["n"]: invented_numbers(r["text"], [r["text"]]) for r in records if
            invented_numbers(r["text"], [r["text"]])} == {}
    assert sum(bool(invented_numbers(r["text"], [])) for r in records) > 50  # many of them do have figures


def test_every_kind_of_source_counts() -> None:
    answer = "Вы спрашивали про 7, история говорит 12, документ — 40 %, калькулятор дал 1 234, ожидалось 99."
    sources = ["сколько будет 7?", "раньше было 12", "[1] handbook: 40%", "1234", "99"]
    assert invented_numbers(answer, sources) == []
    assert invented_numbers(answer, sources[:-1]) == ["99"]


# ---------------------------------------------------------------- repetition

OPEN_EN = "Sure! Here is what I found about the warranty. The handbook covers it in section 4. "
OPEN_RU = "Конечно! Вот что я нашёл о гарантии. В справочнике об этом говорится в разделе 4. "
PARAGRAPH_EN = ("The warranty covers manufacturing defects for two years from the date of purchase. It does not "
                "cover accidental damage, water damage or normal wear, and it is void if the device was opened "
                "by anyone other than an authorised service centre.\n\n")
PARAGRAPH_RU = ("Гарантия распространяется на производственные дефекты в течение двух лет с даты покупки. Она не "
                "покрывает случайные повреждения, попадание воды и естественный износ и теряет силу, если "
                "устройство вскрывал кто-то, кроме авторизованного сервисного центра.\n\n")


def _numbered(opening: str, item: str, count: int) -> tuple[str, int]:
    head = opening + "1. " + item + "\n"
    return head + "".join(f"{n}. {item}\n" for n in range(2, count + 2)), len(head)


def _looped(opening: str, unit: str, chars: int = 1500) -> tuple[str, int]:
    text = opening + unit
    start = len(text)
    while len(text) < start + chars:
        text += unit
    return text, start


LOOPS = [
    pytest.param(*_looped("", "the "), id="en-word-from-the-start"),
    pytest.param(*_looped("", "да "), id="ru-word-from-the-start"),
    pytest.param(*_looped(OPEN_EN, "very, "), id="en-word-after-opening"),
    pytest.param(*_looped(OPEN_RU, "очень, "), id="ru-word-after-opening"),
    pytest.param(*_looped(OPEN_EN, "Please check the cable. "), id="en-sentence"),
    pytest.param(*_looped(OPEN_RU, "Проверьте кабель. "), id="ru-sentence"),
    pytest.param(*_looped(OPEN_EN + "\n\n", PARAGRAPH_EN), id="en-paragraph"),
    pytest.param(*_looped(OPEN_RU + "\n\n", PARAGRAPH_RU), id="ru-paragraph"),
    pytest.param(*_numbered("Steps:\n", "Restart the router and wait a minute.", 40), id="en-numbered-list"),
    pytest.param(*_numbered("Шаги:\n", "Перезагрузите роутер и подождите минуту.", 40), id="ru-numbered-list"),
    pytest.param(*_looped("Here:\n\n", "="), id="endless-divider-line"),
]


def _stream(text: str, size: int = 4) -> LoopDetector:
    detector = LoopDetector()
    for start in range(0, len(text), size):
        if detector.feed(text[start:start + size]) is not None:
            break
    return detector


@pytest.mark.parametrize(("text", "start"), LOOPS)
def test_a_streamed_loop_is_cut_within_300_characters_keeping_one_copy(text: str, start: int) -> None:
    detector = _stream(text)
    assert detector.offset is not None and detector.detected_at is not None
    assert 0 <= detector.detected_at - start <= 300
    # What is kept is the opening and one copy (a character or two of the copy may go with the cut).
    assert abs(detector.offset - start) <= 2


@pytest.mark.parametrize(("text", "start"), LOOPS)
def test_a_finished_text_reports_where_its_loop_begins(text: str, start: int) -> None:
    offset = find_loop(text)
    assert offset is not None and abs(offset - start) <= 2


def test_detection_does_not_depend_on_how_the_stream_is_split() -> None:
    text, _ = _looped(OPEN_RU + "\n\n", PARAGRAPH_RU)
    offsets = {_stream(text, size).offset for size in (1, 3, 7, 50)}
    assert offsets == {find_loop(text)}


def test_after_a_loop_every_feed_repeats_its_offset() -> None:
    detector = _stream(_looped("", "no ")[0])
    assert detector.offset is not None
    assert detector.feed("something new") == detector.offset


CLEAN = [
    pytest.param("Here is the code:\n\n```python\n" + "x = 0\n" * 60 + "```\n\nThat's it.", id="en-code-block"),
    pytest.param("Вот код:\n\n```\n" + "print('привет')\n" * 40 + "```", id="ru-code-block"),
    pytest.param("| Day | Open |\n|---|---|\n" + "| Weekday | 09:00-18:00 |\n" * 15, id="en-table-same-rows"),
    pytest.param("| День | Статус |\n|---|---|\n" + "| рабочий | открыто |\n" * 15, id="ru-table-same-rows"),
    pytest.param("Status:\n" + "".join(f"- server{n}: OK\n" for n in range(1, 30)), id="en-list-same-shape"),
    pytest.param("Расписание:\n" + "".join(f"{n}. {d} — выходной\n" for n, d in enumerate(
        ["Понедельник", "Вторник", "Среда", "Четверг", "Пятница", "Суббота", "Воскресенье"], 1)),
        id="ru-list-same-shape"),
    pytest.param("Sing it loud and sing it clear,\nThe summer's here, the summer's here!\n" * 2, id="en-chorus-twice"),
    pytest.param("Зима, зима, зима,\nБелые дома,\n\nПадает снег на крыши,\nПадает снег на сад.\n\n"
                 "Зима, зима, зима,\nБелые дома,\n\nКатятся санки с горки.\n\nЗима, зима, зима,\nБелые дома.",
                 id="ru-poem-refrain"),
    pytest.param("Let it snow! Let it snow! Let it snow!\nThe fire is slowly dying.\nLet it snow! Let it snow! "
                 "Let it snow!", id="en-song-refrain"),
    pytest.param("Ла-ла-ла, ла-ла-ла,\nВесна пришла, весна пришла!\nЛа-ла-ла, ла-ла-ла,\nИ речка лёд свой унесла.",
                 id="ru-song-la-la"),
    pytest.param("Report\n" + "=" * 60 + "\nTotal: 5\n" + "-" * 60 + "\nDone\n" + "=" * 60, id="divider-lines"),
    pytest.param("Повторяйте: я спокоен. Я спокоен. Я спокоен. Дышите медленно.", id="ru-mantra-three-times"),
]


@pytest.mark.parametrize("text", CLEAN)
def test_legitimate_repetition_is_not_a_loop(text: str) -> None:
    assert find_loop(text) is None
    assert _stream(text, 1).offset is None


def test_clean_answers_data_has_no_loop() -> None:
    records = [json.loads(line) for line in (DATA / "answers_clean.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) >= 200 and {r["lang"] for r in records} == {"en", "ru"}
    assert [r["n"] for r in records if find_loop(r["text"]) is not None] == []


def test_a_runaway_code_block_is_cut_eventually() -> None:
    text = "```python\n" + "print('again')\n" * 200
    offset = find_loop(text)
    assert offset is not None and text[:offset].count("print('again')") <= 2


def test_a_long_stream_without_loops_keeps_memory_bounded() -> None:
    import random
    import tracemalloc

    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "дельта", "эпсилон", "zeta", "eta", "тета", "iota", "kappa"]
    pieces = ["".join(rng.choice(words) + rng.choice([" ", ", ", ". ", "\n"]) for _ in range(12))
              for _ in range(2_000)]
    detector = LoopDetector()
    tracemalloc.start()
    for piece in pieces:
        detector.feed(piece)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert detector.offset is None
    assert sum(map(len, pieces)) > 100_000  # 20 times what the detector keeps
    assert peak < 200_000


@pytest.mark.parametrize(
    ("calls", "looping"),
    [
        pytest.param([("search", {"q": "погода"})] * 3, True, id="same-call-three-times"),
        pytest.param([("search", {"q": "weather"})] * 2, False, id="twice-is-fine"),
        pytest.param([("calc", {"a": 1, "b": 2}), ("calc", {"b": 2, "a": 1}), ("calc", {"a": 1, "b": 2})], True,
                     id="argument-order-does-not-matter"),
        pytest.param([("search", {"q": f"page {n}"}) for n in range(5)], False, id="same-tool-new-arguments"),
        pytest.param([("search", {"q": "x"}), ("calc", {"e": "1"}), ("search", {"q": "x"}), ("search", {"q": "x"})],
                     False, id="interrupted"),
        pytest.param([("calc", {"e": "1"}), ("search", {"q": "x"}), ("search", {"q": "x"}), ("search", {"q": "x"})],
                     True, id="loop-after-other-calls"),
    ],
)
def test_repeated_tool_calls(calls: list[tuple[str, dict[str, object]]], looping: bool) -> None:
    assert repeated_tool_calls({"name": name, "args": args, "id": str(i)} for i, (name, args) in enumerate(calls)) \
        is looping


# ---------------------------------------------------------------- language


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        pytest.param("Да", "ru", id="ru-one-word"),
        pytest.param("Спасибо, всё работает!", "ru", id="ru-short"),
        pytest.param("Yes", "en", id="en-one-word"),
        pytest.param("Thanks, it works!", "en", id="en-short"),
        pytest.param("privet, kak dela?", "ru", id="translit-short"),
        pytest.param("spasibo bolshoe", "ru", id="translit-two-words"),
        pytest.param("Zdravstvuyte! Podskazhite, kogda budet gotov moy zakaz?", "ru", id="translit-sentence"),
        pytest.param("Segodnya horoshaya pogoda, poydem gulyat v park?", "ru", id="translit-nonstandard-spelling"),
        pytest.param("Вот пример:\n\n```python\nimport asyncio\n\nasync def main():\n    print('hello world, this is "
                     "English inside code')\n\nasyncio.run(main())\n```\n\nЭтот код выводит приветствие.", "ru",
                     id="ru-code-block-ignored"),
        pytest.param("Here is an example:\n\n```python\n# приветствие на русском языке\nprint('привет, мир, "
                     "как дела у всех')\n```\n\nThis prints a greeting.", "en", id="en-code-block-ignored"),
        pytest.param("Запустите `pip install --upgrade aiogram langchain openai` и перезапустите бота.", "ru",
                     id="ru-inline-code-ignored"),
        pytest.param("Подробности: https://docs.python.org/3/library/asyncio-task.html#creating-tasks", "ru",
                     id="ru-url-ignored"),
        pytest.param("Details: https://ru.wikipedia.org/wiki/Москва_(город) and nothing else", "en",
                     id="en-cyrillic-url-ignored"),
        pytest.param("Фраза «to be or not to be, that is the question» принадлежит Гамлету.", "ru",
                     id="ru-quoted-english"),
        pytest.param("She said «я обязательно вернусь завтра утром» and left.", "en", id="en-quoted-russian"),
        pytest.param("> Это цитата из письма клиента целиком на русском.\n\nThe client is asking about delivery.",
                     "en", id="en-blockquote-ignored"),
        pytest.param("Microsoft Teams или Zoom?", "ru", id="ru-brand-names"),
        pytest.param("Откройте Settings → Privacy и нажмите Clear Data.", "ru", id="ru-english-ui-names"),
        pytest.param("I live in Москва and work at Яндекс.", "en", id="en-russian-names"),
        pytest.param("## Summary\n\n> Результаты хорошие.\n\n## Next steps", "en", id="en-headings-count"),
        pytest.param("| Test | Result |\n|---|---|\n| test_case_1 | passed |\n| test_case_2 | passed |\n"
                     "| test_case_3 | passed |", "en", id="en-table-identifiers-and-repeats"),
        pytest.param("Examples:\n\nInput: x\nOutput: y\n\nInput: z\nOutput: w", "en", id="en-x-is-not-translit"),
    ],
)
def test_language_of_the_writers_own_words(text: str, lang: str) -> None:
    assert detect_language(text) == lang
    other = "en" if lang == "ru" else "ru"
    assert wrong_language(text, other) and not wrong_language(text, lang)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("42", id="digits"),
        pytest.param("```python\nprint('hello world')\n```", id="code-only"),
        pytest.param("https://example.com/привет", id="url-only"),
        pytest.param("OK", id="acronym"),
        pytest.param("", id="empty"),
    ],
)
def test_language_of_texts_without_words_is_unknown_and_never_wrong(text: str) -> None:
    assert detect_language(text) is None
    assert not wrong_language(text, "ru") and not wrong_language(text, "en")


def test_language_labelled_set_accuracy() -> None:
    records = [json.loads(line) for line in (DATA / "language_labelled.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) >= 60
    wrong = [r["text"] for r in records if detect_language(r["text"]) != r["lang"]]
    assert len(wrong) <= len(records) // 20, wrong


# ---------------------------------------------------------------- refusal


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("I could not find that information in the documents you uploaded.", id="en-could-not-find"),
        pytest.param("I don’t know.", id="en-dont-know-typographic-apostrophe"),
        pytest.param("The handbook does not mention parental leave.", id="en-source-does-not-mention"),
        pytest.param("There is no information about this in the provided sources.", id="en-no-information"),
        pytest.param("This is not specified in the documents. Please ask HR.", id="en-not-specified-in-documents"),
        pytest.param("Sorry, I don't have up-to-date information on exchange rates.", id="en-dont-have-information"),
        pytest.param("I can't tell from the context you gave me.", id="en-cant-tell"),
        pytest.param("Не знаю.", id="ru-ne-znayu"),
        pytest.param("К сожалению, в загруженных документах нет информации об этом.", id="ru-net-informatsii"),
        pytest.param("В справочнике об этом ничего не сказано.", id="ru-ne-skazano-v-spravochnike"),
        pytest.param("Я не нашёл упоминаний об этом.", id="ru-ne-nashyol-yo"),
        pytest.param("Я не нашел упоминаний об этом.", id="ru-ne-nashel-e"),
        pytest.param("Мне не удалось найти эти данные.", id="ru-ne-udalos-nayti"),
        pytest.param("Сведений об этом нет.", id="ru-svedeniy-net"),
        pytest.param("ЗАТРУДНЯЮСЬ ОТВЕТИТЬ", id="ru-upper-case"),
        pytest.param("Точных данных о выручке за 2023 год в источниках нет.", id="ru-dannykh-net"),
    ],
)
def test_refusals_for_lack_of_information(text: str) -> None:
    assert is_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Employees get 25 days of paid vacation per year.", id="en-answer"),
        pytest.param("If you don't know your password, reset it on the login page.", id="en-conditional-advice"),
        pytest.param("The timeout is not specified in the config, so it defaults to 60 seconds.",
                     id="en-not-specified-not-a-source"),
        pytest.param("I'm sorry, but I can't help with that request.", id="en-policy-refusal"),
        pytest.param("```\nerror: no information available\n```\nThe build failed because a file is missing.",
                     id="en-phrase-inside-code"),
        pytest.param("Отпуск — 28 календарных дней.", id="ru-answer"),
        pytest.param("Если я не знаю ответа, я так и говорю, а вот ответ: 28 дней.", id="ru-conditional"),
        pytest.param("Параметр timeout не указан, поэтому запрос может зависнуть.", id="ru-not-specified-parameter"),
        pytest.param("Компилятор не нашёл файл, проверьте путь.", id="ru-compiler-did-not-find"),
    ],
)
def test_answers_and_advice_are_not_refusals(text: str) -> None:
    assert not is_refusal(text)


def test_a_real_model_loop_is_cut_as_it_streams(tmp_path: Path) -> None:
    """A random tiny Llama decoding greedily falls into a loop: the detector cuts it as tokens arrive."""
    from llama_cpp import Llama

    from tests.tiny_gguf import build_tiny_gguf

    llm = Llama(str(build_tiny_gguf(tmp_path / "tiny.gguf")), n_ctx=1024, n_threads=1, verbose=False)
    try:
        detector, text = LoopDetector(), ""
        stream = llm.create_completion("The answer is", max_tokens=600, temperature=0, stream=True,
                                       logit_bias={llm.token_eos(): -100.0})
        for chunk in stream:
            text += chunk["choices"][0]["text"]
            if detector.feed(chunk["choices"][0]["text"]) is not None:
                break
    finally:
        llm.close()
    assert detector.offset is not None and detector.detected_at == len(text)
    offset = detector.offset
    # What was cut only repeats the end of what was kept, character for character.
    assert len(text) - offset >= 20
    assert any(all(text[i] == text[i - p] for i in range(offset, len(text))) for p in range(1, offset + 1))
    assert find_loop(text) is not None
