"""Loaders, type detection, chunking and the BM25 tokenizer: no chroma, no embedding model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from knowledge import samples
from knowledge.chunking import chunk_text
from knowledge.errors import (
    CorruptFileError,
    EmptyDocumentError,
    EncryptedFileError,
    FileTooLargeError,
    ParseLimitError,
    ParseTimeoutError,
    UnsafeFileNameError,
    UnsupportedFileError,
    too_much_text,
)
from knowledge.lexical import BM25Index, tokenize
from knowledge.loaders import check_filename, decode_text, detect_kind, extract, sanitize_filename
from knowledge.sandbox import ParseLimits, collect, parse_in_subprocess

RUSSIAN = ("Сотрудник имеет право на ежегодный отпуск продолжительностью 28 календарных дней. "
           "Заявление подаётся заранее.")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1251", "koi8_r", "cp866", "utf-16"])
def test_russian_text_decodes_in_common_encodings(encoding: str) -> None:
    text, _ = decode_text(RUSSIAN.encode(encoding))
    assert text.lstrip("\ufeff") == RUSSIAN


def test_type_comes_from_content_not_name() -> None:
    assert detect_kind(samples.make_pdf(["x"])) == "pdf"
    assert detect_kind(samples.make_docx(["x"])) == "docx"
    assert detect_kind(b"<!DOCTYPE html><html><body><p>x</p></body></html>") == "html"
    assert detect_kind(b"# Title\n\nSome text with a [link](http://x.y).\n\n- one\n- two\n") == "markdown"
    assert detect_kind("Просто текст.".encode("cp1251")) == "text"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(100), "PNG", id="png"),
        pytest.param(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "legacy Office", id="doc"),
        pytest.param(b"\x7fELF\x02\x01\x01" + bytes(100), "executable", id="elf"),
        pytest.param(samples.make_binary(), "binary", id="random-bytes"),
    ],
)
def test_binary_content_is_unsupported_with_a_clear_message(data: bytes, words: str) -> None:
    with pytest.raises(UnsupportedFileError, match=words):
        extract(data)


def test_other_zip_formats_are_named() -> None:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(UnsupportedFileError, match="Excel"):
        extract(out.getvalue())


def test_pdf_text_is_kept_per_page() -> None:
    result = extract(samples.make_pdf(["Alpha page.", "Beta page with ZX-4417.", "Gamma page."]))
    assert result.kind == "pdf" and result.pages == 3
    assert result.sections == [(1, "Alpha page."), (2, "Beta page with ZX-4417."), (3, "Gamma page.")]


def test_pdf_with_only_an_owner_password_is_readable() -> None:
    result = extract(samples.make_pdf(["Printing restricted, reading allowed."], owner_password="owner"))
    assert result.sections == [(1, "Printing restricted, reading allowed.")]


@pytest.mark.parametrize("algorithm", ["AES-128", "RC4-128"])
def test_password_protected_pdf_is_refused(algorithm: str) -> None:
    with pytest.raises(EncryptedFileError, match="password"):
        extract(samples.make_pdf(["Secret."], user_password="pw", algorithm=algorithm))


def test_corrupt_pdf_is_refused() -> None:
    with pytest.raises(CorruptFileError):
        extract(samples.make_corrupt_pdf())


def test_pdf_without_text_layer_is_empty() -> None:
    with pytest.raises(EmptyDocumentError, match="scan"):
        extract(samples.make_pdf([""]))


def test_docx_keeps_headers_tables_and_order() -> None:
    data = samples.make_docx(
        ["Before the table."],
        table=[["Code", "Price"], ["ZX-4417", "150 EUR"]],
        header="ACME confidential",
        footer="Footer line",
        after_table=["After the table."],
        heading="Price list",
    )
    ((_, text),) = extract(data).sections
    assert text.index("ACME confidential") < text.index("# Price list") < text.index("Before the table.")
    assert text.index("Before the table.") < text.index("ZX-4417 | 150 EUR") < text.index("After the table.")
    assert text.index("After the table.") < text.index("Footer line")


def test_zip_bomb_docx_is_refused_before_inflating() -> None:
    with pytest.raises(FileTooLargeError, match="zip bomb"):
        extract(samples.make_zip_bomb_docx(64))


def test_docx_with_thousands_of_parts_is_refused() -> None:
    with pytest.raises(FileTooLargeError, match="too many parts"):
        extract(samples.make_many_entries_docx(2500))


def test_damaged_docx_is_corrupt() -> None:
    data = samples.make_docx(["Hello."])
    with pytest.raises(CorruptFileError):
        extract(data[: len(data) // 2])


def test_html_drops_scripts_and_styles() -> None:
    html = (
        b"<html><head><title>Guide</title><style>.secretstyle{color:red}</style></head><body>"
        b"<script>var secretToken = 42;</script><h2>Returns</h2><p>Goods can be <b>returned</b> within 14 days.</p>"
        b"<table><tr><td>Store</td><td>Moscow</td></tr></table></body></html>"
    )
    ((_, text),) = extract(html).sections
    assert "returned within 14 days" in text and "Store | Moscow" in text and "## Returns" in text
    assert "secretToken" not in text and "secretstyle" not in text


def test_html_in_cp1251_with_meta_charset() -> None:
    html = ('<html><head><meta charset="windows-1251"></head>'
            "<body><p>Возврат товара в течение 14 дней.</p></body></html>")
    ((_, text),) = extract(html.encode("cp1251")).sections
    assert "Возврат товара в течение 14 дней." in text


@pytest.mark.parametrize("data", [b"", b"   \n\t \n"], ids=["empty", "whitespace"])
def test_empty_file_is_refused(data: bytes) -> None:
    with pytest.raises(EmptyDocumentError):
        extract(data)


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "..\\..\\boot.ini", "/abs/path.txt", "..", "bad\x00name.txt", "a\nb.txt"]
)
def test_path_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeFileNameError):
        check_filename(name)


def test_display_names_are_sanitized() -> None:
    assert (
        sanitize_filename("\u202eexe.txt") == "exe.txt"
    )  # a right-to-left override hides the real extension
    assert sanitize_filename(".hidden") == "hidden"
    assert sanitize_filename("") == "document"
    assert len(sanitize_filename("x" * 500 + ".pdf")) == 120 and sanitize_filename(
        "x" * 500 + ".pdf"
    ).endswith(".pdf")
    check_filename("Отчёт за 2024 год (итог).pdf")  # ordinary names pass


def test_sandbox_returns_the_same_as_in_process() -> None:
    data = samples.make_pdf(["One.", "Two."])
    assert parse_in_subprocess(data).sections == extract(data).sections


def test_sandbox_reports_loader_errors_by_type() -> None:
    with pytest.raises(EncryptedFileError):
        parse_in_subprocess(samples.make_pdf(["x"], user_password="pw"))
    with pytest.raises(FileTooLargeError):
        parse_in_subprocess(samples.make_zip_bomb_docx(32))


def test_sandbox_kills_a_parse_past_its_time_limit() -> None:
    # Interpreter start-up alone takes longer than this limit: the parent must give up and kill the child.
    with pytest.raises(ParseTimeoutError):
        parse_in_subprocess(samples.make_pdf(["x"]), ParseLimits(timeout_s=0.001))


def test_sandbox_memory_limit_is_applied() -> None:
    # 10 MB of text needs well over 64 MiB to decode, clean and report: the child fails, the caller carries on.
    with pytest.raises(ParseLimitError):
        parse_in_subprocess(b"word " * 2_000_000, ParseLimits(timeout_s=30, memory_mb=64))


SECRETS = {
    "TELEGRAM_BOT_TOKEN": "123456:AAsecret-bot-token",
    "OPENAI_API_KEY": "sk-secret-openai-key",
    "DATABASE_URL": "postgresql+asyncpg://bot:hunter2-db-password@db/adaptbot",
    "SEARCH_API_KEY": "tvly-secret-search-key",
    "WEBHOOK_SECRET": "secret-webhook-token",
    "AWS_SECRET_ACCESS_KEY": "secret-aws-key",
    "HTTPS_PROXY": "http://user:proxy-password@proxy:3128",
    "http_proxy": "http://user:proxy-password@proxy:3128",
    "ALL_PROXY": "socks5://proxy:1080",
}


def test_sandbox_child_sees_no_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child that parses untrusted files gets none of the bot's secrets or proxies in its environment."""
    dump = tmp_path / "child-env.json"
    spy = tmp_path / "spy"
    spy.mkdir()  # a sitecustomize the real child imports at start-up, recording what it was given
    (spy / "sitecustomize.py").write_text(
        f"import json, os\nopen({str(dump)!r}, 'w').write(json.dumps(dict(os.environ)))\n"
    )
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(spy), os.environ.get("PYTHONPATH")) if p))
    assert parse_in_subprocess(b"Plain text.").sections == [(None, "Plain text.")]
    seen = json.loads(dump.read_text())
    assert not set(SECRETS) & set(seen), set(SECRETS) & set(seen)
    values = "\n".join(seen.values())
    assert not [v for v in SECRETS.values() if v in values]
    assert not [name for name in seen if "proxy" in name.lower() or "secret" in name.lower()]


def test_sandbox_refuses_more_text_than_the_cap() -> None:
    with pytest.raises(FileTooLargeError, match="too large: its text runs past 10,000 characters"):
        parse_in_subprocess(b"word " * 100_000, ParseLimits(max_chars=10_000))
    assert parse_in_subprocess(b"word " * 1_000, ParseLimits(max_chars=10_000)).chars == 4_999


def test_sandbox_stops_reading_a_child_at_the_output_cap() -> None:
    """A child that writes without end (a parser gone wrong) is killed once it passes the cap, not read whole."""
    endless = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"
    proc = subprocess.Popen([sys.executable, "-c", endless], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    with pytest.raises(FileTooLargeError, match="too large"):
        collect(proc, b"input", 60, 2**20, too_much_text(1000))
    assert proc.returncode is not None  # killed and reaped


# --- chunking and tokenizing --------------------------------------------------------------------


def test_chunks_respect_size_overlap_and_pages() -> None:
    sentences = [f"Sentence number {i} talks about topic {i % 7}." for i in range(60)]
    text = " ".join(sentences[:30]) + "\n\n" + " ".join(sentences[30:])
    chunks = chunk_text([(4, text), (5, "A short last page.")], target_chars=300, overlap_chars=80)
    assert all(len(c.text) <= 300 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[-1].page == 5 and chunks[-1].text == "A short last page."
    assert {c.page for c in chunks[:-1]} == {4}
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)  # nothing lost
    # consecutive chunks of a page share text (the overlap)
    assert any(chunks[i].text.split(". ")[-1] in chunks[i + 1].text for i in range(len(chunks) - 2))


def test_chunking_cuts_text_without_spaces() -> None:
    chunks = chunk_text([(None, "x" * 2500)], target_chars=1000, overlap_chars=100)
    assert [len(c.text) for c in chunks] == [1000, 1000, 500]


def test_tokenizer_keeps_codes_and_handles_russian() -> None:
    tokens = tokenize("Код ZX-4417 от 2024-05, ОТПУСКА сотрудников; Ёлка")
    assert {"zx-4417", "zx", "4417", "2024-05", "2024", "05"} <= set(tokens)
    assert tokenize("отпуск") == tokenize("ОТПУСКА") == tokenize("отпусков")  # stemmed, lower-cased
    assert tokenize("ёлка") == tokenize("елка")


def test_bm25_ranks_exact_code_first_and_forgets_removed_chunks() -> None:
    index = BM25Index()
    index.add(
        [
            ("a", "Pump ZX-4417 handles 16 bar."),
            ("b", "Pump ZX-4471 handles 10 bar."),
            ("c", "Отпуск 28 дней."),
        ]
    )
    assert index.search("ZX-4417", 3)[0][0] == "a"
    assert index.search("отпуска", 3)[0][0] == "c"
    index.remove(["a"])
    assert [cid for cid, _ in index.search("ZX-4417", 3)] == ["b"]  # shares only the "zx" part now
    assert len(index) == 2
