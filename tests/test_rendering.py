"""Any model output becomes Telegram messages that are non-empty, within 4096 UTF-16 units, with valid entities."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.rendering import render, split_plain
from tests.fakes.telegram_server import utf16_len

ENTITY_TYPES = {"bold", "italic", "underline", "strikethrough", "spoiler", "code", "pre", "text_link", "blockquote",
                "expandable_blockquote", "url", "custom_emoji", "mention", "hashtag", "email"}

markdown_bits = st.sampled_from(["*", "**", "_", "__", "`", "```", "~~", "||", "<", ">", "&", "[", "]", "(", ")",
                                 "#", "- ", "1. ", "> ", "\n", "\n\n", " ", "|", "\\", "$", "<b>", "</i>", "&amp;",
                                 "😀", "𝔘", "ё", "Ж", "http://x.y/z", "[a](http://e.com)", "\t"])
model_output = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(markdown_bits, st.text(max_size=12)), max_size=120).map("".join),
    st.builds(lambda unit, n: unit * n, st.sampled_from(["word ", "**b** ", "😀", "`c` ", "line\n", "x"]),
              st.integers(1, 2500)),
)


def assert_valid(chunks: list) -> None:
    for chunk in chunks:
        size = utf16_len(chunk.text)
        assert chunk.text.strip(), "empty message"
        assert size <= 4096
        for e in chunk.entities:
            assert e["type"] in ENTITY_TYPES
            assert e["length"] > 0 and e["offset"] >= 0 and e["offset"] + e["length"] <= size


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_output)
def test_any_output_renders_to_valid_messages(text: str) -> None:
    chunks = render(text)
    assert_valid(chunks)
    if text.strip() and any(ch.isalnum() for ch in text):
        assert chunks, "visible text was lost"


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=20000))
def test_plain_split_keeps_every_character(text: str) -> None:
    parts = split_plain(text)
    assert all(utf16_len(p) <= 4096 and p.strip() for p in parts)
    assert "".join("".join(parts).split()) == "".join(text.split())  # only whitespace may go


@pytest.mark.parametrize(
    "markdown",
    [
        pytest.param("a < b && c > d", id="html-specials"),
        pytest.param("*unbalanced _open `tick", id="unbalanced"),
        pytest.param("<script>alert(1)</script>", id="raw-html"),
        pytest.param("```python\nprint('<b>')\n```", id="code-block"),
        pytest.param("😀" * 3000, id="astral-split"),
    ],
)
def test_hostile_markdown_keeps_its_text(markdown: str) -> None:
    chunks = render(markdown)
    assert_valid(chunks)
    shown = "".join(c.text for c in chunks)
    for word in ("a < b", "c > d", "alert(1)", "print('<b>')", "unbalanced"):
        if word in markdown:
            assert word in shown
    if markdown.startswith("😀"):
        assert shown.count("😀") == 3000 and len(chunks) == 2
