"""``visent label suggest``: which images a person should label next.

Human labels are what a user pays for, and a random draw spends most of them on images the student already gets
right. :func:`suggest` scores a pool of unlabelled images with the student (one embedding pass, through the
model's own feature path and its feature cache) and picks ``n`` of them with a strategy of :data:`STRATEGIES`:

* ``uncertainty`` (the default): the images the student is least sure of (margin sampling: 1 - (p1 - p2), where
  p1 and p2 are its two largest probabilities), spread over the pool and over the classes. The pool's
  L2-normalised features are grouped by k-means (seeded) into about ``n`` clusters, and the picks are made in
  turns, one predicted class per turn (negative, neutral, positive, negative, ...; a class with no image left
  drops out of the turns): in its turn a class takes, among the images predicted as it, one from the cluster
  picked fewest times so far, the most uncertain there (ties: the earlier image in the pool). So every cluster
  gives one image before any gives a second, and a class the student seldom predicts gets its share of the
  picks while it has images, however rare it is in the pool.
* ``entropy``: the same turns and clusters, the images ranked by the entropy of their probabilities instead.
* ``badge``: images the student doubts and that are unlike each other (BADGE, Ash et al., ICLR 2020). Each image
  becomes the gradient its label would give a linear head at the student's own prediction, (p - onehot(argmax p))
  outer its features (standardised, on their first principal components); its length is the student's doubt, its
  direction what the image would teach. The picks are k-means++ seeding over those gradients (seeded): the longest
  first, each next one drawn with probability proportional to its squared distance to the nearest pick so far. The
  gradient carries the predicted class, so the picks spread over the classes about as the pool does, with no turns:
  a class the student seldom predicts gets no more than its share. Measured against the other strategies
  (docs/results.md, "Which images to label"), it bought ``visent adapt`` as much as or a little more than
  ``uncertainty`` at 100 to 400 labels on both benchmarks, within the spread of the draws, and not reliably more
  than a random draw.
* ``random``: a seeded uniform draw, the control to compare the others with.

Images already labelled (the CSVs given as ``labelled``, read as ``visent adapt --labels`` reads them) are left
out by the SHA-256 of their bytes, so a copy under another name is left out too; an image found twice in the pool
is offered once. Images that cannot be read are never suggested: they are listed in ``skipped`` with the reason.

:func:`write_csv` writes the picks as a CSV whose ``label`` column is empty, to be filled in (negative, neutral,
positive) and given to ``visent adapt --labels``; rows left empty are skipped there.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from visent.core.errors import InputError, UsageError
from visent.core.labels import CLASSES, read_labelled_images
from visent.core.registry import Registry
from visent.core.store import Dataset, atomic_open
from visent.embed.cached import file_hashes
from visent.model import VisentModel
from visent.model.inputs import expand_inputs

__all__ = ["STRATEGIES", "Suggestion", "Suggestions", "pool_items", "suggest", "write_csv"]


@dataclass(frozen=True)
class Suggestion:
    """One image to label: its ``rank`` (1 first), ``path``, the student's ``predicted`` class and probabilities,
    the strategy's ``score`` (larger: more worth a label), the student's ``margin`` (p1 - p2) and ``why``, in
    words."""

    rank: int
    path: str
    predicted: str
    p_negative: float
    p_neutral: float
    p_positive: float
    score: float
    margin: float
    why: str

    @property
    def probabilities(self) -> tuple[float, float, float]:
        return self.p_negative, self.p_neutral, self.p_positive


@dataclass
class Suggestions:
    """The picks of :func:`suggest`, best first, and what became of the rest of the pool: ``skipped`` (path,
    reason) for images that cannot be read, ``excluded`` for those already labelled, ``duplicates`` for images
    found earlier in the pool under another name."""

    rows: list[Suggestion]
    strategy: str
    seed: int
    pool: int  # images in the pool as given
    candidates: int  # readable, unlabelled, distinct images the picks were made from
    skipped: list[tuple[str, str]] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    @property
    def counts(self) -> dict[str, int]:
        """How many images were suggested, left out as labelled, found twice and could not be read."""
        return {"pool": self.pool, "suggested": len(self.rows), "labelled": len(self.excluded),
                "duplicates": len(self.duplicates), "unreadable": len(self.skipped)}


# ----------------------------------------------------------------------------------------------------- strategies

Pick = tuple[int, float, str]  # index among the candidates, score, why
Strategy = Callable[[np.ndarray, np.ndarray, int, int], list[Pick]]
"""``(probs (m, 3), features (m, d), n, seed) -> picks``, at most ``n``, best first."""

STRATEGIES: Registry[Strategy] = Registry("suggestion strategy")


def margins(probs: np.ndarray) -> np.ndarray:
    """p1 - p2 per row: the student's largest probability less its second largest (0: torn between two classes)."""
    top = np.sort(probs, axis=1)
    return top[:, -1] - top[:, -2]


def entropies(probs: np.ndarray) -> np.ndarray:
    """The entropy of each row's probabilities over that of the uniform distribution: 0 sure, 1 no idea."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1) / np.log(probs.shape[1])


@STRATEGIES.register("uncertainty", "the images the student is least sure of (margin), spread over clusters and "
                                    "predicted classes")
def uncertainty_strategy() -> Strategy:
    """The images the student is least sure of (margin), spread over clusters and predicted classes."""
    def pick(probs: np.ndarray, features: np.ndarray, n: int, seed: int) -> list[Pick]:
        return diverse_picks(probs, features, n, seed, 1.0 - margins(probs), "margin", margins(probs))

    return pick


@STRATEGIES.register("entropy", "the images whose probabilities are most spread (entropy), spread over clusters "
                                "and predicted classes")
def entropy_strategy() -> Strategy:
    """The images whose probabilities are most spread (entropy), spread over clusters and predicted classes."""
    def pick(probs: np.ndarray, features: np.ndarray, n: int, seed: int) -> list[Pick]:
        scores = entropies(probs)
        return diverse_picks(probs, features, n, seed, scores, "entropy", scores)

    return pick


@STRATEGIES.register("badge", "uncertain and unlike each other: k-means++ over the student's gradient embeddings "
                              "(BADGE)")
def badge_strategy() -> Strategy:
    """Uncertain and unlike each other: k-means++ seeding over the student's gradient embeddings (BADGE, Ash et
    al., ICLR 2020)."""
    def pick(probs: np.ndarray, features: np.ndarray, n: int, seed: int) -> list[Pick]:
        return badge_picks(probs, features, n, seed)

    return pick


@STRATEGIES.register("random", "a seeded uniform draw (the control)")
def random_strategy() -> Strategy:
    """A seeded uniform draw (the control)."""
    def pick(probs: np.ndarray, features: np.ndarray, n: int, seed: int) -> list[Pick]:
        order = np.random.default_rng(seed).permutation(len(probs))[:n]
        scores = 1.0 - margins(probs)
        return [(int(i), float(scores[i]), f"random draw (seed {seed})") for i in order]

    return pick


CLUSTER_DIMS = 64
"""The features are projected on their first principal components, this many, before k-means: the clusters only
spread the picks, and a thousand clusters of ten thousand images then take seconds rather than minutes."""


def clusters(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A cluster per row: k-means (seeded) on the L2-normalised features (their first :data:`CLUSTER_DIMS`
    principal components); each row its own when k covers them."""
    m = len(features)
    if k >= m:
        return np.arange(m)
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning

    x = features.astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if x.shape[1] > CLUSTER_DIMS and m > CLUSTER_DIMS:
        x = PCA(n_components=CLUSTER_DIMS, svd_solver="randomized", random_state=seed).fit_transform(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct images than clusters: some stay empty
        return KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(x)


def gradient_embeddings(probs: np.ndarray, features: np.ndarray, seed: int) -> np.ndarray:
    """Per image, the gradient of the log-loss at the student's own prediction with respect to a linear head's
    weights: (p - onehot(argmax p)) outer its features, standardised and projected on their first
    :data:`CLUSTER_DIMS` principal components (seeded). Its length is the student's doubt (0 when sure), its
    direction what the image would teach the head."""
    x = features.astype(np.float64)
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-6)
    dims = min(CLUSTER_DIMS, len(x) - 1, x.shape[1])
    if dims >= 1 and dims < x.shape[1]:
        from sklearn.decomposition import PCA

        x = PCA(n_components=dims, svd_solver="randomized", random_state=seed).fit_transform(x)
    residual = probs - np.eye(probs.shape[1])[probs.argmax(axis=1)]
    return (residual[:, :, None] * x[:, None, :]).reshape(len(x), -1)


def badge_picks(probs: np.ndarray, features: np.ndarray, n: int, seed: int) -> list[Pick]:
    """Up to ``n`` rows by k-means++ seeding over :func:`gradient_embeddings` (BADGE): the first is the longest
    gradient, each next one drawn (seeded) with probability proportional to its squared distance to the nearest
    gradient picked, so an image is likely when the student doubts it and it is unlike the picks so far. Where
    every image left coincides with a pick (all at distance 0: the student sure of all of them, say), the
    longest gradients left follow (ties: pool order). ``score``: the gradient's length.

    There are no turns by predicted class: a gradient's direction carries the class the student predicts, so the
    picks spread over the classes much as the pool does (measured on MVSA and Twitter-II pools, the labels picked
    per class are within a few of a random draw's), but a class the student seldom predicts gets no more than its
    share. Taking the classes in turns, as ``uncertainty`` does, was measured too, and bought less."""
    m = len(probs)
    n = min(n, m)
    if n <= 0:
        return []
    g = gradient_embeddings(probs, features, seed)
    length = np.sqrt((g ** 2).sum(axis=1))
    rng = np.random.default_rng(seed)
    first = int(np.argmax(length))
    picks: list[Pick] = [(first, float(length[first]), f"gradient {length[first]:.2f}, the longest gradient")]
    d2 = ((g - g[first]) ** 2).sum(axis=1)
    while len(picks) < n and d2.sum() > 0:
        i = int(rng.choice(m, p=d2 / d2.sum()))  # a picked image has d2 = 0: never drawn again
        picks.append((i, float(length[i]), f"gradient {length[i]:.2f}, k-means++ draw over gradient embeddings"))
        d2 = np.minimum(d2, ((g - g[i]) ** 2).sum(axis=1))
    if len(picks) < n:  # nothing left unlike the picks: the longest gradients left, in pool order on ties
        taken = {i for i, _, _ in picks}
        rest = [int(i) for i in np.lexsort((np.arange(m), -length)) if int(i) not in taken]
        picks += [(i, float(length[i]), f"gradient {length[i]:.2f}, the longest gradient left (none unlike the picks)")
                  for i in rest[: n - len(picks)]]
    return picks


def diverse_picks(probs: np.ndarray, features: np.ndarray, n: int, seed: int, scores: np.ndarray, measure: str,
                  shown: np.ndarray) -> list[Pick]:
    """Up to ``n`` rows, larger ``scores`` first, spread over about ``n`` k-means clusters and taken in turns by
    predicted class (the rule in this module's description). ``why`` says ``measure`` (its value ``shown``) and
    the cluster."""
    m = len(probs)
    n = min(n, m)
    if n <= 0:
        return []
    k = min(n, m)
    assignment = clusters(features, k, seed)
    predicted = probs.argmax(axis=1)
    # per class, per cluster: its rows, most worth a label first (stable: ties keep pool order)
    queues: dict[int, dict[int, list[int]]] = {}
    for i in sorted(range(m), key=lambda i: (-scores[i], i)):
        queues.setdefault(int(predicted[i]), {}).setdefault(int(assignment[i]), []).append(i)
    for per_cluster in queues.values():
        for rows in per_cluster.values():
            rows.reverse()  # popped from the end
    taken = np.zeros(k, dtype=int)  # picks per cluster so far
    turns = [c for c in range(len(CLASSES)) if c in queues]
    picks: list[Pick] = []
    turn = 0
    while len(picks) < n and turns:
        c = turns[turn % len(turns)]
        per_cluster = queues[c]
        best = min(per_cluster, key=lambda j: (taken[j], -scores[per_cluster[j][-1]], per_cluster[j][-1]))
        i = per_cluster[best].pop()
        if not per_cluster[best]:
            del per_cluster[best]
        taken[best] += 1
        picks.append((i, float(scores[i]), f"{measure} {shown[i]:.2f}, cluster {best + 1} of {k}"))
        if not per_cluster:
            turns.remove(c)  # the next class keeps its place in the turns
        else:
            turn += 1
    return picks


# ----------------------------------------------------------------------------------------------------- the pool

def pool_items(pool: Any) -> tuple[list[tuple[str, str | None]], list[str | None]]:
    """The images of ``pool`` as ``(path, problem)`` pairs (as :func:`visent.model.inputs.expand_inputs` gives
    them) and their SHA-256 where already known. ``pool`` is a folder, an image file, an ``@list.txt``, a visent
    dataset directory (its kept images), a :class:`~visent.core.store.Dataset`, or a list of these."""
    items: list[tuple[str, str | None]] = []
    hashes: list[str | None] = []
    for entry in (pool if isinstance(pool, (list, tuple)) else [pool]):
        if isinstance(entry, Dataset) or (isinstance(entry, (str, os.PathLike)) and not str(entry).startswith("@")
                                          and (Path(entry) / "manifest.json").is_file()):
            kept, digests = dataset_images(Dataset.of(entry))
            items += [(path, None) for path in kept]
            hashes += digests
        elif isinstance(entry, (str, os.PathLike)):
            expanded = expand_inputs([entry])
            items += expanded
            hashes += [None] * len(expanded)
        else:
            raise UsageError(f"{type(entry).__name__} is not a pool of images: give a folder, image paths, an "
                             "@list.txt or a visent dataset directory")
    return items, hashes


def dataset_images(dataset: Dataset) -> tuple[list[str], list[str | None]]:
    """The image files of a dataset's kept posts (its clean stage's ``kept``), each once, with their SHA-256."""
    import pyarrow.compute as pc

    dataset.require_stage("clean")
    table = dataset.posts()
    if "clean_status" not in table.column_names:
        return [], []
    table = table.filter(pc.equal(table["clean_status"], "kept"))
    files = table["image_file"].to_pylist()
    digests = (table["image_sha256"].to_pylist() if "image_sha256" in table.column_names
               else [None] * table.num_rows)
    paths, known, seen = [], [], set()
    for rel, digest in zip(files, digests):
        if rel and rel not in seen:
            seen.add(rel)
            paths.append(str(dataset.image_path(rel)))
            known.append(digest)
    return paths, known


def labelled_images(labelled: Sequence[str | Path]) -> tuple[set[str], set[str]]:
    """The SHA-256 and the resolved paths of the images of labelled CSVs (rows with a usable label)."""
    if isinstance(labelled, (str, os.PathLike)):
        labelled = [labelled]
    paths: list[str] = []
    for csv_file in labelled:
        if not Path(csv_file).is_file():
            raise InputError(f"{csv_file}: labels file not found; give a CSV of path,label as `visent adapt --labels`"
                             " reads it")
        paths += read_labelled_images(csv_file)[0]
    digests, _ = file_hashes([Path(p) for p in paths])
    return {d for d in digests if d}, {_resolved(p) for p in paths}


def _resolved(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except OSError:
        return str(Path(path).absolute())


# ----------------------------------------------------------------------------------------------------- suggest

def suggest(model: str | Path | VisentModel, pool: Any, n: int = 100, *, strategy: str = "uncertainty",
            seed: int = 0, labelled: Sequence[str | Path] = (), batch_size: int = 32) -> Suggestions:
    """The ``n`` images of ``pool`` (see :func:`pool_items`) a person should label next for ``model`` (a
    :class:`~visent.model.VisentModel`, a model directory or ``"default"``), picked by ``strategy`` (a name of
    :data:`STRATEGIES`) with ``seed``: the same call gives the same picks. The images of the ``labelled`` CSVs
    are left out (by content); those that cannot be read are listed in ``skipped``. With fewer than ``n``
    candidates, all of them are returned, ranked."""
    if n < 1:
        raise UsageError(f"n must be at least 1 (got {n})")
    pick = STRATEGIES.create(strategy)
    student = model if isinstance(model, VisentModel) else VisentModel.load(model)
    items, known = pool_items(pool)
    done_hashes, done_paths = labelled_images(labelled) if labelled else (set(), set())

    skipped: list[tuple[str, str]] = [(path, problem) for path, problem in items if problem is not None]
    readable = [i for i, (_, problem) in enumerate(items) if problem is None]
    digests, errors = file_hashes([Path(items[i][0]) for i in readable], [known[i] for i in readable])
    excluded: list[str] = []
    duplicates: list[str] = []
    seen: set[str] = set()
    paths: list[str] = []
    hashes: list[str] = []
    for i, digest, error in zip(readable, digests, errors):
        path = items[i][0]
        if digest is None:
            skipped.append((path, (error.reason if error is not None else "") or "cannot read the file"))
        elif digest in done_hashes or _resolved(path) in done_paths:
            excluded.append(path)
        elif digest in seen:
            duplicates.append(path)
        else:
            seen.add(digest)
            paths.append(path)
            hashes.append(digest)

    features, statuses = (student.features(paths, hashes, batch_size=batch_size) if paths
                          else (np.zeros((0, 0), dtype=np.float32), []))
    ok = ~np.isnan(features).any(axis=1) if len(paths) else np.zeros(0, dtype=bool)
    skipped += [(path, status.reason or "image could not be read")
                for path, status, good in zip(paths, statuses, ok) if not good]
    where = np.flatnonzero(ok)
    features = features[where]
    probs = student.head.predict_proba(features) if len(where) else np.zeros((0, len(CLASSES)))
    shown = margins(probs) if len(where) else np.zeros(0)

    rows = []
    for rank, (i, score, why) in enumerate(pick(probs, features, n, seed) if len(where) else [], start=1):
        p = [float(v) for v in probs[i]]
        rows.append(Suggestion(rank=rank, path=paths[where[i]], predicted=CLASSES[int(np.argmax(p))], p_negative=p[0],
                               p_neutral=p[1], p_positive=p[2], score=float(score), margin=float(shown[i]), why=why))
    return Suggestions(rows=rows, strategy=strategy, seed=seed, pool=len(items), candidates=len(where),
                       skipped=skipped, excluded=excluded, duplicates=duplicates)


CSV_COLUMNS = ("path", "label", "predicted", "p_negative", "p_neutral", "p_positive", "score", "why")


def write_csv(suggestions: Suggestions, out: str | Path) -> Path:
    """Write the picks to ``out`` as ``path,label`` with the label empty, to be filled in and given to ``visent
    adapt --labels``, then the student's prediction, probabilities, score and why. A path under the CSV's folder
    is written relative to it (as ``visent adapt`` reads it), any other in full."""
    out = Path(out)
    folder = out.parent.resolve()
    with atomic_open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in suggestions.rows:
            path = Path(row.path).resolve()
            shown = path.relative_to(folder) if path.is_relative_to(folder) else path
            writer.writerow([shown.as_posix(), "", row.predicted, f"{row.p_negative:.4f}", f"{row.p_neutral:.4f}",
                             f"{row.p_positive:.4f}", f"{row.score:.4f}", row.why])
    return out
