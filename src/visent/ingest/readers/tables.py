"""The ``csv`` reader: a CSV or TSV file of posts, one row per post under a header line (its fields:
:data:`~visent.ingest.readers.records.RECORD_FIELDS`); detected by the file's suffix."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from pathlib import Path

from visent.core.encoding import ESCAPE, SAMPLE_BYTES, TextDecoder, is_utf8, single_byte
from visent.ingest.readers.records import CSV_SUFFIXES, RawPost, _file_lines, _post_from_record, _read_bytes, _rel
from visent.ingest.readers.registry import register_reader


def is_table(path: Path) -> bool:
    """A .csv or .tsv file."""
    return path.is_file() and path.suffix.lower() in CSV_SUFFIXES


def _csv_dialect(path: Path) -> tuple[str, str, TextDecoder]:
    """(encoding, delimiter, decoder) of a CSV/TSV file, from its first bytes.

    A file that starts in UTF-8 is read as UTF-8, its other lines (if any) by a decoder learned on them. A file
    that does not is a legacy one: its decoder learns the encoding on those first bytes; the file is read as
    UTF-8 and its fields in that encoding when it is a single-byte one, so lines that are UTF-8 stay right.
    """
    with open(path, "rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    if sample.startswith(codecs.BOM_UTF8) or is_utf8(sample, final=False):
        encoding, decoder = "utf-8-sig", TextDecoder.learn(_file_lines(path))
    else:
        decoder = TextDecoder.learn([sample])
        legacy = decoder.legacy().encoding
        encoding = "utf-8" if single_byte(legacy) else legacy
    if path.suffix.lower() == ".tsv":
        return encoding, "\t", decoder
    header = sample.split(b"\n", 1)[0].decode(encoding, errors="replace")
    return encoding, max(",\t;|", key=header.count), decoder


@register_reader("csv", "CSV/TSV of posts: id, text, image (path or URL), optional labels, lang, created_at",
                 detect=is_table, order=10)
def read_csv(source: Path, *, root: Path | None = None) -> Iterator[RawPost]:
    """Rows of a CSV/TSV file with a header line; ``root`` is set when reading inside a folder."""
    source = Path(source)
    rel = _rel(source, root)
    prefix = f"{rel}:" if root is not None else ""
    try:
        encoding, delimiter, decoder = _csv_dialect(source)
        handle = open(source, encoding=encoding, errors=ESCAPE, newline="")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        yield RawPost(post_id=rel, source=rel, error=f"cannot read {rel} ({exc.strerror or exc})")
        return
    with handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header: list[str] | None = None
        row = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                row += 1
                yield RawPost(post_id=f"{prefix}{row}", source=f"{rel}:{reader.line_num}",
                              error=f"malformed row at {rel}:{reader.line_num} ({exc})")
                continue
            if not any(f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip() for f in fields]  # matched case-insensitively, named as found
                continue
            row += 1
            where = f"{rel}:{reader.line_num}"
            if len(fields) > len(header):
                yield RawPost(post_id=f"{prefix}{row}", source=where,
                              error=f"malformed row at {where} ({len(fields)} fields, header has {len(header)})")
                continue
            for post in _post_from_record(dict(zip(header, fields)), where, f"{prefix}{row}", source.parent):
                yield _read_bytes(post, decoder, legacy=not encoding.startswith("utf-8"))
