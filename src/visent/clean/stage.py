"""The clean stage: decide, per post, whether its weak label and image are fit to train on.

Rules run in order and the first one that drops a post is its ``clean_step`` (a name of :data:`STEPS`), with why
in ``clean_reason``:

1. ingest error            4. near-duplicate image (pHash)   7. neutral dropped (optional)
2. image checks            5. no teacher label               8. balanced out (optional)
3. exact duplicate image   6. low teacher confidence

Decoding and hashing images is the slow part, so its results are kept per image (by SHA-256, with the recipe that
computed them, :data:`visent.clean.checks.METHOD`) in ``work/clean-images.parquet``, which outlives the stage's runs
(written atomically; ``work/clean-images/`` holds the batches of a pass under way, so an interrupted pass resumes):
running again with other thresholds decodes nothing, and after the crawl grew only the new images are decoded. The
steps over all posts (exact and near duplicates across old and new images, thresholds, balance) are cheap and run
over every post each time, so the table is the one a run from scratch gives. The stage's manifest entry says how
many images the run checked and how many results it took from earlier runs: ``run`` = ``{"images_checked": N,
"images_reused": M}``.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

import visent.clean.checks as checks
from visent.clean.hamming import HammingIndex, popcount64
from visent.clean.options import CleanOptions
from visent.core import schema
from visent.core.errors import UsageError
from visent.core.labels import CLASSES, SERRA_THRESHOLDS, normalise_label
from visent.core.options import resolve
from visent.core.progress import progress
from visent.core.store import Checkpoint, Dataset, atomic_write_table, writes

DEFAULT_THRESHOLDS = SERRA_THRESHOLDS  # for a teacher that declared none (the teach stage records them)

STEPS: tuple[str, ...] = (
    "ingest_error", "bad_image", "exact_duplicate", "near_duplicate",
    "no_teacher_label", "low_confidence", "neutral_dropped", "balanced_out",
)
WORKERS = 2
_CACHE_FILE = "clean-images.parquet"
_CACHE_PARTS = "clean-images"
_CACHE_BATCH = 1000
_CACHE_SCHEMA = pa.schema([
    ("image_sha256", pa.string()),
    ("method", pa.string()),
    ("ok", pa.bool_()),
    ("reason", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("format", pa.string()),
    ("phash", pa.uint64()),
])
_POST_COLUMNS = ("post_id", "image_sha256", "image_file", "ingest_status", "ingest_reason",
                 "teach_status", "teach_reason", "teach_label", "teach_confidence", *schema.PROB_COLUMNS)


def default_thresholds(dataset: Dataset | str | os.PathLike[str]) -> dict[str, float]:
    """The per-class thresholds the teacher of ``dataset`` declared (the teach stage records them), else Serra
    et al.'s :data:`DEFAULT_THRESHOLDS`."""
    ds = Dataset.of(dataset)
    teach = ds.stage_info("teach") or {}
    if teach.get("status") == "done" and "thresholds" not in teach:
        warnings.warn(f"{ds.root}: the teach stage recorded no confidence thresholds of its teacher (an older visent "
                      f"taught it): Serra et al.'s are used; run `visent teach {ds.root}` again to record the "
                      "teacher's own (it relabels nothing)", UserWarning, stacklevel=3)
    return dict(teach.get("thresholds") or DEFAULT_THRESHOLDS)


def _resolve_thresholds(thresholds: dict[str, float] | None, ds: Dataset) -> dict[str, float]:
    merged = default_thresholds(ds)
    for name, value in (thresholds or {}).items():
        label = normalise_label(name)
        if label is None:
            raise UsageError(f"unknown class {name!r} in thresholds; use {', '.join(CLASSES)}")
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"threshold for {label} must be between 0 and 1, got {value}")
        merged[label] = value
    return merged


@writes("clean")
def clean(dataset: Dataset | str | os.PathLike[str], options: CleanOptions | None = None,
          **kwargs: Any) -> dict[str, int]:
    """Write the ``clean`` table (one row per post: kept or dropped, with the first reason) and
    return how many posts each rule dropped, in rule order, between ``posts`` and ``kept``.

    ``options`` (a :class:`~visent.clean.CleanOptions`, or its fields as keyword arguments: ``balance=True``) say
    how. ``thresholds`` override, per class, the defaults of the teacher that labelled the dataset
    (:func:`default_thresholds`: the teacher's measured ones, else Serra et al.'s). Of a group of duplicate images the
    post kept is the one with a teacher label and the highest confidence (then the earliest post).
    ``balance`` downsamples every class that still has posts to the size of the smallest such
    class, choosing with ``seed``. Running again with the same options is a no-op.
    """
    options = resolve(CleanOptions, options, kwargs, what="clean")
    near_dup_distance, min_side, seed = options.near_dup_distance, options.min_side, options.seed
    ds = Dataset.of(dataset)
    ds.require_stage("ingest")
    ds.require_stage("teach")
    if not 0 <= near_dup_distance <= 63:
        raise UsageError(f"near_dup_distance must be between 0 and 63, got {near_dup_distance}")
    if min_side < 0:
        raise UsageError(f"min_side must be >= 0, got {min_side}")
    params = options.params(_resolve_thresholds(options.thresholds, ds))
    if ds.stage_done("clean", params) and ds.has_table("clean") and _current_table(ds):
        return _ordered_counts(ds.stage_info("clean")["counts"])
    ds.begin_stage("clean", params)

    posts = _ordered_posts(ds)
    funnel = _Funnel(posts)
    funnel.drop_ingest_errors()
    results, reused = _image_results(ds, funnel.images_to_check())
    funnel.check_images(results, min_side)
    labels, confidence = _teacher_labels(posts)
    # representatives of duplicate groups: a usable teacher label first, then the highest confidence,
    # then the earliest post
    rank = np.lexsort((np.arange(funnel.n), -np.nan_to_num(confidence, nan=-1.0)))
    position = np.empty(funnel.n, dtype=np.int64)
    position[rank] = np.arange(funnel.n)
    funnel.drop_exact_duplicates(position)
    alive = np.array(funnel.alive(), dtype=np.int64)
    if alive.size > 1:
        _near_duplicates(alive, np.array([funnel.phash[i] for i in alive], dtype=np.uint64), near_dup_distance,
                         position, funnel.col["post_id"], funnel.drop, funnel.duplicate_of)
    funnel.drop_unsure(labels, confidence, params["thresholds"])
    if options.drop_neutral:
        for i in funnel.alive():
            if labels[i] == "neutral":
                funnel.drop(i, "neutral_dropped", "neutral dropped")
    if options.balance:
        funnel.balance(labels, seed)
    ds.write_table("clean", funnel.table(labels))
    counts = {**funnel.counts, "kept": len(funnel.alive())}
    ds.finish_stage("clean", params, counts, run={"images_checked": len(results) - reused, "images_reused": reused})
    return counts


class _Funnel:
    """The clean stage's decisions, post by post: kept, or dropped by the first step that applies (with the
    step, the reason and, for duplicates, the post kept instead). Steps run in :data:`STEPS` order."""

    def __init__(self, posts: pa.Table):
        self.col = {name: posts.column(name).to_pylist() for name in posts.column_names}
        self.n = n = posts.num_rows
        self.reason: list[str | None] = [None] * n  # None while a post is still kept
        self.step: list[str | None] = [None] * n
        self.width: list[int | None] = [None] * n
        self.height: list[int | None] = [None] * n
        self.phash: list[int | None] = [None] * n
        self.duplicate_of: list[str | None] = [None] * n
        self.counts = {"posts": n, **{step: 0 for step in STEPS}}

    def drop(self, i: int, step: str, reason: str) -> None:
        self.reason[i] = reason
        self.step[i] = step
        self.counts[step] += 1

    def alive(self) -> list[int]:
        return [i for i in range(self.n) if self.reason[i] is None]

    def drop_ingest_errors(self) -> None:
        col = self.col
        for i in range(self.n):
            if col["ingest_status"][i] != "ok":
                why = col["ingest_reason"][i] or col["ingest_status"][i] or "no status"
                self.drop(i, "ingest_error", f"ingest: {why}")

    def images_to_check(self) -> dict[str, str]:
        """SHA-256 → image file of the posts still kept that have an image."""
        col = self.col
        return {col["image_sha256"][i]: col["image_file"][i] for i in self.alive()
                if col["image_sha256"][i] and col["image_file"][i]}

    def check_images(self, results: dict[str, tuple[checks.ImageCheck, int | None]], min_side: int) -> None:
        """Record each image's size and pHash; drop posts without an image and unusable or tiny images."""
        col = self.col
        for i in range(self.n):
            sha = col["image_sha256"][i]
            if self.reason[i] is None and not (sha and col["image_file"][i]):
                self.drop(i, "bad_image", "no image")
                continue
            if sha not in results:
                continue
            check, value = results[sha]
            self.width[i], self.height[i], self.phash[i] = check.width, check.height, value
            if self.reason[i] is None:
                check = checks.size_check(check, min_side)
                if not check.ok:
                    self.drop(i, "bad_image", check.reason)

    def drop_exact_duplicates(self, position: np.ndarray) -> None:
        """Of the posts with the same image bytes, keep the one first in ``position``."""
        groups: dict[str, list[int]] = {}
        for i in self.alive():
            groups.setdefault(self.col["image_sha256"][i], []).append(i)
        for members in groups.values():
            if len(members) > 1:
                keep = min(members, key=lambda i: position[i])
                for i in members:
                    if i != keep:
                        self.drop(i, "exact_duplicate", f"exact duplicate of {self.col['post_id'][keep]}")
                        self.duplicate_of[i] = self.col["post_id"][keep]

    def drop_unsure(self, labels: list[str | None], confidence: np.ndarray, thresholds: dict[str, float]) -> None:
        """Drop posts without a teacher label, then those below their class's confidence threshold."""
        col = self.col
        for i in self.alive():
            if col["teach_status"][i] != "ok" or labels[i] is None:
                why = col["teach_reason"][i] or ("not in the teach table" if col["teach_status"][i] is None
                                                  else "no usable teacher output")
                self.drop(i, "no_teacher_label", f"no teacher label ({why})")
                continue
            threshold = thresholds[labels[i]]
            if np.float32(confidence[i]) < np.float32(threshold):
                self.drop(i, "low_confidence",
                          f"low teacher confidence ({labels[i]} {_compare(confidence[i], threshold)})")

    def balance(self, labels: list[str | None], seed: int) -> None:
        """Downsample every class still kept to the size of the smallest, choosing with ``seed``."""
        by_class: dict[str, list[int]] = {}
        for i in self.alive():
            by_class.setdefault(labels[i], []).append(i)  # type: ignore[arg-type]
        if not by_class:
            return
        smallest = min(len(members) for members in by_class.values())
        rng = np.random.default_rng(seed)
        for label in sorted(by_class):
            members = by_class[label]
            keep = set(rng.choice(len(members), size=smallest, replace=False).tolist())
            for k, i in enumerate(members):
                if k not in keep:
                    self.drop(i, "balanced_out", "balanced out")

    def table(self, labels: list[str | None]) -> pa.Table:
        return pa.table({
            "post_id": self.col["post_id"],
            "clean_status": ["kept" if r is None else "dropped" for r in self.reason],
            "clean_step": self.step,
            "clean_reason": [r or "" for r in self.reason],
            "label": labels,
            "width": self.width,
            "height": self.height,
            "phash": [None if v is None else checks.phash_hex(v) for v in self.phash],
            "duplicate_of": self.duplicate_of,
        }, schema=schema.CLEAN)


def summarise(dataset: Dataset | str | os.PathLike[str]) -> dict[str, int]:
    """Number of kept posts per class (every class listed, in CLASSES order)."""
    ds = Dataset.of(dataset)
    ds.require_stage("clean")
    table = ds.read_table("clean", columns=["clean_status", "label"])
    kept = table.filter(pc.equal(table.column("clean_status"), "kept")).column("label").to_pylist()
    return {label: kept.count(label) for label in CLASSES}


# --------------------------------------------------------------------------- helpers
def _current_table(ds: Dataset) -> bool:
    """Whether the clean table has today's columns (one written by an older visent lacks ``clean_step``: the stage
    runs again)."""
    try:
        return set(pq.read_schema(ds.table_path("clean")).names) >= set(schema.CLEAN.names)
    except (OSError, pa.ArrowException):
        return False


def _ordered_counts(counts: dict[str, Any]) -> dict[str, int]:
    keys = ("posts", *STEPS, "kept")
    return {key: int(counts.get(key, 0)) for key in keys}


def _ordered_posts(ds: Dataset) -> pa.Table:
    """Posts joined with teach, one row per post, in the order of the posts table."""
    order = ds.read_table("posts", columns=["post_id"]).column("post_id")
    joined = ds.posts()
    for name in _POST_COLUMNS:
        if name not in joined.column_names:
            joined = joined.append_column(name, pa.nulls(joined.num_rows, pa.string()))
    joined = joined.select(list(_POST_COLUMNS))
    joined = joined.append_column("_pos", pc.index_in(joined.column("post_id"), value_set=order))
    joined = joined.sort_by([("_pos", "ascending")])
    pos = joined.column("_pos").to_numpy(zero_copy_only=False)
    first = np.r_[True, pos[1:] != pos[:-1]] if len(pos) else np.zeros(0, dtype=bool)
    return joined.filter(pa.array(first)).drop_columns(["_pos"])


def _teacher_labels(posts: pa.Table) -> tuple[list[str | None], np.ndarray]:
    """The teacher's argmax label and its confidence per post (None and NaN where there is none)."""
    n = posts.num_rows
    ok = np.asarray(pc.fill_null(pc.equal(posts.column("teach_status"), "ok"), False))
    probs = np.column_stack([_floats(posts.column(name)) for name in schema.PROB_COLUMNS]) if n else np.zeros((0, 3))
    given = _floats(posts.column("teach_confidence"))
    with_probs = ok & np.isfinite(probs).all(axis=1)
    best = np.argmax(np.where(np.isfinite(probs), probs, -np.inf), axis=1) if n else np.zeros(0, dtype=np.int64)
    best_prob = probs[np.arange(n), best] if n else np.zeros(0)
    confidence = np.where(with_probs, np.where(np.isfinite(given), given, best_prob), np.nan)
    labels: list[str | None] = [CLASSES[b] if w else None for b, w in zip(best.tolist(), with_probs.tolist())]
    # a teacher that gave a label and a confidence but no probabilities
    teach_label = posts.column("teach_label")
    for i in np.flatnonzero(ok & ~with_probs & np.isfinite(given)).tolist():
        labels[i] = normalise_label(teach_label[i].as_py())
        if labels[i] is not None:
            confidence[i] = given[i]
    return labels, confidence


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _compare(value: float, threshold: float) -> str:
    """``"0.72 < 0.90"`` with as many decimals as it takes for the two numbers to differ."""
    for digits in (2, 3, 4, 6):
        left, right = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if left != right:
            break
    return f"{left} < {right}"


def _near_duplicates(alive: np.ndarray, hashes: np.ndarray, distance: int, position: np.ndarray,
                     post_ids: list[str], drop, duplicate_of: list[str | None]) -> None:
    unique, inverse = np.unique(hashes, return_inverse=True)
    i, j, _ = HammingIndex(unique).pair_arrays(distance)
    graph = coo_matrix((np.ones(i.size, dtype=np.int8), (i, j)), shape=(unique.size, unique.size))
    _, component = connected_components(graph, directed=False)
    component = component[inverse.ravel()]
    # group rows by component; the representative is the best-ranked member
    order = np.lexsort((position[alive], component))
    comp_sorted = component[order]
    starts = np.flatnonzero(np.r_[True, comp_sorted[1:] != comp_sorted[:-1]])
    ends = np.r_[starts[1:], order.size]
    for start, end in zip(starts, ends):
        if end - start < 2:
            continue
        keep = alive[order[start]]
        members = alive[order[start + 1:end]]
        dists = popcount64(hashes[order[start + 1:end]] ^ hashes[order[start]])
        for member, d in zip(members.tolist(), dists.tolist()):
            drop(member, "near_duplicate", f"near duplicate of {post_ids[keep]} (distance {d})")
            duplicate_of[member] = post_ids[keep]


def _image_results(ds: Dataset, wanted: dict[str, str]
                   ) -> tuple[dict[str, tuple[checks.ImageCheck, int | None]], int]:
    """Check and hash every wanted image (sha256 -> file), reusing and extending the per-image cache; returns the
    results and how many of them came from an earlier run's cache (not from this run, interrupted or not)."""
    cache_path = ds.root / "work" / _CACHE_FILE
    parts = Checkpoint(ds.root / "work" / _CACHE_PARTS, key="image_sha256")
    results, earlier = _read_cache(cache_path, parts)
    reused = sum(sha in earlier for sha in wanted)
    todo = [(sha, rel) for sha, rel in wanted.items() if sha not in results]
    if todo:
        with progress("clean: checking images", len(todo)) as advance, \
                ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for start in range(0, len(todo), _CACHE_BATCH):
                batch = todo[start:start + _CACHE_BATCH]
                found = []
                for result in pool.map(lambda item: checks.analyse_image(ds.image_path(item[1])), batch):
                    found.append(result)
                    advance(1)
                parts.write(_cache_rows([sha for sha, _ in batch], found), _CACHE_SCHEMA)
                results.update(zip((sha for sha, _ in batch), found))
    if todo or parts.done_keys():
        atomic_write_table(cache_path, _cache_rows(list(results), list(results.values())))
        parts.clear()
    return {sha: results[sha] for sha in wanted}, reused


def _cache_rows(shas: list[str], found: list[tuple[checks.ImageCheck, int | None]]) -> pa.Table:
    return pa.table({
        "image_sha256": shas,
        "method": [checks.METHOD] * len(shas),
        "ok": [check.ok for check, _ in found],
        "reason": [check.reason for check, _ in found],
        "width": [check.width for check, _ in found],
        "height": [check.height for check, _ in found],
        "format": [check.format for check, _ in found],
        "phash": [value for _, value in found],
    }, schema=_CACHE_SCHEMA)


def _read_cache(cache_path: Path, parts: Checkpoint
                ) -> tuple[dict[str, tuple[checks.ImageCheck, int | None]], set[str]]:
    """The cached results (those of the cache file, then those of a pass under way), and the SHA-256s of the cache
    file's (what earlier runs checked)."""
    tables = [parts.read(_CACHE_SCHEMA)]
    if cache_path.exists():
        try:
            tables.insert(0, pq.read_table(cache_path).cast(_CACHE_SCHEMA))
        except (OSError, pa.ArrowException):
            pass  # a damaged cache is only lost work: the images are checked again
    results: dict[str, tuple[checks.ImageCheck, int | None]] = {}
    earlier: set[str] = set()
    for k, table in enumerate(tables):
        table = table.filter(pc.equal(table.column("method"), checks.METHOD))
        rows = zip(*(table.column(name).to_pylist() for name in _CACHE_SCHEMA.names))
        for sha, _, ok, reason, width, height, fmt, value in rows:
            results[sha] = (checks.ImageCheck(ok, reason, width, height, fmt), value)
            if k == 0 and len(tables) == 2:
                earlier.add(sha)
    return results, earlier
