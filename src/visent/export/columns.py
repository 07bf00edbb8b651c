"""The released table's columns, their descriptions (the card's column table) and their types."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from visent.clean.stage import STEPS
from visent.core import schema
from visent.core.store import Dataset

__all__ = ["COLUMNS", "CRAWL_COLUMN", "TYPES", "crawl_record", "released_columns"]

# name, description (the card's column table); "text" only with with_text
COLUMNS: tuple[tuple[str, str], ...] = (
    ("post_id", "Id of the post in its source (`<id>_<k>` for the k-th extra image of a post). Unique."),
    ("source", "Where the row came from in the crawl (file and line, or file name)."),
    ("text", "The post's text (only in exports made with `--with-text`)."),
    ("image_file", "Path of the image inside the visent dataset directory (`images/ab/<sha256>.<ext>`)."),
    ("image_sha256", "SHA-256 of the image file's bytes."),
    ("phash", "64-bit perceptual hash of the image, 16 hex digits (empty when the image could not be decoded)."),
    ("width", "Image width in pixels."),
    ("height", "Image height in pixels."),
    ("p_negative", "Teacher probability of negative sentiment, from the post's text."),
    ("p_neutral", "Teacher probability of neutral sentiment, from the post's text."),
    ("p_positive", "Teacher probability of positive sentiment, from the post's text."),
    ("teacher", "Name of the textual teacher that labelled the text."),
    ("teach_label", "The teacher's most probable class (empty when the teacher skipped the post)."),
    ("teach_confidence", "The teacher's probability of `teach_label`."),
    ("label", "The training label of a kept row (negative / neutral / positive); empty for dropped rows."),
    ("clean_status", "`kept` or `dropped`."),
    ("clean_step", "The cleaning step that dropped the row (" + ", ".join(f"`{step}`" for step in STEPS)
     + "); empty when kept."),
    ("clean_reason", "Why the row was dropped: what the first cleaning step that dropped it found (empty when kept)."),
    ("duplicate_of", "For exact and near duplicates: the post kept in place of this one."),
    ("split", "`train`, `val` or `test` for kept rows, from the image's SHA-256; empty for dropped rows."),
)


# the column a dataset ingested from a crawl (``visent crawl``) adds after ``image_sha256``
CRAWL_COLUMN = ("image_url", "The image's address on the platform's CDN, as the crawl found it: with `post_id`, what "
                "lets anyone fetch the post and its image again while they are public.")


TYPES = {**{f.name: f.type for f in schema.POSTS}, **{f.name: f.type for f in schema.TEACH},
          **{f.name: f.type for f in schema.CLEAN}, "split": pa.string(), "image_url": pa.string()}


def released_columns(with_text: bool, crawl: bool) -> list[tuple[str, str]]:
    """The released columns and their descriptions."""
    columns = [(name, text) for name, text in COLUMNS if with_text or name != "text"]
    if crawl:
        at = [name for name, _ in columns].index("image_sha256") + 1
        columns.insert(at, CRAWL_COLUMN)
    return columns


def crawl_record(ds: Dataset) -> dict[str, Any] | None:
    """What the ingest recorded of the crawl the dataset was read from (``visent crawl``), or None."""
    record = (ds.stage_info("ingest") or {}).get("crawl")
    return record if isinstance(record, dict) else None
