"""The HTML loader: the visible text of a page, blocks as paragraphs, table cells joined by `|`."""

from __future__ import annotations

import re

from knowledge.loaders.text import clean_text

_BLOCK_TAGS = (
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section", "article",
    "header", "footer", "nav", "aside", "main", "pre", "blockquote", "dd", "dt", "dl", "hr", "figure", "figcaption",
    "caption", "form", "fieldset", "address", "details", "summary",
)  # fmt: skip


def html_to_text(html: str) -> str:
    """Visible text of an HTML page: scripts and styles dropped, blocks as paragraphs, cells joined by `|`."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "svg", "head", "iframe", "object", "canvas"]):
        tag.decompose()
    for tag in soup.find_all(["td", "th"]):
        tag.insert_after(" | ")
    for tag in soup.find_all(_BLOCK_TAGS):
        if tag.name in ("h1", "h2", "h3", "h4", "h5", "h6"):
            tag.insert_before("\n\n" + "#" * int(tag.name[1]) + " ")
        else:
            tag.insert_before("\n\n" if tag.name not in ("br", "tr", "li") else "\n")
        tag.insert_after("\n\n" if tag.name not in ("br", "tr", "li") else "\n")
    text = soup.get_text("")
    text = re.sub(r"[ \t]*\|[ \t]*\n", "\n", text)  # the separator after a row's last cell
    text = clean_text(text)
    if title and not text.startswith(title):
        text = f"{title}\n\n{text}"
    return text
