"""Prove a student on human-labelled images.

Public surface: :func:`load_benchmark`, :func:`compute_metrics`, :func:`evaluate` (with ``folds``: the k-fold
protocol, and with ``finetune`` heads fine-tuned on the human labels from the student and from ImageNet
features, see :mod:`visent.evaluate.kfold`).

Protocol (T4SA, Serra et al.): on positive-vs-negative images, neutral images left out, the decision is the
larger of P(positive) and P(negative); binary accuracy, balanced accuracy and macro-F1 are reported. When the
benchmark has neutral images, 3-class macro-F1 and the 3×3 confusion matrix (argmax) are reported too.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from visent.labels import CLASS_INDEX, CLASSES, normalise_label
from visent.store import atomic_write_json

__all__ = ["Benchmark", "BenchmarkError", "load_benchmark", "compute_metrics", "evaluate"]


class BenchmarkError(Exception):
    """A benchmark spec cannot be read."""


@dataclass
class Benchmark:
    name: str
    paths: list[str]
    labels: list[str]
    skipped: list[str]  # lines or posts that could not be used, with the reason

    @property
    def has_neutral(self) -> bool:
        return "neutral" in self.labels


def _load_csv(path: Path) -> Benchmark:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [r for r in csv.reader(handle) if r and any(cell.strip() for cell in r)]
    if rows and normalise_label(rows[0][-1]) is None:
        header = [c.strip().lower() for c in rows[0]]
        rows = rows[1:]
        path_col = header.index("path") if "path" in header else 0
        label_col = header.index("label") if "label" in header else len(header) - 1
    else:
        path_col, label_col = 0, 1
    raw_labels = {r[label_col].strip() for r in rows if len(r) > label_col}
    binary_digits = raw_labels <= {"0", "1"}
    paths, labels, skipped = [], [], []
    for number, row in enumerate(rows, start=1):
        if len(row) <= max(path_col, label_col):
            skipped.append(f"{path}: row {number}: expected path,label")
            continue
        label = normalise_label(row[label_col], binary_digits=binary_digits)
        if label is None:
            skipped.append(f"{path}: row {number}: unknown label {row[label_col]!r}")
            continue
        image = Path(row[path_col].strip())
        paths.append(str(image if image.is_absolute() else path.parent / image))
        labels.append(label)
    return Benchmark(path.name, paths, labels, skipped)


def _load_mvsa(folder: Path) -> Benchmark:
    from visent.ingest.readers import find_mvsa_layout, read_mvsa_labels

    data_dir, labels_file = find_mvsa_layout(folder)
    if labels_file is None:
        raise BenchmarkError(f"{folder}: MVSA folder has no labelResultAll.txt, so it has no human labels to evaluate on")
    paths, labels, skipped = [], [], []
    for post_id, (_, image_label) in sorted(read_mvsa_labels(labels_file).items(), key=lambda kv: _numeric(kv[0])):
        if image_label is None:
            skipped.append(f"post {post_id}: annotators disagree on the image label")
            continue
        paths.append(str(data_dir / f"{post_id}.jpg"))
        labels.append(image_label)
    return Benchmark(folder.name, paths, labels, skipped)


def _numeric(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (1 << 62, text)


def load_benchmark(spec: str | Path) -> Benchmark:
    """A CSV of ``path,label`` (names, or 0/1 with 0 = negative) or an MVSA folder (its image labels)."""
    path = Path(spec)
    if path.is_dir():
        return _load_mvsa(path)
    if path.is_file():
        return _load_csv(path)
    raise BenchmarkError(f"{spec}: benchmark not found; give a CSV of path,label or an MVSA folder")


def _confidence_bins(probs: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-label confidence per row, its bin (0 … bins-1, equal widths over [0, 1]) and the bin edges."""
    confidence = probs.max(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return confidence, which, edges


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over confidence bins."""
    confidence, which, _ = _confidence_bins(probs, bins)
    correct = probs.argmax(axis=1) == labels
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def reliability_bins(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> list[dict[str, Any]]:
    """The reliability diagram behind :func:`expected_calibration_error` (the same bins): per confidence bin
    its edges, how many predictions fall in it, their mean top-label confidence and their accuracy (None for
    an empty bin). The count-weighted mean of |accuracy - confidence| is the ECE."""
    confidence, which, edges = _confidence_bins(probs, bins)
    correct = probs.argmax(axis=1) == labels
    rows = []
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count,
                     "confidence": float(confidence[mask].mean()) if count else None,
                     "accuracy": float(correct[mask].mean()) if count else None})
    return rows


def compute_metrics(labels: Sequence[str], probs: np.ndarray) -> dict[str, Any]:
    """Metrics of (n, 3) probabilities against label names (rows with NaN probabilities must be removed first)."""
    y = np.array([CLASS_INDEX[label] for label in labels], dtype=int)
    probs = np.asarray(probs, dtype=float)
    result: dict[str, Any] = {}
    binary = y != CLASS_INDEX["neutral"]
    if binary.any():
        yb = (y[binary] == CLASS_INDEX["positive"]).astype(int)
        pb = (probs[binary, CLASS_INDEX["positive"]] > probs[binary, CLASS_INDEX["negative"]]).astype(int)
        result["binary"] = {
            "n": int(binary.sum()),
            "n_positive": int(yb.sum()),
            "n_negative": int((1 - yb).sum()),
            "accuracy": float(accuracy_score(yb, pb)),
            "balanced_accuracy": float(balanced_accuracy_score(yb, pb)),
            "macro_f1": float(f1_score(yb, pb, average="macro", labels=[0, 1], zero_division=0)),
            "confusion": {"labels": ["negative", "positive"], "rows_true_cols_predicted":
                          confusion_matrix(yb, pb, labels=[0, 1]).tolist()},
        }
    pred = probs.argmax(axis=1)
    three = {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "confusion": {"labels": list(CLASSES), "rows_true_cols_predicted":
                      confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()},
        "ece": expected_calibration_error(y, probs),
        "reliability": {"bins": reliability_bins(y, probs)},
    }
    if (y == CLASS_INDEX["neutral"]).any():
        three["macro_f1"] = float(f1_score(y, pred, average="macro", labels=[0, 1, 2], zero_division=0))
        three["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
    result["three_class"] = three
    return result


def evaluate(model: Any, spec: str | Path, *, out: str | Path | None = None, batch_size: int = 32,
             folds: int | None = None, finetune: bool = False, seed: int = 0) -> dict[str, Any]:
    """Score ``model`` (a VisentModel or a model directory) on a benchmark; write JSON to ``out`` if given.

    ``folds`` (k ≥ 2) adds ``report["kfold"]``: the student per fold and, with ``finetune``, heads fine-tuned
    on the other folds' human labels from the student and from ImageNet features (mean ± std over folds).
    """
    from visent.model import VisentModel

    model = model if isinstance(model, VisentModel) else VisentModel.load(model)
    bench = load_benchmark(spec)
    if not bench.paths:
        raise BenchmarkError(f"{spec}: no labelled images found" + (f" ({bench.skipped[0]})" if bench.skipped else ""))
    probs, statuses = model.predict_proba(bench.paths, batch_size=batch_size)
    ok = ~np.isnan(probs).any(axis=1)
    report: dict[str, Any] = {
        "benchmark": str(spec),
        "model": str(model.directory),
        "n": len(bench.paths),
        "n_scored": int(ok.sum()),
        "n_unreadable": int((~ok).sum()),
        "unreadable": [f"{p}: {s}" for p, s, good in zip(bench.paths, statuses, ok) if not good][:50],
        "n_skipped_labels": len(bench.skipped),
    }
    if not ok.any():
        first = next((s for s in statuses if s.startswith("error")), "no images")
        raise BenchmarkError(f"{spec}: none of the {len(bench.paths)} images could be read ({first}); "
                             "relative paths in a CSV are read from the CSV's folder")
    scored_labels = [label for label, good in zip(bench.labels, ok) if good]
    report.update(compute_metrics(scored_labels, probs[ok]))
    if finetune and not folds:
        folds = 5
    if folds:
        from visent.evaluate.kfold import kfold_finetune

        if folds < 2:
            raise BenchmarkError(f"--folds must be at least 2, got {folds}")
        scored_paths = [path for path, good in zip(bench.paths, ok) if good]
        report["kfold"] = kfold_finetune(model, scored_paths, scored_labels, folds=folds, seed=seed,
                                         finetune=finetune, batch_size=batch_size)
    if out is not None:
        atomic_write_json(Path(out), report)
    return report
