"""The dataset card of an export (Hugging Face style: YAML front matter, then Markdown): what the data is, where
it came from, its counts per step, the recipe, the columns, how it was made, and its licence and use."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visent.clean.stage import STEPS
from visent.core.display import ordered, readable
from visent.core.labels import CLASSES
from visent.core.store import Dataset
from visent.core.version import __version__
from visent.export.columns import TYPES, crawl_record, released_columns
from visent.export.splits import DEFAULT_SPLIT, SPLITS

__all__ = ["card_path", "dataset_card"]


def card_path(out: str | os.PathLike[str]) -> Path:
    """Where the card of an export goes: ``out/mvsa.parquet`` → ``out/mvsa.parquet.card.md``, so that exports of
    one dataset in both formats keep a card each."""
    out = Path(out)
    return out.with_name(f"{out.name}.card.md")


def dataset_card(dataset: Dataset | str | os.PathLike[str], out: str | os.PathLike[str], counts: dict[str, Any], *,
                 with_text: bool = False, split: Sequence[float] = DEFAULT_SPLIT) -> str:
    """The dataset card (Hugging Face style: YAML front matter, then Markdown) of the export ``out`` of
    ``dataset`` with ``counts`` as returned by :func:`export_dataset`."""
    ds = Dataset.of(dataset)
    out = Path(out)
    ingest, teach, clean = (ds.stage_info(stage) or {} for stage in ("ingest", "teach", "clean"))
    lines = _card_header(out, counts)
    params = {**(ingest.get("params") or {}), "source": _source_name(ingest.get("params") or {})}
    lines += _table(["parameter", "value"], [[k, f"`{readable(v) if isinstance(v, (dict, list)) else v}`"]
                                             for k, v in sorted(params.items()) if v is not None])
    crawl = crawl_record(ds)
    if crawl is not None:
        lines += _card_crawl(crawl, ingest, counts)
    lines += _card_counts(ingest, teach, clean, counts)
    lines += _card_recipe(teach.get("params") or {}, clean.get("params") or {}, split)
    lines += _table(["column", "type", "description"],
                    [[f"`{c}`", str(TYPES[c]), d] for c, d in released_columns(with_text, crawl is not None)])
    lines += _card_provenance(ds, out, (ingest, teach, clean), with_text=with_text, split=split)
    return "\n".join(lines)


def _card_header(out: Path, counts: dict[str, Any]) -> list[str]:
    """The front matter, the title, what the dataset is, and the Sources heading."""
    name = out.stem
    return [
        "---",
        "license: other",
        "license_name: authors-and-platform-terms",
        f"pretty_name: {name}",
        "task_categories:",
        "- image-classification",
        "task_ids:",
        "- multi-class-image-classification",
        "tags:",
        "- sentiment-analysis",
        "- visual-sentiment-analysis",
        "- weak-supervision",
        "- t4sa",
        "- visent",
        "size_categories:",
        f"- {_size_category(counts['rows'])}",
        "configs:",
        "- config_name: default",
        f"  data_files: {out.name}",
        "---",
        "",
        f"# {name}",
        "",
        "Images from a social-media crawl with **weak** sentiment labels (negative / neutral / positive). A textual",
        "teacher read each post's text; its labels were cleaned by per-class confidence thresholds, broken and",
        "duplicate images were removed, and what is left is fit to train an image-sentiment classifier without any",
        "human label (the T4SA method). Made with visent.",
        "",
        f"Every post of the crawl is a row ({counts['rows']:,}), kept ({counts['kept']:,}) or dropped "
        f"({counts['dropped']:,}) with the reason. Train on the kept rows: `clean_status == \"kept\"`, "
        "label in `label`, split in `split`.",
        "",
        "## Sources",
        "",
    ]


_SERVICES = {"bluesky": "Bluesky"}


_STREAMS = {"jetstream": "Jetstream", "firehose": "the relay firehose"}


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def _card_crawl(crawl: dict[str, Any], ingest: dict[str, Any], counts: dict[str, Any]) -> list[str]:
    """Where and when the crawl was made, how many posts and authors it gives, the deletions honoured, and the
    terms; hosts and dates only, never a local folder."""
    service = _SERVICES.get(str(crawl.get("service")), str(crawl.get("service") or "?"))
    stream = _STREAMS.get(str(crawl.get("source")), str(crawl.get("source") or "?"))
    hosts = ", ".join(f"`{h}`" for h in crawl.get("endpoints") or [])
    at_ingest = int(crawl.get("deleted_by_author") or 0)
    since = counts.get("deleted_by_author")
    ingested = str(ingest.get("finished_at") or "?")
    if isinstance(since, int):
        deletions = (f"posts their authors deleted are left out: {_rows(at_ingest + since)} in all, "
                     f"{at_ingest:,} when the crawl was ingested and {since:,} deleted since then (the crawl's "
                     "tombstones were read again at export)")
    else:
        why = since.removeprefix("not checked: ") if isinstance(since, str) else "the export did not look"
        deletions = (f"posts their authors deleted are left out: {_rows(at_ingest)} when the crawl was ingested "
                     f"({ingested}); deletions after that date could not be checked ({why}): they are not honoured "
                     "in this export")
    rows, posts, authors = (readable(v) if v is not None else "?" for v in
                            (counts.get("rows"), counts.get("posts", crawl.get("posts")),
                             counts.get("authors", crawl.get("authors"))))
    return [
        "## Crawl",
        "",
        f"- crawled from {service} through {stream}" + (f" ({hosts})" if hosts else "")
        + f", events from {crawl.get('first_event') or '?'} to {crawl.get('last_event') or '?'}",
        f"- {rows} rows: the images of {posts} posts by {authors} authors (`post_id` is the post's `at://` URI, "
        "which names its author's DID, then `#k` for its k-th image)",
        f"- deletions honoured: {deletions}",
        "- terms: these are public posts. The release keeps each post's id (`post_id`) and its image's URL "
        "(`image_url`), so that anyone can fetch (rehydrate) the posts and images that are still public; posts "
        "deleted by their authors are left out, and whoever shares the data again should leave out what has been "
        "deleted since.",
        "",
    ]


def _card_counts(ingest: dict[str, Any], teach: dict[str, Any], clean: dict[str, Any],
                 counts: dict[str, Any]) -> list[str]:
    """Counts per stage and step, and the kept rows per class and split."""
    lines: list[str] = []
    lines += ["## Counts per step", "", "Ingest (reading the crawl and storing its images):", ""]
    lines += _table(["count", "posts"], _ordered(ingest.get("counts"), ("posts", "ok", "error", "images")))
    lines += ["Teach (the teacher's labels of the text; skipped posts have no usable text):", ""]
    lines += _table(["count", "posts"], _ordered(teach.get("counts"), ("posts", "ok", "skipped", *CLASSES)))
    lines += ["Clean (posts dropped by each step, in order; a post counts at the first step that drops it):", ""]
    lines += _table(["step", "posts"], _ordered(clean.get("counts"), ("posts", *STEPS, "kept")))
    lines += ["Kept rows per class and split:", ""]
    per = counts.get("split_per_class") or {}
    rows = [[c] + [f"{per.get(s, {}).get(c, 0):,}" for s in SPLITS] + [f"{counts['kept_per_class'].get(c, 0):,}"]
            for c in CLASSES]
    rows.append(["**all**"] + [f"**{counts['split'].get(s, 0):,}**" for s in SPLITS] + [f"**{counts['kept']:,}**"])
    lines += _table(["class", *SPLITS, "kept"], rows)
    return lines


def _card_recipe(teach_params: dict[str, Any], clean_params: dict[str, Any], split: Sequence[float]) -> list[str]:
    """The teacher, the cleaning thresholds and the split rule, then the Columns heading."""
    thresholds = clean_params.get("thresholds") or {}
    teacher = teach_params.get("teacher", "?")
    return [
        "## Teacher and thresholds",
        "",
        f"- teacher: `{teacher}`" + (f" (`{teach_params['teacher_id']}`)" if teach_params.get("teacher_id") else ""),
        "- a post is kept only when the teacher's confidence in its label reaches the class's threshold: "
        + ", ".join(f"{c} {thresholds[c]:g}" for c in CLASSES if c in thresholds),
        f"- near-duplicate images: perceptual-hash (pHash) Hamming distance ≤ {clean_params.get('near_dup_distance')}; "
        "of a group of duplicates the post with the most confident teacher label is kept",
        f"- images whose shorter side is under {clean_params.get('min_side')} px are dropped",
        f"- classes balanced by downsampling: {'yes' if clean_params.get('balance') else 'no'}; "
        f"neutral posts dropped: {'yes' if clean_params.get('drop_neutral') else 'no'}; "
        f"seed {clean_params.get('seed')}",
        "",
        "## Splits",
        "",
        f"Kept rows are split {', '.join(f'{s} {v:g}' for s, v in zip(SPLITS, split))} by their image: "
        "the first 13 hex "
        "digits of `image_sha256`, read as a fraction of 16^13, fall in the train, val or test range. The split of an",
        "image does not depend on the other posts, so it stays the same when posts are added, and identical images",
        "(same bytes) always share a split. Near duplicates are dropped by cleaning, which keeps one image per group.",
        "",
        "## Columns",
        "",
    ]


def _card_provenance(ds: Dataset, out: Path, stages: tuple[dict[str, Any], ...], *, with_text: bool,
                     split: Sequence[float]) -> list[str]:
    """How the export was made (version, dates, commands) and the licence and use notes."""
    ingest, teach, clean = stages
    return [
        "## How it was made",
        "",
        f"- visent {__version__}, exported on {time.strftime('%Y-%m-%d')}",
        f"- stages finished: ingest {ingest.get('finished_at', '?')}, teach {teach.get('finished_at', '?')}, "
        f"clean {clean.get('finished_at', '?')}",
        "- commands:",
        "",
        "```sh",
        *_commands(ds, out, with_text=with_text, split=split),
        "```",
        "",
        "## Licence and use",
        "",
        "- The images" + (" and texts" if with_text else "") + " belong to their authors and are subject to the "
        "terms of the platform they were posted on; this card's `license: other` says that no single licence "
        "covers them. Check those "
        "terms before sharing or training on them.",
        "- The labels are **weak**: a textual teacher made them from the posts' text, no person looked at the images. "
        "They describe the text's sentiment, which is often not the image's.",
        "- Where the platform requires it (Twitter/X, for example), share post ids (`post_id`) and hashes only and let "
        "users fetch the posts themselves; drop `image_file`" + (" and `text`" if with_text else "")
        + " from what you publish.",
        "- " + ("This export includes the post texts (`--with-text`): mind the text's own licence limits."
                if with_text else "The post texts are not included (export with `--with-text` to add them)."),
        "",
    ]


def _commands(ds: Dataset, out: Path, *, with_text: bool, split: Sequence[float]) -> list[str]:
    ingest = (ds.stage_info("ingest") or {}).get("params") or {}
    teach = (ds.stage_info("teach") or {}).get("params") or {}
    clean = (ds.stage_info("clean") or {}).get("params") or {}
    root = shlex.quote(ds.root.resolve().name)  # names only: the card does not tell where the user keeps files
    command = f"visent ingest {shlex.quote(_source_name(ingest))} --out {root}"
    for key, flag, default in (("limit", "--limit", None), ("timeout", "--timeout", 10.0), ("retries", "--retries", 3),
                               ("max_bytes", "--max-bytes", 20_000_000)):
        if key in ingest and ingest[key] != default:
            command += f" {flag} {ingest[key]}"
    if ingest.get("ids"):
        command += "  # only some post ids (Python API: ingest(..., ids=...))"
    lines = [command, f"visent teach {root} --teacher {shlex.quote(str(teach.get('teacher', 'default')))}"]
    thresholds = clean.get("thresholds") or {}
    command = f"visent clean {root}"
    for name, flag in (("negative", "--neg-threshold"), ("neutral", "--neu-threshold"),
                       ("positive", "--pos-threshold")):
        if name in thresholds:
            command += f" {flag} {thresholds[name]:g}"
    command += f" --near-dup-distance {clean.get('near_dup_distance', 4)} --min-side {clean.get('min_side', 32)}"
    command += " --balance" if clean.get("balance") else ""
    command += " --drop-neutral" if clean.get("drop_neutral") else ""
    command += f" --seed {clean.get('seed', 0)}"
    lines.append(command)
    command = f"visent export {root} --out {shlex.quote(out.name)}"
    if tuple(split) != DEFAULT_SPLIT:
        command += " --split " + ",".join(f"{v:g}" for v in split)
    lines.append(command + (" --with-text" if with_text else ""))
    return lines


def _source_name(params: dict[str, Any]) -> str:
    """The name of the crawl the dataset was ingested from (``posts.jsonl``, ``mvsa-single``), not its local path:
    ``params`` are the ingest stage's."""
    source = params.get("source")
    return Path(str(source)).name if source else "SOURCE"


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    for bound, name in bounds:
        if n < bound:
            return name
    return "n>1B"


def _ordered(counts: dict[str, Any] | None, first: Sequence[str]) -> list[list[Any]]:
    """Rows of a stage's counts, the known keys in their stage order, then the others."""
    return [[key, readable(value)] for key, value in ordered(counts, first).items()]


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines + [""]
