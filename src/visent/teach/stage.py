"""The ``teach`` stage: teacher probabilities for every post of a dataset.

A teacher gives each text the same probabilities whatever else it is asked about, so a post taught before keeps its
row: when the posts changed (a crawl that grew, a text edited), the stage teaches only the posts whose id, text or
language code is new, and takes the other rows from the last teach table by the same teacher (same name and
fingerprint). ``work/teach-inputs.parquet`` says what that table was taught from (a digest of each post's text and
language code) and which posts it was written for; the rows taken go first into the stage's checkpoint, marked as
taken, so that an interrupted run resumes with them. The table is the one a run from scratch gives, provided the
teacher scores a text alike whatever texts share its batch: VADER does, and so does the shipped default teacher on
each runtime (its ``onnx-int8`` members quantise activations per run, so they run a text at a time; 2,000 MVSA
texts taught in batches of 32 and of 256, and 40 taught alone and among 200 others, differ by at most 3e-16 in
probability). The stage's manifest entry says what the run did: ``run`` = ``{"taught": N, "reused": M}``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from visent.core import schema
from visent.core.display import ordered
from visent.core.errors import UsageError
from visent.core.labels import CLASSES
from visent.core.options import resolve
from visent.core.progress import progress
from visent.core.store import Checkpoint, Dataset, atomic_write_table, writes
from visent.engine import get_engine
from visent.teach.base import Teacher
from visent.teach.options import TeachOptions
from visent.teach.teachers import is_teacher_dir, load_teacher
from visent.teach.text import preprocess_tweet

STAGE = "teach"
COUNTS = ("posts", "ok", "skipped", "not_read", *CLASSES)  # the order of the counts
INPUTS = "teach-inputs.parquet"  # in work/: what the teach table was taught from
_INPUTS_SCHEMA = pa.schema([("post_id", pa.string()), ("input", pa.string())])
_TAKEN = b"visent_teach_taken"  # schema metadata of a checkpoint part of rows taken from the last teach table


def _posts_fingerprint(ids: Sequence[str], texts: Sequence[str], langs: Sequence[str | None]) -> str:
    """Digest of the post ids, texts and language codes (they route a trained teacher), so a
    re-ingested dataset never resumes stale rows. Posts without a code digest as before codes counted."""
    digest = hashlib.sha256()
    for post_id, text, lang in zip(ids, texts, langs):
        digest.update(f"{post_id}\x1f{text}\x1e".encode("utf-8", "surrogatepass"))
        if lang:
            digest.update(f"\x1d{lang}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _inputs(texts: Sequence[str], langs: Sequence[str | None]) -> list[str]:
    """A digest per post of what its teacher row depends on: its text and language code."""
    return [hashlib.sha256(f"{text}\x1e{lang or ''}\x1d{lang is None}".encode("utf-8", "surrogatepass"))
            .hexdigest()[:32] for text, lang in zip(texts, langs)]


def _row(post_id: str, teacher: str, probs: np.ndarray | None, reason: str) -> dict[str, Any]:
    if probs is None:
        return {"post_id": post_id, "teacher": teacher, "teach_status": "skipped", "teach_reason": reason}
    best = int(np.argmax(probs))
    return {
        "post_id": post_id, "teacher": teacher,
        **{column: float(p) for column, p in zip(schema.PROB_COLUMNS, probs)},
        "teach_label": CLASSES[best], "teach_confidence": float(probs[best]),
        "teach_status": "ok", "teach_reason": "",
    }


def _predict(model: Teacher, texts: list[str], langs: list[str | None] | None = None) -> np.ndarray:
    if langs is not None and model.accepts_languages:
        probs = np.asarray(model.predict_proba(texts, languages=langs), dtype=np.float64)  # type: ignore[call-arg]
    else:
        probs = np.asarray(model.predict_proba(texts), dtype=np.float64)
    if probs.shape != (len(texts), len(CLASSES)):
        raise ValueError(f"teacher {model.name!r} returned shape {probs.shape} for {len(texts)} texts, "
                         f"expected ({len(texts)}, {len(CLASSES)})")
    return probs


def _label_batch(model: Teacher, ids: list[str], texts: list[str],
                 langs: list[str | None] | None = None) -> list[dict[str, Any]]:
    """Teacher rows for one batch. A text the teacher fails on is skipped with the error as reason;
    a batch where every text fails raises, since that is a broken teacher rather than bad input."""
    reasons: dict[int, str] = {}
    live = []
    for i, text in enumerate(texts):
        if preprocess_tweet(text):
            live.append(i)
        else:
            reasons[i] = "no text"
    probs: dict[int, np.ndarray] = {}
    try:
        live_langs = None if langs is None else [langs[i] for i in live]
        probs = dict(zip(live, _predict(model, [texts[i] for i in live], live_langs)))
    except Exception as batch_error:  # find the texts that break the teacher, keep the rest
        for i in live:
            try:
                probs[i] = _predict(model, [texts[i]], None if langs is None else [langs[i]])[0]
            except Exception as exc:  # noqa: BLE001 - reported per post
                reasons[i] = f"teacher failed: {type(exc).__name__}: {exc}"
        if live and not probs:
            raise batch_error
    for i, p in list(probs.items()):
        if not (np.all(np.isfinite(p)) and np.all(p >= 0) and abs(p.sum() - 1.0) < 1e-4):
            reasons[i] = "teacher gave invalid probabilities"
            del probs[i]
    return [_row(ids[i], model.name, probs.get(i), reasons.get(i, "")) for i in range(len(ids))]


class TeachWorker:
    """The teacher's rows (:data:`schema.TEACH`) for a batch of posts (``post_id``, ``text``, ``lang``): what an
    engine runs, the teacher loaded once per process."""

    def __init__(self, teacher: str, model: Teacher | None = None):
        if model is None:
            model = load_teacher(teacher)
        self.model = model

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = _label_batch(self.model, batch.column("post_id").to_pylist(), batch.column("text").to_pylist(),
                            batch.column("lang").to_pylist())
        return pa.Table.from_pylist(rows, schema=schema.TEACH)


def _portable(teacher: str) -> str:
    """``teacher`` as an engine's workers load it, whatever their working directory: a teacher directory by its
    absolute path, a registered name as it is."""
    if is_teacher_dir(teacher):
        return str(Path(teacher).resolve())
    return teacher


@writes("teach")
def teach(dataset: Dataset | str | Path, teacher: str | None = None, *, options: TeachOptions | None = None,
          **kwargs: Any) -> dict[str, int]:
    """Run the teacher over the text of every post and write the ``teach`` table.

    ``options`` (a :class:`~visent.teach.TeachOptions`, or its fields as keyword arguments: ``batch_size=512``)
    say which teacher (``teacher``, also the second argument: ``teach(dataset, "vader")``) and how.

    Posts whose text is empty after normalisation are kept as ``skipped`` ("no text"); the counts tell apart those
    whose post ingest could not read (an ingest error and no text, such as a line that is not JSON: ``not_read``,
    present when there are any) from the texts the teacher skipped (``skipped``). Work is
    checkpointed per batch; an interrupted run resumes where it stopped, and a run with the same
    teacher over the same posts is a no-op. ``engine`` runs the batches ("local" by default, "ray",
    or an engine of :func:`visent.engine.get_engine`, with ``ray_address``); the table is the same. Returns the stage
    counts.
    """
    if teacher is not None:
        kwargs["teacher"] = teacher
    options = resolve(TeachOptions, options, kwargs, what="teach")
    teacher, batch_size = options.teacher, options.batch_size
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
    ds = Dataset.of(dataset)
    ds.require_stage("ingest")
    model = load_teacher(teacher)
    columns = ["post_id", "text", "lang"]
    try:
        if "ingest_status" in pq.read_schema(ds.table_path("posts")).names:
            columns.append("ingest_status")  # tells the posts ingest could not read apart in the counts
    except (OSError, pa.ArrowException):
        pass  # read_table says what is wrong with the table
    posts = ds.read_table("posts", columns=columns)
    ids = posts.column("post_id").to_pylist()
    texts = [t or "" for t in posts.column("text").to_pylist()]
    langs = posts.column("lang").to_pylist()
    params = options.params(model.fingerprint, _posts_fingerprint(ids, texts, langs))
    if ds.stage_done(STAGE, params) and ds.has_table(STAGE):
        if "thresholds" not in ds.stage_info(STAGE):  # taught by a visent that did not record them
            ds.record_stage(STAGE, thresholds=dict(model.thresholds))
        if not _inputs_written(ds, params):  # taught by a visent that did not write them: the next change needs them
            _write_inputs(ds, ids, _inputs(texts, langs), params)
        return ordered(ds.stage_info(STAGE)["counts"], COUNTS)  # type: ignore[index]

    inputs = _inputs(texts, langs)
    taken = _taught_before(ds, params, ids, inputs)  # read before begin_stage, which forgets the last run finished
    checkpoint = ds.begin_stage(STAGE, params)
    done = checkpoint.done_keys()
    if taken is not None:
        taken = taken.filter(pc.invert(pc.is_in(taken.column("post_id"), value_set=pa.array(list(done), pa.string()))))
        if taken.num_rows:
            checkpoint.write(taken.replace_schema_metadata({_TAKEN: b"1"}))
            done.update(taken.column("post_id").to_pylist())
    todo = [i for i, post_id in enumerate(ids) if post_id not in done]
    run = get_engine(options.engine, address=options.ray_address)
    pending = pa.table({"post_id": [ids[i] for i in todo], "text": [texts[i] for i in todo],
                        "lang": pa.array([langs[i] for i in todo], pa.string())})
    with progress(f"teach ({teacher})", len(todo)) as advance:
        for rows in run.map_batches(TeachWorker, (_portable(teacher),), pending, batch_size=batch_size,
                                    local=TeachWorker(teacher, model)):
            checkpoint.write(rows.cast(schema.TEACH))
            advance(rows.num_rows)

    rows = checkpoint.read(schema.TEACH)
    order = pc.index_in(posts.column("post_id"), value_set=rows.column("post_id"))
    if order.null_count:
        raise RuntimeError(f"teach checkpoint in {ds.root} lacks {order.null_count} posts")
    table = rows.take(order)
    ds.write_table(STAGE, table)
    _write_inputs(ds, ids, inputs, params)
    counts = _counts(table, not_read_by_ingest(posts))
    reused = _taken_rows(checkpoint)
    # the clean stage reads the teacher's thresholds from here, never the teacher itself; ``run`` says what this run
    # did: the posts it taught (an interrupted run's included) and those whose rows it took from the last table
    ds.finish_stage(STAGE, params, counts, thresholds=dict(model.thresholds),
                    run={"taught": table.num_rows - reused, "reused": reused})
    return counts


def _counts(table: pa.Table, not_read: set[str] | None = None) -> dict[str, int]:
    """The stage's counts: ``skipped`` counts the texts the teacher skipped of posts ingest read; ``not_read`` (when
    there are any) the posts skipped for no text that are among ``not_read``, those ingest could not read."""
    not_read = not_read or set()
    status = table.column("teach_status").to_pylist()
    labels = table.column("teach_label").to_pylist()
    reasons = table.column("teach_reason").to_pylist()
    unread = sum(1 for post_id, state, reason in zip(table.column("post_id").to_pylist(), status, reasons)
                 if state == "skipped" and reason == "no text" and post_id in not_read)
    counts = {"posts": table.num_rows, "ok": status.count("ok"), "skipped": status.count("skipped") - unread}
    if unread:
        counts["not_read"] = unread
    counts.update({name: labels.count(name) for name in CLASSES})
    return counts


def not_read_by_ingest(posts: pa.Table) -> set[str]:
    """The ids of the posts ingest could not read, of a table with ``post_id``, ``text`` and ``ingest_status``: an
    ingest error and no text (a line that is not JSON, a file that cannot be read). The teacher has nothing of theirs
    to read, and the clean stage drops them as ingest errors."""
    if "ingest_status" not in posts.column_names:
        return set()
    return {post_id for post_id, state, text in zip(posts.column("post_id").to_pylist(),
                                                    posts.column("ingest_status").to_pylist(),
                                                    posts.column("text").to_pylist())
            if state not in (None, "ok") and not (text or "").strip()}


def _taught_before(ds: Dataset, params: dict[str, Any], ids: list[str], inputs: list[str]) -> pa.Table | None:
    """The rows of the last teach table that a run now would give again (:data:`schema.TEACH`): those of the posts
    whose id, text and language code it was taught from, by the same teacher; None when there is no such table.

    The table counts only when the stage last finished (its entry has ``finished_at``, which begin_stage removes)
    with this teacher, and ``work/teach-inputs.parquet`` was written for that run (it names the posts' digest of
    its parameters); a table of the same posts needs no inputs file (one taught by an older visent)."""
    info = ds.stage_info(STAGE)
    if not info or not info.get("finished_at") or not ds.has_table(STAGE):
        return None
    recorded = info.get("params") or {}
    if recorded.get("teacher") != params["teacher"] or recorded.get("teacher_id") != params["teacher_id"]:
        return None
    try:
        table = ds.read_table(STAGE).cast(schema.TEACH)
    except (OSError, ValueError, pa.ArrowException):
        return None
    wanted = dict(zip(ids, inputs))
    if recorded.get("posts") == params["posts"]:  # the same posts: every row holds
        before = wanted
    else:
        path = ds.root / "work" / INPUTS
        try:
            written = pq.read_table(path)
        except (OSError, pa.ArrowException):
            return None
        if (written.schema.metadata or {}).get(b"posts") != str(recorded.get("posts")).encode():
            return None  # written for another run than the one the manifest records
        before = dict(zip(written.column("post_id").to_pylist(), written.column("input").to_pylist()))
    keep = [post_id in wanted and before.get(post_id) == wanted[post_id]
            for post_id in table.column("post_id").to_pylist()]
    table = table.filter(pa.array(keep, pa.bool_()))
    # one row per post (the table has one; a damaged one might not)
    seen: set[str] = set()
    first = []
    for post_id in table.column("post_id").to_pylist():
        first.append(post_id not in seen)
        seen.add(post_id)
    return table.filter(pa.array(first, pa.bool_())) if table.num_rows else None


def _write_inputs(ds: Dataset, ids: list[str], inputs: list[str], params: dict[str, Any]) -> None:
    """Write ``work/teach-inputs.parquet``: the digest of each post's text and language code the table was taught
    from, for the run with ``params`` (its metadata names their digest of the posts)."""
    table = pa.table({"post_id": pa.array(ids, pa.string()), "input": pa.array(inputs, pa.string())},
                     schema=_INPUTS_SCHEMA.with_metadata({b"posts": str(params["posts"]).encode()}))
    atomic_write_table(ds.root / "work" / INPUTS, table)


def _inputs_written(ds: Dataset, params: dict[str, Any]) -> bool:
    """Whether ``work/teach-inputs.parquet`` was written for the posts of ``params``."""
    try:
        metadata = pq.read_schema(ds.root / "work" / INPUTS).metadata or {}
    except (OSError, pa.ArrowException):
        return False
    return metadata.get(b"posts") == str(params["posts"]).encode()


def _taken_rows(checkpoint: Checkpoint) -> int:
    """How many rows of the checkpoint were taken from the last teach table rather than taught."""
    total = 0
    for part in sorted(checkpoint.directory.glob("part-*.parquet")):
        metadata = pq.read_metadata(part)
        if (metadata.schema.to_arrow_schema().metadata or {}).get(_TAKEN) == b"1":
            total += metadata.num_rows
    return total
