"""Builders of sample and hostile files for tests and benchmarks (PDF, DOCX, zip bombs...), built in memory."""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Sequence


def _pdf_string(text: str) -> bytes:
    raw = text.encode("latin-1", errors="replace")  # the standard Helvetica font covers Latin-1 only
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def make_pdf(
    pages: Sequence[str],
    user_password: str | None = None,
    owner_password: str | None = None,
    algorithm: str = "AES-128",
) -> bytes:
    """A PDF with one page per string (lines split on newlines); optionally encrypted."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        ops = [b"BT /F1 11 Tf 14 TL 56 740 Td"]
        ops += [_pdf_string(line) + b" Tj T*" for line in text.split("\n")]
        ops.append(b"ET")
        stream = DecodedStreamObject()
        stream.set_data(b"\n".join(ops))
        page[NameObject("/Contents")] = writer._add_object(stream)
    if user_password is not None or owner_password is not None:
        writer.encrypt(user_password or "", owner_password, algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(
    paragraphs: Sequence[str],
    table: Sequence[Sequence[str]] | None = None,
    header: str | None = None,
    footer: str | None = None,
    after_table: Sequence[str] = (),
    heading: str | None = None,
) -> bytes:
    """A DOCX: optional heading, paragraphs, an optional table, more paragraphs, and a header/footer."""
    import docx

    document = docx.Document()
    if heading:
        document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=max(len(r) for r in table))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    for text in after_table:
        document.add_paragraph(text)
    section = document.sections[0]
    if header:
        section.header.paragraphs[0].text = header
    if footer:
        section.footer.paragraphs[0].text = footer
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_zip_bomb_docx(unpacked_mb: int = 64) -> bytes:
    """A real DOCX with an extra part of `unpacked_mb` MiB of zeros: a few hundred KB that inflate ~1000x."""
    base = make_docx(["An innocent looking document."])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        block = bytes(1024 * 1024)
        with dst.open("word/media/image1.bin", "w", force_zip64=True) as part:
            for _ in range(unpacked_mb):
                part.write(block)
    return out.getvalue()


def make_many_entries_docx(entries: int = 3000) -> bytes:
    """A DOCX padded with thousands of tiny parts (a zip bomb by entry count)."""
    base = make_docx(["Many parts."])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        for i in range(entries):
            dst.writestr(f"word/padding/part{i}.xml", b"<a/>")
    return out.getvalue()


def make_corrupt_pdf(seed: int = 0) -> bytes:
    """A PDF header followed by garbage."""
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + random.Random(seed).randbytes(4096)


def make_binary(size: int = 4096, seed: int = 0) -> bytes:
    """Random bytes (what a binary renamed to .txt looks like)."""
    return random.Random(seed).randbytes(size)
