"""Train the visual student on the cleaned teacher labels of a dataset.

Public surface: :func:`train` (dataset → model directory) and :class:`StudentHead` (fit / predict_proba).
Training reads the ``posts``, ``teach`` and ``clean`` tables only; the ``human_labels`` table is never opened.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Sequence as SequenceABC
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from visent.clean import STEPS as CLEAN_STEPS
from visent.core.display import ordered, readable
from visent.core.errors import PathNotFound, UsageError, VisentError
from visent.core.labels import CLASSES
from visent.core.numeric import (LOG_TEMPERATURE_BOUNDS, expected_calibration_error, fit_temperature,
                                  softmax)
from visent.core.progress import Advance, console, progress
from visent.core.schema import PROB_COLUMNS
from visent.core.store import Dataset, atomic_write_bytes, writes
from visent.core.version import __version__
from visent.embed.spec import DEFAULT_BACKBONE  # defined beside the backbones, so `visent --help` needs no sklearn
from visent.model import ModelConfig, ModelError, VisentModel
from visent.model.head import StudentHead, as_targets, default_block_rows
from visent.train.noisy import self_train, sharpen

__all__ = ["C_GRID", "DEFAULT_BACKBONE", "select_C", "train", "StudentHead", "TrainError", "WeakModelWarning"]

# Weak labels from text are noisy about the image, so the useful range reaches strong regularisation.
C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)
# The grid is walked from strong to weak regularisation and left once this many C values in a row have done worse
# than the best: the validation cross-entropy has one minimum along it (on each MVSA fold at 1e-4 or 3e-4, then
# rising at every step), and the weak end costs the most solver steps (at 10k crawl images, 0.01 took 4x the steps of
# 1e-4).
C_PATIENCE = 2


class TrainError(VisentError):
    """Training cannot start: the dataset is not ready or has too few usable examples."""


class _ImagePaths(SequenceABC):
    """The image path of each training row, made when asked for: a million paths held at once would cost as
    much memory as the rest of the training rows together."""

    def __init__(self, dataset: Dataset, files: list[str | None]):
        self._dataset, self._files = dataset, files

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self._path(f) for f in self._files[index]]
        return self._path(self._files[index])

    def _path(self, rel: str | None) -> Path | None:
        return None if rel is None else self._dataset.image_path(rel)


def _training_rows(dataset: Dataset) -> dict[str, Any]:
    """The kept posts, column by column: ids, image paths (:class:`_ImagePaths`), image hashes, the teacher's
    probabilities (float32, n × 3) and labels, in the order of :meth:`Dataset.posts`."""
    dataset.require_stage("clean")
    table = dataset.posts()
    if "clean_status" in table.column_names:
        table = table.filter(pc.equal(table["clean_status"], "kept"))  # a null status is not kept
    else:
        table = table.slice(0, 0)
    names = ["post_id", "image_file", "image_sha256", "label", *PROB_COLUMNS]
    table = table.select([name for name in names if name in table.column_names])

    def column(name: str) -> list[Any]:
        return table[name].to_pylist() if name in table.column_names else [None] * table.num_rows

    soft = np.empty((table.num_rows, len(CLASSES)), dtype=np.float32)
    for k, name in enumerate(PROB_COLUMNS):
        soft[:, k] = table[name].to_numpy(zero_copy_only=False) if name in table.column_names else np.nan
    rows = {"post_id": column("post_id"), "path": _ImagePaths(dataset, column("image_file")),
            "sha256": column("image_sha256"), "soft": soft, "label": column("label")}
    del table
    # Arrow's allocator keeps what the joined tables freed (1.25 GB of 1M posts) for later tables: give it back.
    pa.default_memory_pool().release_unused()
    return rows


# Memory of the student's features (float32), in MB: beyond it they are kept in a file under the dataset's work/train
# and the head is fitted by StudentHead.fit_streamed, block by block.
MEMORY_ENV = "VISENT_TRAIN_MEMORY_MB"
DEFAULT_MEMORY_MB = 1024
# The in-memory fit while the float32 matrix times this fits the budget. Measured when StudentHead.fit ran
# scikit-learn's solver (a float64 copy, then the rows repeated once per class of the soft targets: 5.5 times the
# matrix, at 10,000 and 20,000 rows of 2,576 features); the block solver needs a copy of the split's rows, so the
# factor is now generous.
IN_MEMORY_FIT_FACTOR = 6
# Rows whose features are computed (or read from the cache) at a time: 169 MB of the default backbone's 2,576.
FEATURE_BLOCK_ROWS = 16384
# Rows C is chosen and the temperature fitted on when the head is streamed: 515 MB of 2,576 features in memory.
C_SUBSAMPLE = 50_000


def memory_budget() -> int:
    """Bytes the student's features may take in memory: ``$VISENT_TRAIN_MEMORY_MB`` megabytes (default
    :data:`DEFAULT_MEMORY_MB`)."""
    raw = os.environ.get(MEMORY_ENV, "").strip()
    if not raw:
        return DEFAULT_MEMORY_MB << 20
    try:
        megabytes = float(raw)
    except ValueError:
        raise UsageError(f"{MEMORY_ENV} must be a number of megabytes, not {raw!r}") from None
    if not megabytes >= 0:
        raise UsageError(f"{MEMORY_ENV} must be a number of megabytes, not {raw!r}")
    return int(megabytes * 2**20)


class _FeatureFile:
    """Float32 feature rows (n, d) in a temporary file with no name (gone when closed, or when the process ends,
    however it ends): appended in order, read back by row slices and index arrays with plain reads. Not a memory
    map: the pages a map touches would count in the process's resident memory until it is unmapped. The bytes are
    those ``np.memmap(..., dtype=np.float32, shape=(n, d))`` would map."""

    dtype = np.dtype(np.float32)
    SPAN_ROWS = 4096  # rows read at once when gathering an index array
    GAP_ROWS = 64     # rows an index array may skip inside one read

    def __init__(self, directory: Path, n_features: int):
        directory.mkdir(parents=True, exist_ok=True)
        self._file = tempfile.TemporaryFile(dir=directory, prefix="features-")
        self.n_features, self.n_rows = int(n_features), 0
        self._row_bytes = 4 * self.n_features

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_rows, self.n_features

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return self.n_rows

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.n_features:
            raise ValueError(f"rows of {self.n_features} features expected, got shape {block.shape}")
        if not block.size:
            return
        view, offset = memoryview(block.reshape(-1)).cast("B"), self.n_rows * self._row_bytes
        while view:
            written = os.pwrite(self._file.fileno(), view, offset)
            view, offset = view[written:], offset + written
        self.n_rows += len(block)

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.n_features), dtype=np.float32)
        if not out.size:
            return out
        view, offset = memoryview(out.reshape(-1)).cast("B"), start * self._row_bytes
        while view:
            got = os.preadv(self._file.fileno(), [view], offset)
            if got <= 0:
                raise EOFError(f"the feature file ends before row {stop}")
            view, offset = view[got:], offset + got
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.n_rows)
            if step != 1:
                raise IndexError("feature file rows are read by slices of step 1")
            return self._read(start, max(start, stop))
        index = np.asarray(key)
        if index.ndim != 1 or (index.size and index.dtype.kind not in "iu"):
            raise IndexError("feature file rows are read by slices or 1-D integer arrays")
        index = index.astype(np.int64)
        out = np.empty((len(index), self.n_features), dtype=np.float32)
        if not len(index):
            return out
        if index.min() < 0 or index.max() >= self.n_rows:
            raise IndexError(f"row index out of range for {self.n_rows} rows")
        order = np.argsort(index, kind="stable")
        ordered = index[order]
        first = 0
        for i in range(1, len(ordered) + 1):  # one read per run of nearby rows, at most SPAN_ROWS long
            if (i < len(ordered) and ordered[i] - ordered[i - 1] <= self.GAP_ROWS
                    and ordered[i] - ordered[first] < self.SPAN_ROWS):
                continue
            low = int(ordered[first])
            span = self._read(low, int(ordered[i - 1]) + 1)
            out[order[first:i]] = span[ordered[first:i] - low]
            first = i
        return out

    def close(self) -> None:
        self._file.close()


def _embed(reader: VisentModel, rows: dict[str, Any], *, batch_size: int, budget: int,
           work: Path) -> tuple[Any, np.ndarray, list[str]]:
    """The features of the kept rows whose images could be embedded, float32 (n_usable, d), computed (or read from
    the feature cache) :data:`FEATURE_BLOCK_ROWS` rows at a time: an array when they fit the memory ``budget``, else a
    :class:`_FeatureFile` under ``work``; with the mask of usable rows and the first 20 errors."""
    from visent.embed.cache import shared_indexes

    n = len(rows["sha256"])
    usable = np.zeros(n, dtype=bool)
    errors: list[str] = []
    store: Any = None
    filled = 0
    try:
        with shared_indexes():  # the cache's index is read once, not once per block
            for start in range(0, n, FEATURE_BLOCK_ROWS):
                stop = min(n, start + FEATURE_BLOCK_ROWS)
                features, statuses = reader.features(rows["path"][start:stop], rows["sha256"][start:stop],
                                                     batch_size=batch_size)
                ok = ~np.isnan(features).any(axis=1)
                usable[start:stop] = ok
                errors += [str(s) for s in statuses if s.failed][:20 - len(errors)]
                d = features.shape[1]
                if store is None:
                    if n * d * 4 <= budget:
                        if stop == n:  # every row at once, as training always embedded them
                            return features[ok], usable, errors
                        store = np.empty((n, d), dtype=np.float32)
                    else:
                        store = _FeatureFile(work, d)
                kept = features if ok.all() else features[ok]
                if isinstance(store, np.ndarray):
                    store[filled:filled + len(kept)] = kept
                else:
                    store.append(kept)
                filled += len(kept)
                del features, statuses, kept
    except BaseException:
        if isinstance(store, _FeatureFile):
            store.close()
        raise
    if store is None:
        return np.empty((0, 0), dtype=np.float32), usable, errors
    return (store[:filled] if isinstance(store, np.ndarray) else store), usable, errors


def _teacher_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation rows of the teacher's labels (stratified where every class has two rows)."""
    stratify = labels if min(np.unique(labels, return_counts=True)[1]) >= 2 else None
    return train_test_split(np.arange(len(labels)), test_size=val_fraction, random_state=seed, stratify=stratify)


def select_C(X: np.ndarray, targets: np.ndarray, labels: np.ndarray, val_fraction: float, seed: int,
              grid: tuple[float, ...], advance: Advance = lambda n=1: None, *, streamed: bool = False,
              rows: np.ndarray | None = None,
              warm: dict[str, Any] | None = None) -> tuple[float, dict[str, Any], StudentHead]:
    """Pick the regularisation strength on a validation split of the teacher's labels (no human labels).
    Returns C, the figures of every C, and the head of the chosen C fitted on the split's training rows.
    ``streamed`` fits each head with :meth:`StudentHead.fit_streamed` and predicts a block of rows at a time (the
    same heads and figures, without copies of X); the targets and labels are then those of X's ``rows`` when given.
    ``warm`` (see :func:`_load_warm`): each C's fit starts from that C's solution of the previous training of the
    dataset when there is one, and its solutions are put there for the next."""
    idx_train, idx_val = _teacher_split(labels, val_fraction, seed)
    at_train, at_val = (idx_train, idx_val) if rows is None else (rows[idx_train], rows[idx_val])
    scores, heads = [], {}
    # Along the grid (strong to weak regularisation) each fit starts from the last one's solution: the same
    # optima in fewer solver steps.
    head = StudentHead(warm_start=True)
    for position, C in enumerate(grid):
        best_at = min(range(len(scores)), key=lambda i: scores[i]["val_cross_entropy"], default=0)
        if len(scores) - 1 - best_at >= C_PATIENCE:
            advance(len(grid) - position)  # the rest of the grid, not fitted
            break
        if warm is not None and warm.get(C) is not None:
            head.start_from(warm[C])
        if streamed:
            head.set_params(C=C).fit_streamed(X, targets[idx_train], rows=at_train)
        else:
            head.set_params(C=C).fit(X[idx_train], targets[idx_train])
        heads[C] = copy.deepcopy(head)
        if warm is not None:
            warm[C] = head._solution
        advance()
        probs = _predict_rows(head, X, at_val) if streamed else head.predict_proba(X[idx_val])
        pred = np.array(CLASSES)[probs.argmax(axis=1)]
        scores.append({
            "C": C,
            "val_cross_entropy": float(-np.mean(np.sum(targets[idx_val] * np.log(np.clip(probs, 1e-12, 1)), axis=1))),
            "val_balanced_accuracy": float(balanced_accuracy_score(labels[idx_val], pred)),
            "val_agreement": float(np.mean(pred == labels[idx_val])),
        })
    # Cross-entropy against the teacher's targets is a proper score, and it tracks the student's accuracy
    # on human image labels better than agreement does (measured on MVSA, see the README).
    best = min(scores, key=lambda s: s["val_cross_entropy"])
    present, counts = np.unique(labels[idx_val], return_counts=True)
    selection = {"n_train": int(len(idx_train)), "n_val": int(len(idx_val)),
                 "val_class_counts": {str(name): int(n) for name, n in zip(present, counts)}, "grid": scores,
                 "chosen": best}
    return best["C"], selection, heads[best["C"]]


# A class with fewer training posts leaves fewer than 4 in the 20% validation split: too few to learn it from, and
# too few to measure it (its recall moves in steps of 25 points or more).
MIN_CLASS_POSTS = 20


class WeakModelWarning(UserWarning):
    """The student trained, but it is likely of no use: a class has too few posts, or it does no better than
    chance against its teacher's validation labels."""


def weak_model_notes(class_counts: dict[str, int], selection: dict[str, Any],
                     calibration: dict[str, Any] | None) -> list[str]:
    """Why a trained student is likely of no use, one sentence each (none for a healthy one): a class with
    training posts but fewer than :data:`MIN_CLASS_POSTS`; a validation balanced accuracy against the teacher
    within two standard errors of chance (1 / the classes of the validation split); a calibration temperature at
    its upper bound (the head's scores carry nothing the validation split confirms: every probability is flattened
    towards 1 / 3)."""
    notes = []
    few = {name: n for name, n in class_counts.items() if 0 < n < MIN_CLASS_POSTS}
    if few:
        notes.append(f"too few training posts in {', '.join(f'{name} ({n})' for name, n in few.items())}: a class "
                     f"needs {MIN_CLASS_POSTS} or more")
    accuracy = selection.get("chosen", {}).get("val_balanced_accuracy")
    val_counts = [n for n in (selection.get("val_class_counts") or {}).values() if n > 0]
    if accuracy is not None and len(val_counts) >= 2:
        # Balanced accuracy is the mean recall of the k classes; a student at chance has recall 1/k in each class,
        # with the binomial spread of its n_c validation posts.
        k = len(val_counts)
        chance = 1.0 / k
        noise = 2.0 * math.sqrt(sum(chance * (1.0 - chance) / n for n in val_counts)) / k
        if accuracy <= chance + noise:
            notes.append(f"its balanced accuracy against the teacher's labels of {sum(val_counts)} validation posts, "
                         f"{accuracy:.3f}, is within noise of chance (chance {chance:.3f}, two standard errors "
                         f"{noise:.3f})")
    temperature = (calibration or {}).get("temperature")
    if temperature is not None and math.log(temperature) >= LOG_TEMPERATURE_BOUNDS[1] - 0.01:
        notes.append(f"its calibration temperature is at the upper bound ({temperature:.1f}): its probabilities "
                     "are flattened to about the same for every class")
    return notes


def _warn_weak(out: Path, dataset: Dataset, notes: list[str]) -> None:
    if notes:
        warnings.warn(f"{out}: the model trained on {dataset.root} is likely of no use: {'; '.join(notes)}. Train it "
                      "on more posts (ingest more, or loosen the thresholds, `visent clean --help`) and check it on "
                      "human labels with `visent evaluate`", WeakModelWarning, stacklevel=3)


def _rows_fingerprint(rows: dict[str, Any]) -> str:
    """Digest of what training reads of a dataset: each kept post's id, image hash, teacher label and teacher
    probabilities, in order. A dataset taught or cleaned again with the same outcome digests the same."""
    digest = hashlib.sha256()
    for post_id, sha256, label in zip(rows["post_id"], rows["sha256"], rows["label"]):
        digest.update(f"{post_id}\x1f{sha256}\x1f{label}\x1e".encode("utf-8", "surrogatepass"))
    digest.update(np.ascontiguousarray(rows["soft"], dtype=np.float64).tobytes())
    return digest.hexdigest()


def _file_digest(path: str | Path | None) -> str | None:
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _trained(out: Path, params: dict[str, Any]) -> VisentModel | None:
    """The complete model in ``out`` when it was trained with ``params`` (and not adapted since), else None."""
    try:
        model = VisentModel.load(out)
    except (ModelError, OSError, ValueError):
        return None
    if "adaptation" in model.metrics or _canonical(model.metrics.get("params") or {}) != _canonical(params):
        return None
    if not all((out / name).is_file() for name in model.carried_files()):
        return None
    return model


def check_options(*, backbone: str = DEFAULT_BACKBONE, weights: str | Path | None = None, target: str = "soft",
                  tta: bool | str = False, runtime: str | None = None, signals: Sequence[str] = ()) -> tuple[str, str]:
    """Refuse an unknown backbone, target, test-time augmentation, runtime or signal, and a weights file that does
    not exist, before any work (``build`` checks them before it ingests); returns the runtime and the tta mode."""
    from visent.embed.backbones import check_backbone
    from visent.embed.features import tta_mode
    from visent.embed.onnx import DEFAULT_RUNTIME, check_runtime
    from visent.signals import check_signals

    for name in backbone.split("+"):
        check_backbone(name.strip())
    if weights is not None and not Path(weights).is_file():
        raise PathNotFound(f"{weights}: no such weights file (--weights)")
    if target not in ("soft", "hard"):
        raise UsageError(f"target must be 'soft' or 'hard', not {target!r}")
    check_signals(signals)
    return check_runtime(runtime or DEFAULT_RUNTIME), tta_mode(tta)


@writes("train")  # its work files and head solutions live in the dataset
def train(dataset: Dataset | str | Path, out: str | Path, *, backbone: str = DEFAULT_BACKBONE,
          weights: str | Path | None = None, target: str = "soft", val_fraction: float = 0.2, C: float | None = None,
          tta: bool | str = False, finetune_blocks: int = 0, finetune_epochs: int = 3, batch_size: int = 32,
          seed: int = 0, runtime: str | None = None, signals: Sequence[str] = (),
          signal_teacher: str = "vader", target_temperature: float = 1.0, self_training: int = 0,
          self_training_alpha: float = 0.5, calibrate: bool = True, int8_calibration: str = "packaged",
          force: bool = False) -> "VisentModel":
    """Train a student on the kept rows of a cleaned dataset and write the model directory ``out``.

    Training is a stage like the others: the model records its options and a digest of the kept posts it learnt
    from (``metrics["params"]``), and when ``out`` already holds a model of the same dataset, kept posts and
    options, that model is returned as it is (``force`` trains it again).

    ``target`` is ``"soft"`` (the teacher's probabilities) or ``"hard"`` (its argmax label).
    ``C`` fixes the head's regularisation; by default it is chosen on a validation split of teacher labels.
    ``finetune_blocks > 0`` first fine-tunes the last blocks of the backbone on the weak labels (FT-A style).
    ``backbone`` may join several with ``+`` (``efficientnet-lite0-ms+efficientnet-lite2``): the features of
    the first (fine-tuned or loaded from ``weights`` if asked) are followed by those of the others (frozen,
    packaged weights). ``signals`` adds image signals to the backbone's features
    (``visent.signals.SIGNALS``: "ocr" scored by ``signal_teacher``, "faces").
    ``target_temperature`` sharpens (< 1) or flattens (> 1) the teacher's probabilities; ``self_training``
    rounds let the student relabel the posts out of fold and learn from ``alpha * teacher + (1 - alpha) *
    student`` (:mod:`visent.train.noisy`). ``calibrate`` temperature-scales the student's probabilities against
    the teacher's targets on the validation split (the predicted class never changes).
    ``runtime`` runs the backbone with PyTorch or ONNX Runtime (``visent.embed.RUNTIMES``, default
    ``DEFAULT_RUNTIME``); the model keeps it, and for int8 its calibration: ``int8_calibration="packaged"`` the
    one shipped for the backbone where there is one (packaged weights, not fine-tuned: one network for every
    dataset, so a grown crawl embeds only its new images), else (or ``"dataset"``) measured on the kept images.
    """
    from visent.embed import load_backbone
    from visent.embed.onnx import MIN_CALIBRATION_IMAGES, check_calibration

    asked = runtime
    runtime, tta = check_options(backbone=backbone, weights=weights, target=target, tta=tta, runtime=runtime,
                                 signals=signals)
    check_calibration(int8_calibration)
    dataset = Dataset.of(dataset)
    started = time.time()
    rows = _training_rows(dataset)
    if len(rows["post_id"]) < 10:
        raise TrainError(f"{dataset.root}: only {len(rows['post_id'])} posts survived cleaning; "
                         "ingest more posts or loosen the thresholds (`visent clean --help`)")
    out = Path(out)
    params = {"dataset": str(dataset.root.resolve()), "posts": _rows_fingerprint(rows), "backbone": backbone,
              "weights": _file_digest(weights), "target": target, "val_fraction": val_fraction, "C": C, "tta": tta,
              "finetune_blocks": finetune_blocks, "finetune_epochs": finetune_epochs if finetune_blocks else None,
              "batch_size": batch_size, "seed": seed, "runtime": runtime, "signals": list(signals),
              "signal_teacher": signal_teacher if signals else None, "target_temperature": target_temperature,
              "self_training": self_training, "self_training_alpha": self_training_alpha if self_training else None,
              "calibrate": calibrate, "int8_calibration": int8_calibration if runtime == "onnx-int8" else None,
              "visent": __version__}
    if not force and (done := _trained(out, params)) is not None:
        console.print(f"train: the model in {out} is up to date (same kept posts of {dataset.root}, same options); "
                      "nothing to do (`visent train --force` trains it again)", markup=False, highlight=False,
                      soft_wrap=True)
        _warn_weak(out, dataset, done.metrics.get("warnings") or [])
        return done
    if (asked is None and runtime == "onnx-int8" and len(set(rows["sha256"])) < MIN_CALIBRATION_IMAGES
            and not _shipped_int8(backbone, weights, finetune_blocks, int8_calibration)):
        warnings.warn(f"{dataset.root}: {len(set(rows['sha256']))} distinct images are too few to calibrate the int8 "
                      f"network (it needs {MIN_CALIBRATION_IMAGES}); the model runs in fp32 (runtime 'onnx')",
                      stacklevel=2)
        runtime = "onnx"
    labels = np.array(rows["label"])
    targets = rows["soft"] if target == "soft" else as_targets(labels)
    out.mkdir(parents=True, exist_ok=True)
    # config.json marks a complete model directory: until the new model is saved, out holds none (an interrupted
    # run must not leave new carried files beside an old head, nor pass for the old model)
    (out / "config.json").unlink(missing_ok=True)

    from visent.signals import check_signals

    backbone, *extra_backbones = [name.strip() for name in backbone.split("+")]
    # Loaded now, so that an unknown or weights-only name fails before any work; the features reuse them.
    extra_loaded = {name: load_backbone(name) for name in extra_backbones}
    config = ModelConfig(backbone=backbone, tta=tta, runtime=runtime, extra_backbones=extra_backbones,
                         signals=check_signals(signals), signal_teacher=signal_teacher)
    model_backbone, finetune_report = _student_backbone(config, out, weights, rows, targets,
                                                        finetune_blocks=finetune_blocks,
                                                        finetune_epochs=finetune_epochs, batch_size=batch_size,
                                                        seed=seed, int8_calibration=int8_calibration)
    reader = VisentModel(config, head=None, directory=out)  # type: ignore[arg-type]  # features only: as predict
    reader._backbone, reader._extra_backbones = model_backbone, extra_loaded
    budget = memory_budget()
    X, usable, embed_errors = _embed(reader, rows, batch_size=batch_size, budget=budget,
                                     work=dataset.root / "work" / "train")
    try:
        if usable.sum() < 10:
            raise TrainError(f"{dataset.root}: only {int(usable.sum())} images could be embedded; see the clean "
                             "table")
        targets, labels = targets[usable], labels[usable]
        # Beyond the budget (IN_MEMORY_FIT_FACTOR), C is chosen on a subsample and the head of every row is fitted
        # reading the rows block by block, from disk when they do not fit in memory.
        streamed = not (isinstance(X, np.ndarray) and X.nbytes * IN_MEMORY_FIT_FACTOR <= budget)
        # the solutions of the dataset's previous training with these options: a grown crawl's head starts there
        warm_path, warm_key = dataset.root / "work" / WARM_FILE, _warm_key(params, int(X.shape[1]))
        warm = _load_warm(warm_path, warm_key)
        warm_started = bool(warm)
        head, C, selection, calibration = _fit_head(
            X, sharpen(targets, target_temperature), labels, C=C, val_fraction=val_fraction, seed=seed,
            self_training=self_training, self_training_alpha=self_training_alpha, calibrate=calibrate,
            streamed=streamed, warm=warm)
        _save_warm(warm_path, warm_key, warm)
        fit = {"streamed": streamed, "features_on_disk": isinstance(X, _FeatureFile),
               "memory_budget_mb": round(budget / 2**20, 1), "warm_start": warm_started}
        if streamed:
            fit["passes"] = int(getattr(head, "n_passes_", 0))
    finally:
        if isinstance(X, _FeatureFile):
            X.close()

    class_counts = {name: int(np.sum(labels == name)) for name in CLASSES}
    notes = weak_model_notes(class_counts, selection, calibration)
    metrics = {
        "n_train_posts": int(usable.sum()),
        "n_embed_errors": int((~usable).sum()),
        "embed_errors": embed_errors,
        "class_counts": class_counts,
        "target": target,
        "C": C,
        "validation": selection,
        "target_temperature": target_temperature,
        "self_training": {"rounds": self_training, "alpha": self_training_alpha},
        "calibration": calibration,
        "finetune": finetune_report,
        "fit": fit,
        "seconds": round(time.time() - started, 1),
        **_provenance(dataset),
        "params": params,
        "warnings": notes,
    }
    model = VisentModel(config, head, metrics=metrics)
    model.save(out, card=model_card(config, metrics))
    _warn_weak(out, dataset, notes)
    return model


def _fit_head(X: Any, targets: np.ndarray, labels: np.ndarray, *, C: float | None, val_fraction: float,
              seed: int, self_training: int, self_training_alpha: float, calibrate: bool,
              streamed: bool = False,
              warm: dict[Any, Any] | None = None) -> tuple[StudentHead, float, dict[str, Any], dict[str, Any] | None]:
    """The head on the teacher's (sharpened) targets: C chosen on a teacher-label split unless given, the
    self-training rounds, then the temperature. Returns the head, C, how C was chosen and the calibration.
    A progress bar counts the fits (each C of the grid, the head on every row, the calibration's).

    Every fit starts from a nearby solution (the problem is convex: the same optimum, in fewer solver steps): each
    C of the grid from the one before it, the head of every row from the split head of the chosen C, and with
    ``warm`` (the solutions of the dataset's previous training, see :func:`_load_warm`) each from its own previous
    solution; ``warm`` is then updated with this training's solutions.

    ``streamed`` (features beyond the memory budget, ``X`` an array or a :class:`_FeatureFile`): C is chosen, and
    the temperature fitted, on a stratified subsample of at most :data:`C_SUBSAMPLE` rows held in memory (every
    row when there are no more), and every head is fitted by :meth:`StudentHead.fit_streamed`, the head of every
    row starting from the split head of the chosen C."""
    if streamed:
        return _fit_head_streamed(X, targets, labels, C=C, val_fraction=val_fraction, seed=seed,
                                  self_training=self_training, self_training_alpha=self_training_alpha,
                                  calibrate=calibrate, warm=warm)
    split_head = None
    fits = (len(C_GRID) if C is None else 0) + 1 + int(calibrate)
    with progress(f"train: fitting the head ({len(X):,} images, {X.shape[1]:,} features)", fits) as advance:
        if C is None:
            C, selection, split_head = select_C(X, targets, labels, val_fraction, seed, C_GRID, advance, warm=warm)
        else:
            selection = {"chosen": {"C": C}}
        head, learnt = self_train(X, targets, C, rounds=self_training, alpha=self_training_alpha, seed=seed,
                                  start=_final_start(warm, C, split_head))
        if warm is not None:
            warm[("final", C)] = head._solution
        advance()
        # Without self-training the calibration's split head is the one C was chosen with: same rows, targets, C.
        reuse = split_head if self_training == 0 else None
        calibration = _calibrate(head, X, learnt, labels, val_fraction, seed, reuse) if calibrate else None
        advance(int(calibrate))
    return head, C, selection, calibration


def _fit_head_streamed(X: Any, targets: np.ndarray, labels: np.ndarray, *, C: float | None, val_fraction: float,
                       seed: int, self_training: int, self_training_alpha: float, calibrate: bool,
                       warm: dict[Any, Any] | None = None,
                       ) -> tuple[StudentHead, float, dict[str, Any], dict[str, Any] | None]:
    """:func:`_fit_head` for features beyond the memory budget (see there)."""
    sub = _subsample(labels, C_SUBSAMPLE, seed)
    whole = len(sub) == len(labels)
    # Features on disk: the subsample is read into memory once (each C reads it many times); in memory, it is
    # addressed where it lies.
    in_memory = isinstance(X, np.ndarray)
    X_sub, at = (X, None if whole else sub) if in_memory else (X[sub], None)
    targets_sub, labels_sub = (targets, labels) if whole else (targets[sub], labels[sub])
    split_head = None
    fits = (len(C_GRID) if C is None else 0) + 1 + int(calibrate)
    with progress(f"train: fitting the head ({len(X):,} images, {X.shape[1]:,} features, streamed; C chosen on "
                  f"{len(sub):,})", fits) as advance:
        if C is None:
            C, selection, split_head = select_C(X_sub, targets_sub, labels_sub, val_fraction, seed, C_GRID, advance,
                                                 streamed=True, rows=at, warm=warm)
        else:
            selection = {"chosen": {"C": C}}
        selection["subsample"] = int(len(sub))
        head, learnt = _self_train_streamed(X, targets, C, rounds=self_training, alpha=self_training_alpha,
                                            seed=seed, start=_final_start(warm, C, split_head))
        if warm is not None:
            warm[("final", C)] = head._solution
        advance()
        reuse = split_head if self_training == 0 else None
        calibration = None
        if calibrate:
            calibration = _calibrate(head, X_sub, learnt if whole else learnt[sub], labels_sub, val_fraction, seed,
                                     reuse, streamed=True, rows=at)
        advance(int(calibrate))
    return head, C, selection, calibration


def _final_start(warm: dict[Any, Any] | None, C: float, split_head: StudentHead | None) -> tuple | None:
    """Where the head of every row starts: its previous solution for this C, else the split head's."""
    previous = (warm or {}).get(("final", C))
    if previous is not None:
        return previous
    return getattr(split_head, "_solution", None)


WARM_FILE = "head-solutions.npz"  # under the dataset's work/: the head's solutions of its last training


def _warm_key(params: dict[str, Any], dim: int) -> str:
    """What the solutions depend on besides the posts: the options and the features' width."""
    kept = {k: v for k, v in params.items() if k not in ("posts", "dataset", "visent")}
    return hashlib.sha256(json.dumps([kept, dim], sort_keys=True, default=str).encode()).hexdigest()


def _load_warm(path: Path, key: str) -> dict[Any, Any]:
    """The solutions a previous training of the dataset with the same options left (empty when there are none,
    or they belong to other options or are damaged: the fits then start from scratch, and a damaged file is said
    and written again after the fit)."""
    import zipfile

    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return {}
            warm: dict[Any, Any] = {}
            for i, name in enumerate(data["names"].tolist()):
                kind, _, value = name.partition(":")
                solution = ((tuple(int(c) for c in data[f"seen{i}"]), int(data[f"coef{i}"].shape[1])),
                            data[f"coef{i}"], data[f"intercept{i}"])
                warm[float(value) if kind == "C" else ("final", float(value))] = solution
            return warm
    except (OSError, KeyError, ValueError, IndexError, EOFError, zipfile.BadZipFile) as exc:
        warnings.warn(f"{path}: damaged ({type(exc).__name__}: {exc}); the head's fits start from scratch and the "
                      "file is written again", RuntimeWarning, stacklevel=2)
        return {}


def _save_warm(path: Path, key: str, warm: dict[Any, Any]) -> None:
    import io

    arrays: dict[str, np.ndarray] = {"key": np.array(key)}
    names = []
    for i, (name, ((seen, _), coef, intercept)) in enumerate(warm.items()):
        names.append(f"final:{name[1]!r}" if isinstance(name, tuple) else f"C:{name!r}")
        arrays.update({f"seen{i}": np.array(seen, dtype=np.int64), f"coef{i}": np.asarray(coef),
                       f"intercept{i}": np.asarray(intercept)})
    arrays["names"] = np.array(names)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def _subsample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``size`` rows, stratified by label (every row when there are no more)."""
    n = len(labels)
    if n <= size:
        return np.arange(n)
    stratify = labels if np.unique(labels, return_counts=True)[1].min() >= 2 else None
    chosen = train_test_split(np.arange(n), train_size=size, random_state=seed, stratify=stratify)[0]
    return np.sort(chosen)


def _fit_streamed(X: Any, targets: np.ndarray, C: float, *, rows: np.ndarray | None = None,
                  start: tuple | None = None) -> StudentHead:
    """:meth:`StudentHead.fit_streamed` of C, from the solution ``start`` when given (the same optimum, in fewer
    passes over the rows)."""
    return StudentHead(C=C).start_from(start).fit_streamed(X, targets, rows=rows).set_params(warm_start=False)


def _decision_rows(head: StudentHead, X: Any, rows: np.ndarray) -> np.ndarray:
    """The head's logits of those rows of X, a block at a time."""
    size = default_block_rows(X.shape[1])
    out = np.empty((len(rows), len(CLASSES)))
    for start in range(0, len(rows), size):
        out[start:start + size] = head.decision_function(X[rows[start:start + size]])
    return out


def _predict_rows(head: StudentHead, X: Any, rows: np.ndarray) -> np.ndarray:
    """The head's probabilities of those rows of X, a block at a time."""
    return softmax(_decision_rows(head, X, rows) / head.temperature_)


def _self_train_streamed(X: Any, targets: np.ndarray, C: float, *, rounds: int, alpha: float, seed: int,
                         start: tuple | None = None) -> tuple[StudentHead, np.ndarray]:
    """:func:`visent.train.noisy.self_train` with streamed fits: the head of every row, then ``rounds`` times the
    rows relabelled out of fold (as :func:`visent.train.noisy.out_of_fold_proba`: stratified folds of the
    targets' argmax) and the head fitted again on ``alpha * targets + (1 - alpha) * student``."""
    if rounds < 0 or not 0.0 <= alpha <= 1.0:
        raise UsageError(f"self-training needs rounds >= 0 and 0 <= alpha <= 1, got {rounds}, {alpha}")
    current = np.asarray(targets, dtype=np.float64)
    head = _fit_streamed(X, current, C, start=start)
    for _ in range(rounds):
        hard = current.argmax(axis=1)
        counts = np.bincount(hard)
        folds = int(min(5, counts[counts > 0].min()))
        every = np.arange(len(current))
        if folds < 2:
            student = _predict_rows(_fit_streamed(X, current, C), X, every)
        else:
            student = np.empty_like(current)
            for train_rows, held in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(every,
                                                                                                              hard):
                student[held] = _predict_rows(_fit_streamed(X, current[train_rows], C, rows=train_rows), X, held)
        current = alpha * targets + (1.0 - alpha) * student
        head = _fit_streamed(X, current, C, start=head._solution)
    return head, current


def _shipped_int8(backbone: str, weights: str | Path | None, finetune_blocks: int, int8_calibration: str) -> bool:
    """Whether the student's int8 network is the one shipped for its backbone (no calibration measured)."""
    from visent.embed import load_backbone
    from visent.embed.onnx import packaged_int8

    if int8_calibration != "packaged" or weights is not None or finetune_blocks > 0:
        return False
    return packaged_int8(load_backbone(backbone.split("+")[0].strip()).key) is not None


def _provenance(dataset: Dataset) -> dict[str, Any]:
    """Where the training posts came from: the dataset and the parameters and counts of its stages."""
    return {"dataset": str(dataset.root),
            "stages": {k: {"params": v.get("params"), "counts": v.get("counts")}
                       for k, v in dataset.manifest["stages"].items()}}


def _student_backbone(config: ModelConfig, out: Path, weights: str | Path | None, rows: dict[str, Any],
                      targets: np.ndarray, *, finetune_blocks: int, finetune_epochs: int, batch_size: int,
                      seed: int, int8_calibration: str = "packaged") -> tuple[Any, list[dict[str, Any]] | None]:
    """The student's first backbone, as the model directory ``out`` will carry it: fine-tuned on the weak
    labels (``finetune_blocks > 0``), or loaded from a local ``weights`` file copied into ``out``, else the
    packaged weights; with the int8 runtime, its calibration (``int8_calibration``: the shipped one where there is
    one, else measured on the kept images). Fills in ``config``'s
    file names; returns the backbone and the fine-tuning history."""
    from visent.embed import load_backbone

    backbone = config.backbone
    model_backbone = load_backbone(backbone, weights=weights)
    finetune_report = None
    if finetune_blocks > 0:
        from visent.train.finetune import finetune

        result = finetune(model_backbone, rows["path"], targets, n_blocks=finetune_blocks, epochs=finetune_epochs,
                          batch_size=batch_size, seed=seed)
        weights_path = out / "backbone.pt"
        result.save_backbone(weights_path)
        config.backbone_weights = weights_path.name
        model_backbone = load_backbone(backbone, weights=weights_path)
        finetune_report = result.history
    elif weights is not None:
        # A model directory must carry its own weights: predict needs nothing else.
        weights_path = out / "backbone.pt"
        if Path(weights).resolve() != weights_path.resolve():
            atomic_write_bytes(weights_path, Path(weights).read_bytes())
        config.backbone_weights = weights_path.name
        model_backbone = load_backbone(backbone, weights=weights_path)

    if config.runtime == "onnx-int8":  # shipped or measured on the kept images, then carried by the model directory
        from visent.embed.features import calibration_images
        from visent.embed.onnx import CALIBRATION_FILE, INT8_RECIPE, calibrate_int8, canonical_ranges

        config.int8_recipe = INT8_RECIPE
        measured = calibrate_int8(
            model_backbone, lambda: calibration_images(model_backbone, rows["path"], rows["sha256"]), rows["sha256"],
            calibration=int8_calibration)
        atomic_write_bytes(out / CALIBRATION_FILE, canonical_ranges(measured))
        config.int8_calibration = CALIBRATION_FILE
    if config.runtime != "torch":
        _carry_graph(config, out, model_backbone)
    return model_backbone, finetune_report


GRAPH_FILE = "backbone.onnx"


def _carry_graph(config: ModelConfig, out: Path, backbone: Any) -> None:
    """Write the network the features are computed with (the fp32 export, or the int8 network of the model's
    calibration and recipe) into ``out``, so that predict runs it as it is: no PyTorch, export or quantisation."""
    from visent.embed.graph import GraphBackbone
    from visent.embed.onnx import calibration_id, onnx_model, quantize_int8

    calib_id = None
    if config.runtime == "onnx-int8":
        calibration = out / str(config.int8_calibration)
        source, calib_id = quantize_int8(backbone, calibration, recipe=config.int8_recipe), calibration_id(calibration)
    else:
        source = onnx_model(backbone)
    atomic_write_bytes(out / GRAPH_FILE, source.read_bytes())
    config.graph = GraphBackbone(out / GRAPH_FILE, backbone.spec, backbone.key, config.runtime, calib_id,
                                 config.int8_recipe).record()


def _calibrate(head: StudentHead, X: np.ndarray, targets: np.ndarray, labels: np.ndarray, val_fraction: float,
               seed: int, split_head: StudentHead | None = None, *, streamed: bool = False,
               rows: np.ndarray | None = None) -> dict[str, Any]:
    """Set ``head.temperature_``: fitted on the validation split's teacher targets by a head of the same C trained
    on the rest (no human labels; ``split_head`` when that head is at hand, as after choosing C). Returns the
    temperature and the validation ECE against the teacher's labels before and after. ``streamed`` and ``rows`` as
    for :func:`select_C`."""
    from visent.core.labels import CLASS_INDEX

    idx_train, idx_val = _teacher_split(labels, val_fraction, seed)
    y_val = np.array([CLASS_INDEX[label] for label in labels[idx_val]])
    if streamed:
        at_train, at_val = (idx_train, idx_val) if rows is None else (rows[idx_train], rows[idx_val])
        if split_head is None:
            split_head = _fit_streamed(X, targets[idx_train], head.C, rows=at_train)
        logits = _decision_rows(split_head, X, at_val)  # StudentHead.calibrate's, a block of rows at a time
        before = expected_calibration_error(y_val, softmax(logits / split_head.temperature_))
        split_head.temperature_ = fit_temperature(logits, as_targets(targets[idx_val]))
        after = expected_calibration_error(y_val, softmax(logits / split_head.temperature_))
        head.temperature_ = split_head.temperature_
        return {"temperature": head.temperature_, "val_ece_before": before, "val_ece_after": after,
                "n_val": len(idx_val)}
    if split_head is None:
        split_head = StudentHead(C=head.C).fit(X[idx_train], targets[idx_train])
    before = expected_calibration_error(y_val, split_head.predict_proba(X[idx_val]))
    split_head.calibrate(X[idx_val], targets[idx_val])
    after = expected_calibration_error(y_val, split_head.predict_proba(X[idx_val]))
    head.temperature_ = split_head.temperature_
    return {"temperature": head.temperature_, "val_ece_before": before, "val_ece_after": after, "n_val": len(idx_val)}


def _calibration_line(calibration: dict[str, Any] | None) -> str:
    if not calibration:
        return "none"
    return (f"temperature {calibration['temperature']:.3f}; ECE against teacher labels on validation "
            f"{calibration['val_ece_before']:.3f} → {calibration['val_ece_after']:.3f}")


def _figure(value: Any) -> str:
    """A validation figure to three decimals, or n/a."""
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"


def _name(source: Any) -> str:
    """The name of the source a dataset was ingested from, without the local folders above it."""
    return Path(str(source)).name if source else "?"


def model_card(config, metrics: dict[str, Any]) -> str:
    stages = metrics.get("stages", {})
    teach = stages.get("teach", {}) or {}
    clean = stages.get("clean", {}) or {}
    ingest = stages.get("ingest", {}) or {}
    chosen = metrics.get("validation", {}).get("chosen", {})
    lines = [
        "# visent model card",
        "",
        "A visual sentiment student trained **without human labels**: a textual teacher read the posts' text,",
        "its labels were cleaned, and this model learned to predict them from the image alone.",
        "",
    ]
    if metrics.get("warnings"):
        lines += ["**Warning: this model is likely of no use.** Train it on more posts and check it on human labels",
                  "(`visent evaluate`) before you rely on it:", "",
                  *(f"- {note}" for note in metrics["warnings"]), ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| backbone | `{config.backbone}`{' (fine-tuned)' if config.backbone_weights else ' (frozen, ImageNet)'}"
        + "".join(f" + `{name}` (frozen, ImageNet)" for name in getattr(config, "extra_backbones", [])) + " |",
        f"| test-time augmentation | {config.tta} |",
        f"| runtime | {config.runtime} |",
        f"| image signals | {', '.join(config.signals) or 'none'} |",
        f"| head | multinomial logistic, C = {readable(metrics.get('C'))}, {metrics.get('target')} targets"
        f" (temperature {readable(metrics.get('target_temperature', 1.0))}), self-training rounds "
        f"{(metrics.get('self_training') or {}).get('rounds', 0)} |",
        f"| calibration | {_calibration_line(metrics.get('calibration'))} |",
        f"| source | `{_name((ingest.get('params') or {}).get('source'))}` |",
        f"| posts ingested | {readable((ingest.get('counts') or {}).get('posts', '?'))} |",
        f"| teacher | `{(teach.get('params') or {}).get('teacher', '?')}` |",
        f"| cleaning | {readable(clean.get('params')) or '?'} |",
        f"| training images | {readable(metrics.get('n_train_posts'))} ({readable(metrics.get('class_counts'))}) |",
        f"| validation (teacher labels) | balanced accuracy {_figure(chosen.get('val_balanced_accuracy'))}, "
        f"agreement {_figure(chosen.get('val_agreement'))} |",
        f"| visent | {config.visent_version} |",
        "",
        "Counts per cleaning step:",
        "",
    ]
    for step, count in ordered(clean.get("counts"), ("posts", *CLEAN_STEPS, "kept")).items():
        lines.append(f"- {step}: {readable(count)}")
    lines += ["", "Validation figures compare the student with its teacher, not with people: prove the model on",
              "human-labelled images with `visent evaluate MODEL --benchmark SPEC`.", ""]
    return "\n".join(lines)
