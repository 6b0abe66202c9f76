"""The deterministic checks (agents/checks): equivalences and legitimate repetitions, in Russian and English."""

from __future__ import annotations

import pytest

from agents.checks.numbers import invented_numbers
from agents.checks.text import mask_code_and_urls, normalize

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
        pytest.param("Windows 11 and 3.11", ["3.11"], ["11"], id="number-after-name-counts"),
    ],
)
def test_numbers_missing_from_sources_are_reported_as_written(
    answer: str, sources: list[str], invented: list[str]
) -> None:
    assert invented_numbers(answer, sources) == invented


def test_every_kind_of_source_counts() -> None:
    answer = "Вы спрашивали про 7, история говорит 12, документ — 40 %, калькулятор дал 1 234, ожидалось 99."
    sources = ["сколько будет 7?", "раньше было 12", "[1] handbook: 40%", "1234", "99"]
    assert invented_numbers(answer, sources) == []
    assert invented_numbers(answer, sources[:-1]) == ["99"]
