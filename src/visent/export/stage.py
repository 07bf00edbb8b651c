"""``visent export``: every post of a cleaned dataset, one row each, with its card beside it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from visent.core.errors import UsageError
from visent.core.labels import CLASSES
from visent.core.store import Dataset, DatasetError, atomic_open, atomic_write_table, atomic_write_text
from visent.crawl.shards import CrawlError, is_crawl, post_uri, tombstoned
from visent.export.card import card_path, dataset_card
from visent.export.columns import TYPES, crawl_record, released_columns
from visent.export.splits import DEFAULT_SPLIT, SPLITS, parse_split, split_of
from visent.ingest.crawl import author

__all__ = ["FORMATS", "export_dataset", "released_table"]

FORMATS: tuple[str, ...] = (".parquet", ".csv")


def _format(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{out}: cannot tell the format from '{out.suffix or '(no suffix)'}'; "
                         f"name the file .parquet or .csv")
    return suffix


def export_dataset(dataset: Dataset | str | os.PathLike[str], out: str | os.PathLike[str], *, with_text: bool = False,
                   split: Sequence[float] | str = DEFAULT_SPLIT) -> dict[str, Any]:
    """Write every post of a cleaned dataset to ``out`` (.parquet or .csv), one row each, and the dataset card
    beside it (:func:`card_path`). Both are written atomically. Returns the counts: rows, kept, dropped, kept
    rows per split and per class, and the paths written."""
    out = Path(out)
    fmt = _format(out)
    split = parse_split(split)
    ds = Dataset.of(dataset)
    for stage in ("ingest", "teach", "clean"):
        ds.require_stage(stage)
    table = released_table(ds, with_text=with_text, split=split)
    crawl = crawl_record(ds) is not None
    if crawl:
        table, deleted = _without_deleted(ds, table)
    if fmt == ".parquet":
        atomic_write_table(out, table)
    else:
        import pyarrow.csv as pcsv

        with atomic_open(out, "wb") as handle:
            pcsv.write_csv(table, handle)
    counts = _counts(table)
    if crawl:
        ids = table.column("post_id").to_pylist()
        counts["posts"] = len({post_uri(i) for i in ids if i.startswith("at://")})
        counts["authors"] = len({a for a in map(author, ids) if a})
        counts["deleted_by_author"] = deleted
    counts["out"] = str(out)
    counts["card"] = str(card_path(out))
    atomic_write_text(card_path(out), dataset_card(ds, out, counts, with_text=with_text, split=split))
    return counts


def _without_deleted(ds: Dataset, table: pa.Table) -> tuple[pa.Table, int | str]:
    """``table`` less the posts that the crawl the dataset was ingested from holds tombstones of now (deleted by their
    authors after the ingest), and how many rows that left out; or ``table`` and why the deletions could not be
    checked (the crawl folder is gone)."""
    source = ((ds.stage_info("ingest") or {}).get("params") or {}).get("source")
    if not source or not is_crawl(source):
        return table, "not checked: the crawl folder was not found"
    try:
        deleted = tombstoned(source)
    except (CrawlError, OSError) as exc:
        return table, f"not checked: the crawl's tombstones could not be read ({type(exc).__name__})"
    gone = [post_uri(i) in deleted for i in table.column("post_id").to_pylist()]
    if not any(gone):
        return table, 0
    return table.filter(pa.array([not g for g in gone], type=pa.bool_())), sum(gone)


def released_table(ds: Dataset, *, with_text: bool = False, split: Sequence[float] = DEFAULT_SPLIT) -> pa.Table:
    """The released table of a cleaned dataset, in the order of its posts, one row per post (a dataset ingested
    from a crawl adds ``image_url``; the posts deleted since are left out by :func:`export_dataset`)."""
    posts = ds.read_table("posts")
    ids = posts.column("post_id")
    if pc.count_distinct(ids).as_py() != posts.num_rows:
        raise DatasetError(f"{ds.root}: the posts table repeats post ids; ingest the source again")
    parts: dict[str, pa.ChunkedArray | pa.Array] = {}
    for name in ("teach", "clean"):
        other = ds.read_table(name)
        if name == "clean" and "clean_step" not in other.column_names:
            raise DatasetError(f"{ds.root}: the clean table was made by an older visent (no clean_step column); "
                               f"run `visent clean {ds.root}` again, then export")
        at = pc.index_in(ids, value_set=other.column("post_id"))  # a post missing from a stage gets nulls
        for column in other.column_names:
            if column != "post_id":
                parts[column] = other.column(column).take(at)
    for column in posts.column_names:
        parts.setdefault(column, posts.column(column))
    status = parts["clean_status"].to_pylist()
    kept = [s == "kept" for s in status]
    parts["label"] = pa.array([label if k else None for label, k in zip(parts["label"].to_pylist(), kept)],
                              type=TYPES["label"])
    parts["split"] = pa.array([split_of(sha, split) if k else ""
                               for sha, k in zip(posts.column("image_sha256").to_pylist(), kept)], type=pa.string())
    parts["image_url"] = posts.column("image_ref")
    names = [name for name, _ in released_columns(with_text, crawl_record(ds) is not None)]
    return pa.table({name: parts[name].cast(TYPES[name]) for name in names})


def _counts(table: pa.Table) -> dict[str, Any]:
    status = table.column("clean_status").to_pylist()
    splits = table.column("split").to_pylist()
    labels = table.column("label").to_pylist()
    kept = [i for i, s in enumerate(status) if s == "kept"]
    return {
        "rows": table.num_rows,
        "kept": len(kept),
        "dropped": table.num_rows - len(kept),
        "split": {name: sum(splits[i] == name for i in kept) for name in SPLITS},
        "kept_per_class": {name: sum(labels[i] == name for i in kept) for name in CLASSES},
        "split_per_class": {name: {c: sum(splits[i] == name and labels[i] == c for i in kept) for c in CLASSES}
                            for name in SPLITS},
    }
