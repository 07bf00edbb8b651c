"""Which ways of learning from noisy teacher labels lift the zero-label student? An ablation on cached features.

Same protocol as ``benchmarks/mvsa_zero_label.py`` (5-fold KFold by post id over MVSA-Single, seed 0; the
student is scored on the held-out fold's human *image* labels), but every expensive step is done once and kept
as ``.npy`` files under ``--work``:

* image features of every MVSA image (``embed_images(..., runtime="onnx")``, fp32 ONNX Runtime), per backbone;
* the teacher's probabilities for every post text (the texts read by the MVSA reader, as ``visent ingest``
  does; a text that is empty after normalisation gets no teacher label, as in the ``teach`` stage);
* per fold, which training posts survive the ``clean`` stage's image and duplicate checks (the real
  ``ingest → teach → clean`` run once per fold with thresholds 0; the confidence threshold is applied here);
* the human labels (``read_mvsa_labels``), used for evaluation ONLY: no variant ever sees them.

Groups of variants: (a) target temperature, (b) which posts are kept (per-class quantiles, thresholds from the
teacher's calibration, thresholds tuned on teacher labels), (c) every post with weights, (d) self-training rounds,
(e) confident learning (``pip install cleanlab``), (f) small-loss selection, (g) student temperature scaling,
(h) features (several backbones, multi-stage pooling), (tta) ten-crop test-time augmentation, (i) a second
teacher, the text inside the image (RapidOCR: ``pip install rapidocr-onnxruntime``), (best) combinations.

Each variant is a function ``(FoldData, Options) -> (n_test, 3) probabilities`` that may use the training
posts' features and teacher probabilities and nothing else. The table reports, mean ± std over the folds:
balanced accuracy and accuracy of positive vs negative images (neutral left out, decision = larger of
P(positive), P(negative)), 3-class macro-F1 and 3-class ECE, with the head trained on human labels (the probe)
as a reference line.

    python benchmarks/student_ablation.py ../shared/data/mvsa-single                 # every variant
    python benchmarks/student_ablation.py --variants baseline,self_training --features lite0
    python benchmarks/student_ablation.py --list

Logistic heads on ~2.5k × 1–4k features take seconds, so a full table takes minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# One BLAS thread: the heads are small, and on a shared 2-core machine threaded BLAS is several times slower.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from visent.core.labels import CLASS_INDEX, CLASSES
from visent.evaluate import compute_metrics
from visent.train import C_GRID, StudentHead
from visent.train.noisy import out_of_fold_proba, sharpen

from record import add_results_argument, save_results  # noqa: E402

FEATURE_SETS = {  # name -> backbones whose features are concatenated
    "lite0": ("efficientnet-lite0",),
    "lite2": ("efficientnet-lite2",),
    "lite0+lite2": ("efficientnet-lite0", "efficientnet-lite2"),
    "lite0-ms": ("efficientnet-lite0-ms",),
    "lite0-ms+lite2": ("efficientnet-lite0-ms", "efficientnet-lite2"),
    "lite0-ms+lite2-ms": ("efficientnet-lite0-ms", "efficientnet-lite2-ms"),
    "lite0, ten crops": ("efficientnet-lite0@crops",),  # test-time augmentation: 5 crops and their mirrors
}
THRESHOLD = 0.5  # the VADER teacher's confidence threshold in the clean stage (visent.teach.vader)


# --------------------------------------------------------------------------- cached inputs
def _slug(name: str) -> str:
    return name.replace(":", "_").replace("/", "_").replace("@", "-tta-")


def post_ids(data_dir: Path) -> list[str]:
    """Every MVSA post with an image, in the benchmark's order."""
    return sorted({p.stem for p in data_dir.glob("*.jpg")}, key=lambda s: (len(s), s))


def make_teacher(spec: str):
    """A teacher by name or directory; ``NAME@member=w,...`` re-weights the English route of a trained
    teacher (e.g. ``default@vader=1.0``: more of the lexicon teacher, for crawls unlike SemEval tweets)."""
    from visent.teach import load_teacher

    name, _, override = spec.partition("@")
    model = load_teacher(name)
    for item in filter(None, override.split(",")):
        member, _, weight = item.partition("=")
        model.routes["en"]["weights"][member] = float(weight)  # type: ignore[attr-defined]
    return model


def cached_teacher(mvsa: Path, ids: list[str], work: Path, teacher: str = "vader") -> np.ndarray:
    """(n, 3) teacher probabilities per post, NaN where the teacher gives none (empty text)."""
    path = work / f"teacher-{_slug(teacher)}.npy"
    if path.exists():
        return np.load(path)
    from visent.ingest.readers import read_mvsa
    from visent.teach import preprocess_tweet

    texts = {post.post_id: post.text for post in read_mvsa(mvsa) if not post.error}
    model = make_teacher(teacher)
    probs = np.full((len(ids), len(CLASSES)), np.nan)
    live = [i for i, post_id in enumerate(ids) if preprocess_tweet(texts.get(post_id, ""))]
    probs[live] = model.predict_proba([texts[ids[i]] for i in live])
    np.save(path, probs)
    return probs


def cached_features(data_dir: Path, ids: list[str], work: Path, backbone: str) -> np.ndarray:
    """(n, dim) float32 pooled features of every image (fp32 ONNX Runtime), NaN rows for unreadable images.
    ``backbone@crops`` (or ``@flip``) averages the features over test-time augmented views."""
    path = work / f"features-{_slug(backbone)}.npy"
    backbone, _, tta = backbone.partition("@")
    if path.exists():
        return np.load(path)
    from visent.embed import embed_images, load_backbone

    started = time.time()
    features, status = embed_images([data_dir / f"{i}.jpg" for i in ids], None, load_backbone(backbone, device="cpu"),
                                    runtime="onnx", tta=tta or "none")
    errors = [str(s) for s in status if s.failed]
    print(f"  features {backbone}: {features.shape} in {time.time() - started:.0f} s, {len(errors)} errors "
          f"{errors[:3]}", file=sys.stderr, flush=True)
    np.save(path, features)
    return features


def cached_image_text(data_dir: Path, ids: list[str], work: Path, teacher: str = "vader") -> np.ndarray:
    """(n, 3) the teacher's reading of the text written inside each image (RapidOCR), NaN where the image has none.
    A second teacher for the posts (its OCR texts are cached in visent's feature cache)."""
    path = work / f"image-text-{teacher}.npy"
    if path.exists():
        return np.load(path)
    from visent.signals.ocr import ocr_features
    from visent.teach import load_teacher

    values, _ = ocr_features([data_dir / f"{i}.jpg" for i in ids], teacher=load_teacher(teacher))
    probs = np.where((values[:, :1] > 0), values[:, 2:], np.nan)
    np.save(path, probs)
    return probs


def cached_human_labels(mvsa: Path, ids: list[str], work: Path) -> np.ndarray:
    """Human image label index per post (-1 where there is none). Evaluation only."""
    path = work / "human-image-labels.npy"
    if path.exists():
        return np.load(path)
    from visent.ingest.readers import read_mvsa_labels

    labels = read_mvsa_labels(mvsa / "labelResultAll.txt")
    y = np.array([CLASS_INDEX.get(labels.get(i, (None, None))[1] or "", -1) for i in ids], dtype=np.int64)
    np.save(path, y)
    return y


def cached_fold_rows(mvsa: Path, ids: list[str], train_ids: list[str], work: Path, fold: int) -> np.ndarray:
    """Indices (into ``ids``) of the fold's training posts that pass the clean stage's checks before the
    confidence threshold (ingest errors, bad images, exact and near duplicates, no teacher label), in the order
    ``visent train`` reads them. The real stages run once (thresholds 0, so no post is dropped for confidence;
    which duplicate is kept does not depend on the thresholds)."""
    path = work / f"fold{fold}-rows.npy"
    if path.exists():
        return np.load(path)
    from visent.clean import clean
    from visent.core.store import Dataset
    from visent.ingest import ingest
    from visent.teach import teach

    crawl = work / "crawl-without-labels"  # the pipeline never sees the labels file
    crawl.mkdir(parents=True, exist_ok=True)
    if not (crawl / "data").exists():
        os.symlink((mvsa / "data").resolve(), crawl / "data")
    dataset_dir = work / f"fold{fold}-dataset"
    ingest(crawl, dataset_dir, ids=set(train_ids))
    store = Dataset(dataset_dir)
    teach(store, "vader")
    counts = clean(store, thresholds={name: 0.0 for name in CLASSES})
    position = {post_id: i for i, post_id in enumerate(ids)}
    rows = np.array([position[r["post_id"]] for r in store.posts().to_pylist() if r.get("clean_status") == "kept"],
                    dtype=np.int64)
    print(f"  fold {fold}: clean {counts}", file=sys.stderr, flush=True)
    np.save(path, rows)
    return rows


# --------------------------------------------------------------------------- folds and options
@dataclass
class FoldData:
    """What a variant may use: the training posts' features and teacher probabilities (and test features)."""

    X: np.ndarray        # (n_train, d) features of the training posts that passed the image/duplicate checks
    teacher: np.ndarray  # (n_train, 3) teacher probabilities of those posts
    X_test: np.ndarray   # (n_test, d) features of the held-out posts with a human image label
    seed: int = 0
    image_text: np.ndarray | None = None  # (n_train, 3) the teacher on the text inside the image, NaN without text


@dataclass
class Options:
    threshold: float = THRESHOLD
    temperature: float = 1.0
    alpha: float = 0.5
    rounds: int = 1
    low_weight: float = 0.3
    quantile: float = 0.8
    keep_fraction: float = 0.8
    extra: dict = field(default_factory=dict)


def kept_mask(teacher: np.ndarray, threshold: float | dict[int, float] = THRESHOLD) -> np.ndarray:
    """The clean stage's confidence rule (float32 comparison, as in ``visent.clean.stage``)."""
    label = teacher.argmax(axis=1)
    conf = teacher.max(axis=1)
    if isinstance(threshold, dict):
        cut = np.array([threshold[k] for k in label])
    else:
        cut = np.full(len(label), threshold)
    return np.float32(conf) >= np.float32(cut)


def select_C(X: np.ndarray, targets: np.ndarray, seed: int = 0, weights: np.ndarray | None = None,
             val_fraction: float = 0.2, grid: tuple[float, ...] = C_GRID) -> float:
    """``visent.train.select_C``: C by cross-entropy against the teacher on a 20% teacher-label split."""
    from visent.train import select_C as visent_select_C

    labels = np.array(CLASSES)[targets.argmax(axis=1)]
    if weights is None:
        return visent_select_C(X, targets, labels, val_fraction, seed, grid)[0]
    stratify = labels if min(np.unique(labels, return_counts=True)[1]) >= 2 else None
    tr, va = train_test_split(np.arange(len(X)), test_size=val_fraction, random_state=seed, stratify=stratify)
    best, best_ce = grid[0], np.inf
    for C in grid:
        probs = fit_head(X[tr], targets[tr], C, weights[tr]).predict_proba(X[va])
        ce = -np.average(np.sum(targets[va] * np.log(np.clip(probs, 1e-12, 1)), axis=1), weights=weights[va])
        if ce < best_ce:
            best, best_ce = C, ce
    return best


class WeightedHead(StudentHead):
    """StudentHead with per-example weights (multiplying its balanced class weights)."""

    sample_weight: np.ndarray | None = None

    def fit(self, X, y):  # type: ignore[override]
        if self.sample_weight is None:
            return super().fit(X, y)
        from sklearn.linear_model import LogisticRegression

        from visent.model.head import as_targets

        X = np.asarray(X, dtype=np.float64)
        targets = as_targets(y)
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0) + 1e-6
        Z = (X - self.mean_) / self.scale_
        hard = targets.argmax(axis=1)
        counts = np.bincount(hard, weights=self.sample_weight, minlength=3)
        per_class = np.where(counts > 0, self.sample_weight.sum() / (np.count_nonzero(counts) * np.maximum(counts, 1e-12)), 0.0)
        example = per_class[hard] * self.sample_weight
        rows, cols = np.nonzero(targets > 0)
        model = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=1e-5)
        model.fit(Z[rows], cols, sample_weight=targets[rows, cols] * example[rows])
        self.coef_ = np.zeros((3, X.shape[1]))
        self.intercept_ = np.full(3, -30.0)
        seen = model.classes_.astype(int)
        self.coef_[seen], self.intercept_[seen] = model.coef_, model.intercept_
        self.classes_, self.n_features_in_, self.temperature_ = np.array(CLASSES), X.shape[1], 1.0
        return self


def fit_head(X: np.ndarray, targets: np.ndarray, C: float, weights: np.ndarray | None = None) -> StudentHead:
    if weights is None:
        return StudentHead(C=C).fit(X, targets)
    head = WeightedHead(C=C)
    head.sample_weight = np.asarray(weights, dtype=np.float64)
    return head.fit(X, targets)




def oof_proba(X: np.ndarray, targets: np.ndarray, C: float, weights: np.ndarray | None = None, folds: int = 5,
              seed: int = 0) -> np.ndarray:
    """Out-of-fold student probabilities on the training posts (each post predicted by a head that never saw it)."""
    if weights is None:
        return out_of_fold_proba(X, targets, C, folds=folds, seed=seed)
    out = np.zeros_like(targets)
    labels = targets.argmax(axis=1)
    for tr, va in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(X, labels):
        out[va] = fit_head(X[tr], targets[tr], C, weights[tr]).predict_proba(X[va])
    return out


# --------------------------------------------------------------------------- the steps variants are made of
def per_class_quantile(teacher: np.ndarray, keep: float) -> np.ndarray:
    """(b) keep the ``keep`` most confident fraction of each teacher class."""
    label, conf = teacher.argmax(axis=1), teacher.max(axis=1)
    mask = np.zeros(len(label), dtype=bool)
    for k in range(len(CLASSES)):
        members = np.flatnonzero(label == k)
        if members.size:
            cut = np.quantile(conf[members], 1.0 - keep)
            mask[members[conf[members] >= cut]] = True
    return mask


def per_class_precision(teacher: np.ndarray, precision: float) -> np.ndarray:
    """(b) per-class thresholds from the teacher's calibration: the lowest threshold of each class at which the
    kept posts' mean confidence (the calibrated teacher's expected precision) still reaches ``precision``."""
    label, conf = teacher.argmax(axis=1), teacher.max(axis=1)
    mask = np.zeros(len(label), dtype=bool)
    for k in range(len(CLASSES)):
        members = np.flatnonzero(label == k)
        if not members.size:
            continue
        order = members[np.argsort(-conf[members])]
        running = np.cumsum(conf[order]) / np.arange(1, order.size + 1)
        n_keep = max(int(np.sum(running >= precision)), min(order.size, 10))
        # the running mean decreases, so the first n_keep posts are those that keep it above `precision`
        mask[order[:n_keep]] = True
    return mask


def per_class_tuned(X: np.ndarray, teacher: np.ndarray, seed: int,
                    grid: tuple[float, ...] = (0.4, 0.45, 0.5, 0.55, 0.6, 0.65)) -> np.ndarray:
    """(b) one threshold per class chosen on a 20% teacher-label validation split: coordinate search that
    maximises the student's balanced accuracy against the teacher labels of the validation posts the default
    rule keeps (confidence ≥ 0.5). No human label is used."""
    label = teacher.argmax(axis=1)
    tr, va = train_test_split(np.arange(len(X)), test_size=0.2, random_state=seed, stratify=label)
    va = va[kept_mask(teacher[va])]
    from sklearn.metrics import balanced_accuracy_score

    def score(thresholds: dict[int, float]) -> float:
        keep = tr[kept_mask(teacher[tr], thresholds)]
        head = fit_head(X[keep], teacher[keep], 3e-4)
        return balanced_accuracy_score(label[va], head.predict_proba(X[va]).argmax(axis=1))

    chosen = {k: THRESHOLD for k in range(len(CLASSES))}
    best = score(chosen)
    for k in range(len(CLASSES)):
        for t in grid:
            trial = {**chosen, k: t}
            s = score(trial)
            if s > best + 1e-9:
                best, chosen = s, trial
    return kept_mask(teacher, chosen)


def confidence_weights(teacher: np.ndarray, mask: np.ndarray, low_weight: float | str) -> np.ndarray:
    """(c) every post trains: those the rule keeps get weight 1, the others ``low_weight`` (a number), or
    every post a weight that grows with the teacher's confidence ("linear": (conf - 1/3) / (2/3))."""
    if low_weight == "linear":
        return np.clip((teacher.max(axis=1) - 1 / 3) / (2 / 3), 0.02, 1.0)
    return np.where(mask, 1.0, float(low_weight))


def confident_learning(X: np.ndarray, targets: np.ndarray, C: float, seed: int) -> np.ndarray:
    """(e) keep-mask after dropping the posts that cleanlab's confident learning (Northcutt et al., 2021) finds
    mislabelled, from out-of-fold student predictions. Needs ``pip install cleanlab``."""
    from cleanlab.filter import find_label_issues

    probs = oof_proba(X, targets, C, seed=seed)
    return ~find_label_issues(targets.argmax(axis=1), probs, filter_by="prune_by_noise_rate")


def small_loss(X: np.ndarray, targets: np.ndarray, C: float, seed: int, keep: float) -> np.ndarray:
    """(f) keep, per teacher class, the ``keep`` fraction of posts with the smallest out-of-fold loss."""
    probs = oof_proba(X, targets, C, seed=seed)
    loss = -np.sum(targets * np.log(np.clip(probs, 1e-12, 1)), axis=1)
    labels = targets.argmax(axis=1)
    mask = np.zeros(len(labels), dtype=bool)
    for k in range(len(CLASSES)):
        members = np.flatnonzero(labels == k)
        if members.size:
            mask[members[loss[members] <= np.quantile(loss[members], keep)]] = True
    return mask


# --------------------------------------------------------------------------- variants
@dataclass
class Variant:
    """A student recipe. Steps run in this order: targets (temperature), training rows and weights
    (selection, low_weight), noise filtering (filter), fit, self-training rounds, calibration."""

    name: str
    group: str
    features: str | None = None        # None: the run's --features
    temperature: float = 1.0
    selection: str = "threshold"       # threshold | quantile:<q> | precision:<p> | tuned | all | threshold:<t>
    low_weight: float | str | None = None  # (c) weight of the posts the selection drops (None: dropped)
    neutral: bool = True               # False: train on negative and positive teacher labels only
    filter: str | None = None          # cleanlab | small-loss:<keep>
    rounds: int = 0                    # (d) self-training rounds
    alpha: float = 0.5                 # (d) weight of the teacher in the relabelled targets
    relabel: str = "oof"               # (d) student probabilities in-sample ("fit") or out-of-fold ("oof")
    calibrate: bool = False            # (g) temperature-scale the student's logits on a teacher-label split
    c_grid: tuple[float, ...] = C_GRID  # regularisation grid (train's C_GRID by default)
    image_teacher: str | None = None   # (i) a second teacher, the text inside the image: mix:<w> | agree


def run_variant(fd: FoldData, v: Variant) -> dict:
    seed = fd.seed
    teacher = fd.teacher
    agree = np.ones(len(teacher), dtype=bool)
    if v.image_teacher:  # (i) where the image carries text, the teacher also reads it
        kind, _, arg = v.image_teacher.partition(":")
        has_text = np.isfinite(fd.image_text).all(axis=1)
        if kind == "mix":
            teacher = teacher.copy()
            teacher[has_text] = (1 - float(arg)) * teacher[has_text] + float(arg) * fd.image_text[has_text]
        elif kind == "agree":
            agree = ~has_text | (fd.image_text.argmax(axis=1) == teacher.argmax(axis=1))
        else:
            raise ValueError(f"unknown image teacher {v.image_teacher!r}")
    targets = sharpen(teacher, v.temperature).copy()  # (a)
    kind, _, arg = v.selection.partition(":")
    if kind == "threshold":
        mask = kept_mask(teacher, float(arg) if arg else THRESHOLD)
    elif kind == "quantile":
        mask = per_class_quantile(teacher, float(arg))
    elif kind == "precision":
        mask = per_class_precision(teacher, float(arg))
    elif kind == "tuned":
        mask = per_class_tuned(fd.X, teacher, seed)
    elif kind == "all":
        mask = np.ones(len(teacher), dtype=bool)
    else:
        raise ValueError(f"unknown selection {v.selection!r}")
    mask &= agree
    weights = None
    if v.low_weight is not None:
        weights = confidence_weights(teacher, mask, v.low_weight)
        mask = np.ones(len(teacher), dtype=bool)
    if not v.neutral:
        mask &= teacher.argmax(axis=1) != CLASS_INDEX["neutral"]
    rows = np.flatnonzero(mask)
    X, T = fd.X[rows], targets[rows]
    W = None if weights is None else weights[rows]
    C = select_C(X, T, seed, W, grid=v.c_grid)
    if v.filter:
        kind, _, arg = v.filter.partition(":")
        keep = small_loss(X, T, C, seed, float(arg)) if kind == "small-loss" else confident_learning(X, T, C, seed)
        X, T, W = X[keep], T[keep], None if W is None else W[keep]
        C = select_C(X, T, seed, W, grid=v.c_grid)
    head = fit_head(X, T, C, W)
    base = T
    for _ in range(v.rounds):
        student = oof_proba(X, T, C, W, seed=seed) if v.relabel == "oof" else head.predict_proba(X)
        T = v.alpha * base + (1 - v.alpha) * student
        head = fit_head(X, T, C, W)
    out = {"probs": head.predict_proba(fd.X_test), "n_train": int(len(X)), "C": C}
    if v.calibrate:
        labels = T.argmax(axis=1)
        tr, va = train_test_split(np.arange(len(X)), test_size=0.2, random_state=seed, stratify=labels)
        split_head = fit_head(X[tr], T[tr], C, None if W is None else W[tr]).calibrate(X[va], T[va])
        out["uncalibrated"] = out["probs"]
        head.temperature_ = out["temperature"] = split_head.temperature_
        out["probs"] = head.predict_proba(fd.X_test)
    return out


VARIANTS: list[Variant] = [
    Variant("baseline (threshold 0.5, soft, T=1)", "baseline"),
    Variant("temperature T=0.5 (sharper)", "a", temperature=0.5),
    Variant("temperature T=2 (flatter)", "a", temperature=2.0),
    Variant("per-class top 80% most confident", "b", selection="quantile:0.8"),
    Variant("per-class top 60% most confident", "b", selection="quantile:0.6"),
    Variant("per-class threshold at expected precision 0.65", "b", selection="precision:0.65"),
    Variant("per-class threshold at expected precision 0.70", "b", selection="precision:0.7"),
    Variant("per-class thresholds tuned on teacher-label val", "b", selection="tuned"),
    Variant("every post, dropped ones weight 0.3", "c", low_weight=0.3),
    Variant("every post, dropped ones weight 0.1", "c", low_weight=0.1),
    Variant("every post, weight linear in confidence", "c", selection="all", low_weight="linear"),
    Variant("no neutral teacher labels", "c", neutral=False),
    Variant("self-training 1 round, alpha 0.5, in-sample", "d", rounds=1, alpha=0.5, relabel="fit"),
    Variant("self-training 1 round, alpha 0.5, out-of-fold", "d", rounds=1, alpha=0.5),
    Variant("self-training 2 rounds, alpha 0.5, out-of-fold", "d", rounds=2, alpha=0.5),
    Variant("self-training 3 rounds, alpha 0.5, out-of-fold", "d", rounds=3, alpha=0.5),
    Variant("self-training 1 round, alpha 0.3, out-of-fold", "d", rounds=1, alpha=0.3),
    Variant("self-training 1 round, alpha 0.7, out-of-fold", "d", rounds=1, alpha=0.7),
    Variant("confident learning (cleanlab prune_by_noise_rate)", "e", filter="cleanlab"),
    Variant("small-loss selection, keep 80% per class", "f", filter="small-loss:0.8"),
    Variant("small-loss selection, keep 60% per class", "f", filter="small-loss:0.6"),
    Variant("student temperature scaling on teacher-label val", "g", calibrate=True),
    Variant("C grid extended down to 1e-5", "x", c_grid=(1e-5, 3e-5) + C_GRID),
    Variant("features Lite0 + Lite2", "h", features="lite0+lite2"),
    Variant("features Lite0 multi-stage", "h", features="lite0-ms"),
    Variant("features Lite0 multi-stage + Lite2", "h", features="lite0-ms+lite2"),
    Variant("features Lite0 multi-stage + Lite2 multi-stage", "h", features="lite0-ms+lite2-ms"),
    Variant("features Lite0, ten-crop test-time augmentation", "tta", features="lite0, ten crops"),
    Variant("second teacher: the text in the image mixed in, weight 0.5", "i", image_teacher="mix:0.5"),
    Variant("second teacher: drop posts where the image's text disagrees", "i", image_teacher="agree"),
    Variant("Lite0 multi-stage + Lite2, temperature T=0.5", "best", features="lite0-ms+lite2", temperature=0.5),
    Variant("Lite0 multi-stage + Lite2, self-training 2 rounds", "best", features="lite0-ms+lite2", rounds=2),
]


# --------------------------------------------------------------------------- driver
def prepare(mvsa: Path, work: Path, feature_sets: list[str], folds: int, seed: int, image_text: bool = False,
            teacher_name: str = "vader") -> dict:
    """Everything the variants need, computed once and cached under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    data_dir = mvsa / "data"
    ids = post_ids(data_dir)
    teacher = cached_teacher(mvsa, ids, work, teacher_name)
    human = cached_human_labels(mvsa, ids, work)
    backbones = sorted({b for name in feature_sets for b in FEATURE_SETS[name]})
    features = {b: cached_features(data_dir, ids, work, b) for b in backbones}
    splits = list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(ids))
    rows = [cached_fold_rows(mvsa, ids, [ids[i] for i in train_idx], work, k) for k, (train_idx, _) in enumerate(splits)]
    return {"ids": ids, "teacher": teacher, "human": human, "features": features, "splits": splits, "rows": rows,
            "image_text": cached_image_text(data_dir, ids, work) if image_text else None}


def feature_matrix(data: dict, name: str) -> np.ndarray:
    return np.concatenate([data["features"][b] for b in FEATURE_SETS[name]], axis=1)


def fold_data(data: dict, fold: int, features: str, seed: int) -> tuple[FoldData, np.ndarray, np.ndarray]:
    """The fold's training inputs, and (evaluation only) the test posts' human labels and the probe's inputs."""
    F = feature_matrix(data, features)
    rows = data["rows"][fold]
    rows = rows[np.isfinite(F[rows]).all(axis=1) & np.isfinite(data["teacher"][rows]).all(axis=1)]
    train_idx, test_idx = data["splits"][fold]
    test = test_idx[(data["human"][test_idx] >= 0) & np.isfinite(F[test_idx]).all(axis=1)]
    fd = FoldData(X=F[rows], teacher=data["teacher"][rows], X_test=F[test], seed=seed,
                  image_text=None if data["image_text"] is None else data["image_text"][rows])
    return fd, test, train_idx


def scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    metrics = compute_metrics([CLASSES[k] for k in y], probs)
    return {"balanced_accuracy": metrics["binary"]["balanced_accuracy"], "binary_accuracy": metrics["binary"]["accuracy"],
            "macro_f1_3class": metrics["three_class"]["macro_f1"], "ece": metrics["three_class"]["ece"]}


def probe(data: dict, fold: int, features: str, C: float) -> dict[str, float]:
    """Reference only: the same head trained on the training fold's human image labels."""
    F = feature_matrix(data, features)
    train_idx, test_idx = data["splits"][fold]
    tr = train_idx[(data["human"][train_idx] >= 0) & np.isfinite(F[train_idx]).all(axis=1)]
    te = test_idx[(data["human"][test_idx] >= 0) & np.isfinite(F[test_idx]).all(axis=1)]
    head = StudentHead(C=C).fit(F[tr], data["human"][tr])
    return scores(head.predict_proba(F[te]), data["human"][te])


def summarise(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(statistics.pstdev(values))


def print_teacher_agreement(data: dict) -> None:
    """Evaluation only: how often each teacher's reading agrees with the human image label, on the photos with
    text, positive vs negative (decision = larger of the two probabilities) and in three classes."""
    human, post, image = data["human"], data["teacher"], data["image_text"]
    both = np.isfinite(image).all(axis=1) & np.isfinite(post).all(axis=1) & (human >= 0)
    binary = both & (human != CLASS_INDEX["neutral"])
    print(f"  teachers on the {int(both.sum())} labelled photos with text ({binary.sum()} positive or negative):",
          file=sys.stderr)
    for name, probs in (("post text", post), ("image text", image)):
        decision = np.where(probs[binary, 2] > probs[binary, 0], 2, 0)
        print(f"    {name}: binary agreement {np.mean(decision == human[binary]):.4f}, 3-class agreement "
              f"{np.mean(probs[both].argmax(axis=1) == human[both]):.4f}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mvsa", type=Path, nargs="?", default=Path(__file__).resolve().parents[2] / "shared/data/mvsa-single")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "visent-ablation",
                        help="cache of features, teacher probabilities and fold rows (.npy)")
    parser.add_argument("--features", default="lite0", choices=sorted(FEATURE_SETS),
                        help="features of the variants that do not name their own")
    parser.add_argument("--variants", default="all",
                        help="comma-separated groups (baseline, a..i, tta, best) or whole names (see --list); 'all' for every one")
    parser.add_argument("--teacher", default="vader",
                        help="teacher of the posts: a name, a teacher directory, or NAME@member=w,... (re-weighted "
                             "English route of a trained teacher)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--json", type=Path, help="write every fold's figures here")
    add_results_argument(parser, "student_ablation")
    args = parser.parse_args()
    os.environ.setdefault("VISENT_PROGRESS", "0")

    if args.list:
        for v in VARIANTS:
            print(f"{v.group:<9} {v.name}")
        return
    wanted = [w.strip() for w in args.variants.split(",") if w.strip()]
    chosen = [v for v in VARIANTS if "all" in wanted or v.group in wanted or v.name in wanted]
    if not chosen:
        parser.error(f"no variant matches {args.variants!r}; see --list")
    if not any(v.group == "baseline" for v in chosen):
        chosen.insert(0, VARIANTS[0])
    feature_sets = sorted({v.features or args.features for v in chosen})
    data = prepare(args.mvsa, args.work, feature_sets, args.folds, args.seed,
                   image_text=any(v.image_teacher for v in chosen), teacher_name=args.teacher)

    if data["image_text"] is not None:
        print_teacher_agreement(data)
    results: dict[str, dict] = {}
    probe_rows: dict[str, list[dict]] = {}
    for v in chosen:
        features = v.features or args.features
        started = time.time()
        folds = []
        with_probe = v.group == "baseline" or features not in probe_rows
        for fold in range(args.folds):
            fd, test, _ = fold_data(data, fold, features, args.seed)
            out = run_variant(fd, v)
            row = {"fold": fold, "n_train": out["n_train"], "C": out["C"], **scores(out["probs"], data["human"][test])}
            if "uncalibrated" in out:
                row["ece_before"] = scores(out["uncalibrated"], data["human"][test])["ece"]
                row["temperature"] = out["temperature"]
            if with_probe:
                probe_rows.setdefault(features, []).append(probe(data, fold, features, out["C"]))
            folds.append(row)
        results[v.name] = {"group": v.group, "features": features, "folds": folds, "seconds": round(time.time() - started, 1)}
        print(f"  {v.group:<8} {v.name}: bal_acc {summarise([f['balanced_accuracy'] for f in folds])[0]:.4f} "
              f"({time.time() - started:.0f} s)", file=sys.stderr, flush=True)

    header = "| variant | features | train posts | balanced accuracy | binary accuracy | 3-class macro-F1 | 3-class ECE |"
    print(f"\n{args.folds}-fold zero-label MVSA, mean ± std over folds (human image labels for evaluation only)\n")
    print(header)
    print("|---|---|---|---|---|---|---|")
    table = []
    for name, result in results.items():
        folds = result["folds"]
        cells = [f"{m:.4f} ± {s:.4f}" for m, s in (summarise([f[k] for f in folds]) for k in
                                                   ("balanced_accuracy", "binary_accuracy", "macro_f1_3class", "ece"))]
        if "ece_before" in folds[0]:
            before = summarise([f["ece_before"] for f in folds])
            cells[3] = f"{before[0]:.4f} → {cells[3]} (T={np.mean([f['temperature'] for f in folds]):.2f})"
        n_train = round(np.mean([f["n_train"] for f in folds]))
        print(f"| {result['group']}: {name} | {result['features']} | {n_train} | " + " | ".join(cells) + " |")
        table.append([result["group"], name, result["features"], str(n_train), *cells])
    for features, rows in probe_rows.items():
        cells = [f"{m:.4f} ± {s:.4f}" for m, s in (summarise([r[k] for r in rows]) for k in
                                                   ("balanced_accuracy", "binary_accuracy", "macro_f1_3class", "ece"))]
        print(f"| reference: head on human image labels (probe) | {features} | | " + " | ".join(cells) + " |")
        table.append(["reference", "head on human image labels (probe)", features, "", *cells])
    if args.json:
        args.json.write_text(json.dumps({"results": results, "probe": probe_rows}, indent=2))
    save_results(args.results, [{"variant": name, **result} for name, result in results.items()],
                 columns=["group", "recipe", "features", "train posts", "balanced accuracy", "binary accuracy",
                          "3-class macro-F1", "ECE"], table=table, probe=probe_rows, teacher=args.teacher)


if __name__ == "__main__":
    main()
