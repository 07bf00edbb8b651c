"""The ``teach`` stage: teacher probabilities for every post of a dataset."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from visent.core import schema
from visent.core.display import ordered
from visent.core.errors import UsageError
from visent.core.labels import CLASSES
from visent.core.progress import progress
from visent.core.store import Dataset
from visent.engine import get_engine
from visent.teach.base import Teacher
from visent.teach.teachers import is_teacher_dir, load_teacher
from visent.teach.text import preprocess_tweet

STAGE = "teach"
COUNTS = ("posts", "ok", "skipped", *CLASSES)  # the order of the counts


def _posts_fingerprint(ids: Sequence[str], texts: Sequence[str], langs: Sequence[str | None]) -> str:
    """Digest of the post ids, texts and language codes (they route a trained teacher), so a
    re-ingested dataset never resumes stale rows. Posts without a code digest as before codes counted."""
    digest = hashlib.sha256()
    for post_id, text, lang in zip(ids, texts, langs):
        digest.update(f"{post_id}\x1f{text}\x1e".encode("utf-8", "surrogatepass"))
        if lang:
            digest.update(f"\x1d{lang}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


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


def teach(dataset: Dataset | str | Path, teacher: str = "default", *, batch_size: int = 2048,
          engine: Any = None) -> dict[str, int]:
    """Run the teacher over the text of every post and write the ``teach`` table.

    Posts whose text is empty after normalisation are kept as ``skipped`` ("no text"). Work is
    checkpointed per batch; an interrupted run resumes where it stopped, and a run with the same
    teacher over the same posts is a no-op. ``engine`` runs the batches ("local" by default, "ray",
    or an engine of :func:`visent.engine.get_engine`); the table is the same. Returns the stage counts.
    """
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
    ds = Dataset.of(dataset)
    ds.require_stage("ingest")
    model = load_teacher(teacher)
    posts = ds.read_table("posts", columns=["post_id", "text", "lang"])
    ids = posts.column("post_id").to_pylist()
    texts = [t or "" for t in posts.column("text").to_pylist()]
    langs = posts.column("lang").to_pylist()
    params = {"teacher": teacher, "teacher_id": model.fingerprint,
              "posts": _posts_fingerprint(ids, texts, langs)}
    if ds.stage_done(STAGE, params) and ds.has_table(STAGE):
        if "thresholds" not in ds.stage_info(STAGE):  # taught by a visent that did not record them
            ds.record_stage(STAGE, thresholds=dict(model.thresholds))
        return ordered(ds.stage_info(STAGE)["counts"], COUNTS)  # type: ignore[index]

    checkpoint = ds.begin_stage(STAGE, params)
    done = checkpoint.done_keys()
    todo = [i for i, post_id in enumerate(ids) if post_id not in done]
    run = get_engine(engine)
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
    counts = _counts(table)
    # the clean stage reads the teacher's thresholds from here, never the teacher itself
    ds.finish_stage(STAGE, params, counts, thresholds=dict(model.thresholds))
    return counts


def _counts(table: pa.Table) -> dict[str, int]:
    status = table.column("teach_status").to_pylist()
    labels = table.column("teach_label").to_pylist()
    counts = {"posts": table.num_rows, "ok": status.count("ok"), "skipped": status.count("skipped")}
    counts.update({name: labels.count(name) for name in CLASSES})
    return counts
