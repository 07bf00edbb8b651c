"""Few human labels: ``visent adapt`` from the zero-label student against a head from ImageNet features alone.

For each fold of the MVSA 5-fold zero-label protocol (the per-fold students ``benchmarks/mvsa_zero_label.py``
builds; pass its work folder of one configuration as ``--folds-dir``), N human image labels are drawn (seeded)
from the fold's training posts, and three heads are scored on the held-out fold's human image labels and on
Twitter-II (zero-shot, all 603 photos):

* ``student``: the zero-label student as built (N = 0);
* ``adapted``: :func:`visent.model.adapt.adapt_head`, the student's head refitted to the N labels toward the
  student's weights (what ``visent adapt`` does);
* ``scratch``: the same penalised fit toward zero on the same frozen ImageNet features, C chosen the same way.

Prints binary balanced accuracy and accuracy (positive vs negative, neutral left out), mean ± std over folds and
draws, per N, and the issue's aims: at 100 and 200 labels adapted beats scratch by >= 3 points of balanced
accuracy, at 200 it beats the zero-label student by >= 5.

``--strategy random,uncertainty,entropy`` asks instead what the labels :func:`visent.label.suggest` picks buy: a
simulated annotator reveals the human image label of only the images a strategy asks for, on two benchmarks, each
from its own pool. MVSA: the pool is the fold's training part (its images, labels hidden; each image once, by
SHA-256, as ``suggest`` dedupes), the test its held-out fold (and Twitter-II zero-shot, labels bought on MVSA).
Twitter-II: fold k's student is given the photos of Twitter-II's other four partitions as its pool and is tested
on partition k (its own cross-validation folds; positive / negative labels, so the adapted head refits those two
classes). The pool is scored by the fold's student on its cached features, and the strategy (the same function
``visent label suggest --strategy`` calls, seed = draw) picks N of it; the student is adapted to those N labels
(``adapted``, as ``visent adapt``) and scored on the pool's test, per strategy side by side. ``--picks per-n``
(the default) asks the strategy anew for each N, as ``visent label suggest --n N`` would (k-means with about N
clusters); ``--picks nested`` takes the first N of one ranking for the largest N per (fold, draw), so each curve is
nested. ``random`` is nested either way (the first N of one seeded permutation). The aims printed: suggested 100
reaches random 200, and suggested 200 beats random 200 by >= 1.5 points of balanced accuracy, on each benchmark
(MVSA held-out folds, Twitter-II held-out partitions).

``--learner bias`` or ``--learner subspace`` (with ``--strategy``) fits the picked labels with a learner tried
here only instead of ``visent adapt``: the biases alone, or a correction of the student's logits along the labelled
images' first principal directions (dimension and penalty chosen by cross-validation on the labels); its results
file is few_labels_strategies_<learner>. It asks whether another learner makes picked labels pay where ``visent
adapt`` does not.

Rows are kept as they come (``--work``/rows.jsonl), so an interrupted run resumes where it stopped.

    python benchmarks/mvsa_zero_label.py --teacher default --work /tmp/bench-F     # the per-fold students
    python benchmarks/few_labels.py \
        --folds-dir /tmp/bench-F/efficientnet-lite0-ms-default-soft-tta0-tteacher-b0-onnx-int8
    python benchmarks/few_labels.py --folds-dir ... --strategy random,uncertainty,badge
    python benchmarks/few_labels.py --folds-dir ... --strategy random,uncertainty,badge --learner subspace
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from visent.core.labels import CLASS_INDEX, CLASSES
from visent.core.numeric import softmax
from visent.embed.cached import file_hashes
from visent.evaluate import compute_metrics, load_benchmark
from visent.ingest.readers import read_mvsa_labels
from visent.label.suggest import CLUSTER_DIMS, STRATEGIES, diverse_picks, gradient_embeddings, margins
from visent.model import VisentModel
from visent.model.adapt import adapt_head, choose_C, fit_towards
from visent.core.machine import cpu_model

from record import save_results

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def binary_scores(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(balanced accuracy, accuracy) of positive vs negative, neutral images left out (evaluate's protocol)."""
    binary = compute_metrics([CLASSES[c] for c in y], probs)["binary"]
    return binary["balanced_accuracy"], binary["accuracy"]


# Variants tried here only (not in visent.label.suggest), same signature as its strategies:
# (probs, features, n, seed) -> [(index, score, why)], best first.

def _projected(features: np.ndarray, seed: int) -> np.ndarray:
    """The space suggest's k-means works in: L2-normalised features on their first CLUSTER_DIMS components."""
    from sklearn.decomposition import PCA

    x = features.astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return PCA(n_components=CLUSTER_DIMS, svd_solver="randomized", random_state=seed).fit_transform(x)


def typical_strategy():
    """One image per k-means cluster (about n clusters, as suggest clusters), the one nearest its cluster's
    centre, the largest clusters first: representative images, whatever the student's confidence."""
    def pick(probs: np.ndarray, features: np.ndarray, n: int, seed: int):
        from sklearn.cluster import KMeans

        x = _projected(features, seed)
        km = KMeans(n_clusters=min(n, len(x)), n_init=1, random_state=seed).fit(x)
        distance = np.linalg.norm(x - km.cluster_centers_[km.labels_], axis=1)
        sizes = np.bincount(km.labels_, minlength=km.n_clusters)
        picks = []
        for c in np.argsort(-sizes, kind="stable"):
            members = np.flatnonzero(km.labels_ == c)
            if len(members):
                i = int(members[np.argmin(distance[members])])
                picks.append((i, float(sizes[c]), f"nearest the centre of a cluster of {sizes[c]}"))
        return picks[:n]

    return pick


def mixed_strategy():
    """Half the picks by ``uncertainty`` (n // 2 of them, its clusters and class turns), the rest a seeded
    uniform draw from the other images, taken in turns."""
    def pick(probs: np.ndarray, features: np.ndarray, n: int, seed: int):
        k = n // 2
        unsure = diverse_picks(probs, features, k, seed, 1.0 - margins(probs), "margin", margins(probs)) if k else []
        taken = {i for i, _, _ in unsure}
        rest = [int(i) for i in np.random.default_rng(seed).permutation(len(probs)) if int(i) not in taken]
        drawn = [(i, 0.0, "random draw") for i in rest[: n - len(unsure)]]
        picks = []
        for a, b in zip(drawn, unsure + [None] * len(drawn)):
            picks += [a] + ([b] if b is not None else [])
        return picks[:n]

    return pick


def badge_turns_strategy():
    """suggest's ``badge`` with the draws taken in turns by predicted class (negative, neutral, positive, ...; a class
    with no image left drops out), as ``uncertainty`` takes its picks: each turn draws among the images predicted as
    the class in turn, by squared distance to the nearest gradient picked (the first turn: its longest gradient)."""
    def pick(probs: np.ndarray, features: np.ndarray, n: int, seed: int):
        g = gradient_embeddings(probs, features, seed)
        length = np.sqrt((g ** 2).sum(axis=1))
        rng = np.random.default_rng(seed)
        predicted = probs.argmax(axis=1)
        left, d2 = np.ones(len(g), dtype=bool), np.full(len(g), np.inf)
        order = [c for c in range(probs.shape[1]) if (predicted == c).any()]
        picks, turn = [], 0
        while len(picks) < min(n, len(g)) and order:
            c = order[turn % len(order)]
            members = left & (predicted == c)
            if not members.any():
                order.remove(c)
                continue
            weight = np.where(members, d2, 0.0)
            if picks and weight.sum() > 0:
                i = int(rng.choice(len(g), p=weight / weight.sum()))
            else:
                i = int(np.argmax(np.where(members, length, -1.0)))
            picks.append((i, float(length[i]), f"gradient {length[i]:.2f}, turn of {CLASSES[c]}"))
            left[i] = False
            d2 = np.minimum(d2, ((g - g[i]) ** 2).sum(axis=1))
            d2[i] = 0.0
            turn += 1
        return picks

    return pick


VARIANTS = {"typical": typical_strategy, "mixed": mixed_strategy, "badge-turns": badge_turns_strategy}


# Learners tried here only (`--learner`), besides `visent adapt`'s own refit of every weight toward the student:
# (head, features, labels, seed) -> (probabilities of features, what was chosen). Both move the student's logits
# by a small correction and so keep what the crawl taught where the labels say nothing.

def offset_fit(F: np.ndarray, L0: np.ndarray, y: np.ndarray, lam: float, cols: np.ndarray):
    """Logits ``L0 + F A^T + c`` fitted to ``y`` over the labelled classes ``cols`` (balanced weights), penalty
    ``lam ||A||^2`` (and 1e-3 ||c||^2); other classes keep ``L0``. Returns (A, c), 3 rows each."""
    from scipy.optimize import minimize
    from sklearn.utils.class_weight import compute_sample_weight

    from visent.core.numeric import log_softmax

    k, m = F.shape[1], len(cols)
    onehot, weight = np.eye(m)[np.searchsorted(cols, y)], compute_sample_weight("balanced", y)
    base = L0[:, cols]

    def loss(theta: np.ndarray):
        A, c = theta[: m * k].reshape(m, k), theta[m * k:]
        log_p = log_softmax(base + F @ A.T + c)
        residual = weight[:, None] * (np.exp(log_p) - onehot)
        value = -float((weight * (onehot * log_p).sum(axis=1)).sum()) + lam * float((A ** 2).sum())
        value += 1e-3 * float(c @ c)
        return value, np.concatenate([(residual.T @ F + 2 * lam * A).ravel(), residual.sum(axis=0) + 2e-3 * c])

    theta = minimize(loss, np.zeros(m * (k + 1)), jac=True, method="L-BFGS-B").x
    A, c = np.zeros((len(CLASSES), k)), np.zeros(len(CLASSES))
    A[cols], c[cols] = theta[: m * k].reshape(m, k), theta[m * k:]
    return A, c


def directions(head, X: np.ndarray, k: int):
    """The first ``k`` principal directions of the labelled images' standardised features (no labels used),
    whitened: a function of features."""
    if k == 0:
        return lambda F: np.zeros((len(F), 0))
    from sklearn.decomposition import PCA

    Z = (X - head.mean_) / head.scale_
    centre = Z.mean(axis=0)
    pca = PCA(n_components=min(k, len(X) - 1), svd_solver="randomized", random_state=0).fit(Z - centre)
    spread = np.sqrt(np.maximum(pca.explained_variance_, 1e-12))
    return lambda F: pca.transform((F - head.mean_) / head.scale_ - centre) / spread


def logits_of(head, F: np.ndarray) -> np.ndarray:
    """The student's calibrated logits, those its probabilities are the softmax of."""
    return head.decision_function(F) / head.temperature_


def bias_learner(head, X: np.ndarray, y: np.ndarray, seed: int):
    """Only the labelled classes' biases move (2-3 numbers): the class mix and the decision threshold."""
    cols = np.unique(y)
    _, c = offset_fit(np.zeros((len(y), 0)), logits_of(head, X), y, 0.0, cols)
    return (lambda F: softmax(logits_of(head, F) + c)), {"learned": "bias"}


SUBSPACE = [("student", 0, 0.0), ("bias", 0, 0.0)] + [("subspace", k, lam) for k in (16, 32, 64)
                                                       for lam in (300.0, 100.0, 30.0)]
"""The corrections :func:`subspace_learner` chooses from, the simplest first."""


def subspace_learner(head, X: np.ndarray, y: np.ndarray, seed: int):
    """A correction of the student's logits along the first k principal directions of the labelled images'
    features plus the biases, (k, penalty) of :data:`SUBSPACE` (or none, or the biases alone) chosen by stratified
    5-fold cross-validation on the labels (balanced log-loss, the one-standard-error rule toward the simplest)."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.utils.class_weight import compute_sample_weight

    from visent.core.numeric import log_softmax

    cols = np.unique(y)
    counts = np.bincount(y, minlength=len(CLASSES))
    folds = min(5, int(counts[cols].min()))
    base = logits_of(head, X)
    project = {k: directions(head, X, k) for k in {k for _, k, _ in SUBSPACE}}
    losses = np.zeros((len(SUBSPACE), len(y)))
    if folds >= 2:
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
            weight = compute_sample_weight("balanced", y[test])
            for j, (kind, k, lam) in enumerate(SUBSPACE):
                logits = base[test]
                if kind != "student":
                    F = project[k](X)
                    A, c = offset_fit(F[train], base[train], y[train], lam, cols)
                    logits = logits + F[test] @ A.T + c
                log_p = log_softmax(logits[:, cols])
                losses[j, test] = -weight * log_p[np.arange(len(test)), np.searchsorted(cols, y[test])]
        best = int(np.argmin(losses.sum(axis=1)))
        excess = losses - losses[best]
        within = excess.mean(axis=1) <= excess.std(axis=1, ddof=1) / np.sqrt(len(y))
        chosen = int(np.argmax(within))  # the simplest within one standard error of the best
    else:
        chosen = 0
    kind, k, lam = SUBSPACE[chosen]
    if kind == "student":
        return head.predict_proba, {"learned": "student"}
    A, c = offset_fit(project[k](X), base, y, lam, cols)
    return (lambda F: softmax(logits_of(head, F) + project[k](F) @ A.T + c)), {
        "learned": kind if kind == "bias" else f"{kind} k={k} penalty {lam:g}"}


LEARNERS = {"bias": bias_learner, "subspace": subspace_learner}


def strategy_named(name: str):
    return VARIANTS[name]() if name in VARIANTS else STRATEGIES.create(name)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds-dir", type=Path, required=True, help="fold0..foldK made by mvsa_zero_label.py")
    parser.add_argument("--mvsa", type=Path, default=SHARED / "mvsa-single")
    parser.add_argument("--twitter-ii", type=Path, default=SHARED / "twitter-ii")
    parser.add_argument("--sizes", default="25,50,100,200,400,all",
                        help="label counts; 'all' is every labelled training post of the fold (the ceiling)")
    parser.add_argument("--draws", type=int, default=3, help="seeded draws of the N labels per fold")
    parser.add_argument("--strategy", help="compare suggest strategies (comma-separated: "
                        f"{', '.join(STRATEGIES)}; variants tried here: {', '.join(VARIANTS)}) with a simulated "
                        "annotator, instead of adapted vs scratch")
    parser.add_argument("--learner", choices=("adapt", *LEARNERS), default="adapt",
                        help="with --strategy: what is fitted to the picked labels: `visent adapt` (the default), "
                        "or a learner tried here only: bias (the biases alone) or subspace (a correction along the "
                        "labelled images' principal directions, chosen by cross-validation)")
    parser.add_argument("--picks", choices=("per-n", "nested"), default="per-n",
                        help="with --strategy: ask the strategy anew for each N, or take the first N of one ranking")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "visent-bench-few-labels",
                        help="rows.jsonl here: rows are kept as they come and a rerun resumes")
    parser.add_argument("--results", metavar="NAME", help="save the rows as benchmarks/results/NAME.json with the "
                        "command, commit, CPU and date (default: few_labels, or with --strategy "
                        "few_labels_strategies[_nested][_LEARNER]; '' saves nothing); the docs' tables are made from "
                        "these files")
    args = parser.parse_args()
    strategies = [name.strip() for name in args.strategy.split(",")] if args.strategy else []
    for name in strategies:
        strategy_named(name)  # an unknown name fails here, with the known ones
    if args.learner != "adapt" and not strategies:
        parser.error("--learner goes with --strategy")

    labels = read_mvsa_labels(args.mvsa / "labelResultAll.txt")
    data_dir = (args.mvsa / "data").resolve()
    twitter = load_benchmark(f"twitter-ii={args.twitter_ii}")
    y_twitter = np.array([CLASS_INDEX[label] for label in twitter.labels])
    partitions = np.array(twitter.folds)  # Twitter-II's own cross-validation folds: partition k tests fold k's picks
    twitter_digests = file_hashes([Path(p) for p in twitter.paths])[0] if strategies else []
    ALL = 10**9  # 'all': every labelled training post of the fold
    sizes = [ALL if s == "all" else int(s) for s in args.sizes.split(",")]
    if strategies and ALL in sizes:
        sizes.remove(ALL)  # every label is the same set whatever the strategy: the plain curve's 'all' row
        print("--strategy: 'all' left out (every training label is the same set for each strategy)")
    folds = sorted(p for p in args.folds_dir.glob("fold*") if (p / "model" / "config.json").exists())
    if not folds:
        raise SystemExit(f"{args.folds_dir}: no fold*/model; run benchmarks/mvsa_zero_label.py first")
    cpu = f"{cpu_model()}, {os.cpu_count()} cores"
    print(f"CPU: {cpu}", flush=True)

    # rows are kept as they come, so an interrupted run resumes where it stopped; a row is known by its key
    args.work.mkdir(parents=True, exist_ok=True)
    done_file = args.work / "rows.jsonl"
    setting = {"folds_dir": str(args.folds_dir.resolve()), "picks": args.picks if strategies else None,
               "pools": ",".join(POOLS) if strategies else None,
               "learner": None if args.learner == "adapt" else args.learner}
    done: dict[tuple, dict] = {}
    if done_file.exists():
        for line in done_file.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if all(row.get(k) == v for k, v in setting.items()):
                    done[key_of(row)] = row
    rows: list[dict] = []
    wall = time.time()
    for fold_dir in folds:
        started = time.time()
        model = VisentModel.load(fold_dir / "model")
        with (fold_dir / "heldout.csv").open() as handle:
            test = {Path(r["path"]).stem: r["label"] for r in csv.DictReader(handle)}
        pool = [i for i, (_, image) in labels.items() if image is not None and i not in test]
        paths = [data_dir / f"{i}.jpg" for i in pool] + [data_dir / f"{i}.jpg" for i in test] + list(twitter.paths)
        X, _ = model.features(paths)  # once per image (and from the feature cache after the first fold)
        ok = ~np.isnan(X).any(axis=1)
        n_pool, n_test = len(pool), len(test)
        y_pool = np.array([CLASS_INDEX[labels[i][1]] for i in pool])
        y_test = np.array([CLASS_INDEX[label] for label in test.values()])
        X_pool, X_test, X_tw = X[:n_pool], X[n_pool:n_pool + n_test], X[n_pool + n_test:]
        pool_ok, test_ok, tw_ok = ok[:n_pool], ok[n_pool:n_pool + n_test], ok[n_pool + n_test:]
        head = model.head
        # Twitter-II's partition of this fold is its test; the other partitions are its pool
        partition = int(fold_dir.name.removeprefix("fold")) % (int(partitions.max()) + 1)
        tw_test = tw_ok & (partitions == partition)

        def score(predict, name: str, n: int, draw: int, strategy: str | None = None, pool: str = "mvsa",
                  **extra) -> None:
            """A row of binary figures: MVSA's held-out fold and Twitter-II zero-shot for a head from MVSA labels
            (and the zero-label student), Twitter-II's held-out partition for one from Twitter-II's labels."""
            figures = {}
            if pool == "mvsa":
                mvsa = binary_scores(predict(X_test[test_ok]), y_test[test_ok])
                tw = binary_scores(predict(X_tw[tw_ok]), y_twitter[tw_ok])
                figures |= {"mvsa_bal": mvsa[0], "mvsa_acc": mvsa[1], "twitter_bal": tw[0], "twitter_acc": tw[1]}
            if pool == "twitter-ii" or (strategies and name == "student"):
                held = binary_scores(predict(X_tw[tw_test]), y_twitter[tw_test])
                figures |= {"twitter_in_bal": held[0], "twitter_in_acc": held[1]}
            row = {"fold": fold_dir.name, "n": "all" if n == ALL else n, "draw": draw, "head": name,
                   "strategy": strategy, **({"pool": pool} if strategies else {}), **figures, **extra, **setting}
            rows.append(row)
            with done_file.open("a") as handle:
                handle.write(json.dumps(row) + "\n")

        def known(name: str, n: int, draw: int, strategy: str | None = None, pool: str = "mvsa") -> bool:
            row = done.get((fold_dir.name, "all" if n == ALL else n, draw, name, strategy, pool))
            if row is not None:
                rows.append(row)
            return row is not None

        if not known("student", 0, 0):
            score(head.predict_proba, "student", 0, 0)
        if strategies:
            # each pool as suggest sees it: readable images, each once by SHA-256
            mvsa_digests, _ = file_hashes([data_dir / f"{i}.jpg" for i in pool])
            pools = {"mvsa": (X_pool, y_pool, distinct(np.flatnonzero(pool_ok), mvsa_digests)),
                     "twitter-ii": (X_tw, y_twitter, distinct(np.flatnonzero(tw_ok & ~tw_test), twitter_digests))}
            for pool_name, (X_from, y_from, candidates) in pools.items():
                F = X_from[candidates]
                P = head.predict_proba(F)
                for strategy in strategies:
                    pick = strategy_named(strategy)
                    for draw in range(args.draws):
                        ranking = None
                        for n in sizes:
                            if n > len(candidates) or known("adapted", n, draw, strategy, pool_name):
                                continue
                            t0 = time.time()
                            if args.picks == "nested":
                                if ranking is None:
                                    ranking = [i for i, _, _ in pick(P, F, min(max(sizes), len(F)), draw)]
                                chosen = ranking[:n]
                            else:
                                chosen = [i for i, _, _ in pick(P, F, n, draw)]
                            t_pick = time.time() - t0
                            idx = candidates[np.array(chosen)]
                            yd = y_from[idx]  # the simulated annotator: labels of the picked images only
                            counts = np.bincount(yd, minlength=len(CLASSES))
                            if len(np.unique(yd)) < 2:
                                continue
                            if args.learner == "adapt":
                                adapted, info = adapt_head(head, X_from[idx], yd, seed=draw)
                                predict, fitted = adapted.predict_proba, {"C": info["C"]}
                            else:
                                predict, fitted = LEARNERS[args.learner](head, X_from[idx], yd, draw)
                            score(predict, "adapted", n, draw, strategy, pool_name, **fitted,
                                  per_class={c: int(k) for c, k in zip(CLASSES, counts)},
                                  pick_s=round(t_pick, 2), adapt_s=round(time.time() - t0 - t_pick, 2))
                print(f"{fold_dir.name}: {pool_name}: {len(candidates)} images in the pool, "
                      f"{n_test if pool_name == 'mvsa' else int(tw_test.sum())} held out, "
                      f"{time.time() - started:.0f} s ({cpu})", flush=True)
            continue

        candidates = np.flatnonzero(pool_ok)
        for n in sizes:
            for draw in range(1 if n >= len(candidates) else args.draws):
                keys = [(fold_dir.name, "all" if n == ALL else n, draw, name, None) for name in ("adapted", "scratch")]
                if all(k in done for k in keys):
                    rows.extend(done[k] for k in keys)
                    continue
                rng = np.random.default_rng(1000 * n + draw)
                pick = rng.choice(candidates, size=min(n, len(candidates)), replace=False)
                Xd, yd = X_pool[pick], y_pool[pick]
                if len(np.unique(yd)) < 2:
                    continue
                adapted, _ = adapt_head(head, Xd, yd, seed=draw)
                score(adapted.predict_proba, "adapted", n, draw)
                present = sorted(int(c) for c in np.unique(yd))
                Z = (Xd - head.mean_) / head.scale_  # the crawl's own (unlabelled) feature statistics, as adapt
                zeros_W, zeros_b = np.zeros_like(head.coef_), np.zeros_like(head.intercept_)
                C, _ = choose_C(Z, yd, zeros_W, zeros_b, draw, present)
                W, b = fit_towards(Z, yd, zeros_W, zeros_b, C, present)
                score(lambda F, W=W, b=b: softmax(((F - head.mean_) / head.scale_) @ W.T + b), "scratch", n, draw)
        print(f"{fold_dir.name}: {n_pool} labelled training posts, {n_test} held out, {time.time() - started:.0f} s "
              f"({cpu})", flush=True)
    elapsed = time.time() - wall
    print(f"\nwall time {elapsed:.0f} s on {cpu} (rows already in {done_file} not rerun)")

    def stats_of(sel: list[dict]) -> dict:
        return {k: (float(np.mean([r[k] for r in sel])), float(np.std([r[k] for r in sel])))
                for k in ("mvsa_bal", "mvsa_acc", "twitter_bal", "twitter_acc")}

    summary: dict = {}
    if strategies:
        summarise_strategies(rows, strategies, sizes, len(folds), args, summary)
    else:
        print(f"\nbinary balanced accuracy (accuracy), mean ± std over {len(folds)} folds x {args.draws} draws")
        print(f"{'N':>5} {'head':<8} {'MVSA held-out fold':>28} {'Twitter-II zero-shot':>28}")
        for n in [0] + sizes:
            for name in (["student"] if n == 0 else ["adapted", "scratch"]):
                key = "all" if n == ALL else n
                sel = [r for r in rows if r["n"] == key and r["head"] == name]
                if not sel:
                    continue
                stats = summary[f"{key}/{name}"] = stats_of(sel)
                cells = [f"{stats[b][0]:.4f} ± {stats[b][1]:.4f} ({stats[a][0]:.3f})"
                         for b, a in (("mvsa_bal", "mvsa_acc"), ("twitter_bal", "twitter_acc"))]
                print(f"{key:>5} {name:<8} {cells[0]:>28} {cells[1]:>28}")
        print("\naims (balanced accuracy points):")
        for n in (100, 200):
            for bench in ("mvsa_bal", "twitter_bal"):
                if f"{n}/adapted" in summary:
                    gain = 100 * (summary[f"{n}/adapted"][bench][0] - summary[f"{n}/scratch"][bench][0])
                    print(f"  N={n} {bench[:-4]:<8} adapted - scratch = {gain:+.1f} (aim >= +3)")
        for bench in ("mvsa_bal", "twitter_bal"):
            if "200/adapted" in summary:
                gain = 100 * (summary["200/adapted"][bench][0] - summary["0/student"][bench][0])
                print(f"  N=200 {bench[:-4]:<8} adapted - zero-label student = {gain:+.1f} (aim >= +5)")
    arguments = vars(args) | {"folds_dir": str(args.folds_dir), "mvsa": str(args.mvsa),
                              "twitter_ii": str(args.twitter_ii), "work": str(args.work)}
    if strategies:
        columns, table = strategy_table(summary, strategies, sizes)
        name = ("few_labels_strategies" + ("_nested" if args.picks == "nested" else "")
                + ("" if args.learner == "adapt" else f"_{args.learner}"))
    else:
        columns, table = curve_table(summary, ["all" if n == ALL else n for n in sizes])
        name = "few_labels"
    save_results(name if args.results is None else args.results, rows, columns=columns, table=table,
                 summary=summary, arguments=arguments, wall_s=round(elapsed))


def key_of(row: dict) -> tuple:
    return row["fold"], row["n"], row["draw"], row["head"], row.get("strategy"), row.get("pool", "mvsa")


def pair(row: dict) -> tuple:
    """What a strategy's row is paired with random's by: fold, N, draw and pool."""
    key = key_of(row)
    return key[:3] + key[5:]


def distinct(rows: np.ndarray, digests: list) -> np.ndarray:
    """``rows`` (indices into ``digests``) whose file was read, each content once (the first of its name)."""
    seen: set[str] = set()
    kept = []
    for j in rows:
        if digests[j] is not None and digests[j] not in seen:
            seen.add(digests[j])
            kept.append(j)
    return np.array(kept, dtype=int)


POOLS = ("mvsa", "twitter-ii")
BENCHES = (("mvsa_bal", "MVSA held-out folds"), ("twitter_in_bal", "Twitter-II held-out partitions"),
           ("twitter_bal", "Twitter-II zero-shot, MVSA labels"))
AIMED = ("mvsa_bal", "twitter_in_bal")  # the aims are judged where the labels come from the benchmark's own pool
SHORT = {"mvsa_bal": "MVSA held-out folds", "twitter_in_bal": "Twitter-II held-out partitions",
         "twitter_bal": "Twitter-II zero-shot (MVSA labels)"}
METRICS = ("mvsa_bal", "mvsa_acc", "twitter_bal", "twitter_acc", "twitter_in_bal", "twitter_in_acc")


def mean_std(stats: dict, bench: str) -> str:
    return f"{stats[bench][0]:.4f} ± {stats[bench][1]:.4f}"


def curve_table(summary: dict, sizes: list) -> tuple[list[str], list[list[str]]]:
    """The docs' table of the plain curve: `visent adapt` from the student against ImageNet features, per N."""
    columns = ["N labels", "`visent adapt` from the student, MVSA", "from ImageNet features, MVSA",
               "adapt, Twitter-II", "ImageNet, Twitter-II"]
    rows = []
    if "0/student" in summary:
        student = summary["0/student"]
        rows.append(["0 (the zero-label student)", mean_std(student, "mvsa_bal"), "", mean_std(student, "twitter_bal"),
                     ""])
    for key in sizes:
        adapted, scratch = summary.get(f"{key}/adapted"), summary.get(f"{key}/scratch")
        if adapted and scratch:
            rows.append(["all" if key == "all" else str(key), mean_std(adapted, "mvsa_bal"),
                         mean_std(scratch, "mvsa_bal"), mean_std(adapted, "twitter_bal"),
                         mean_std(scratch, "twitter_bal")])
    return columns, rows


def strategy_table(summary: dict, strategies: list[str], sizes: list[int]) -> tuple[list[str], list[list[str]]]:
    """The docs' table of --strategy: per benchmark of :data:`BENCHES` the summary has, then per N, each
    strategy's balanced accuracy (the zero-label student's in the first strategy's column)."""
    benches = [bench for bench, _ in BENCHES if any(bench in cell for cell in summary.values())]
    columns = ["Benchmark", "N labels", *strategies]
    rows = []
    for bench in benches:
        if bench in summary.get("0/student", {}):
            rows.append([SHORT[bench], "0 (the zero-label student)", mean_std(summary["0/student"], bench)]
                        + [""] * (len(strategies) - 1))
        for n in sizes:
            rows.append([SHORT[bench], str(n)] + [mean_std(summary[f"{n}/{s}"], bench)
                                                  if bench in summary.get(f"{n}/{s}", {}) else "" for s in strategies])
    return columns, rows


def summarise_strategies(rows: list[dict], strategies: list[str], sizes: list[int], folds: int, args,
                         summary: dict) -> None:
    """The strategies side by side per N (mean ± std over folds x draws), the aims against random, and the
    paired differences (same fold and draw) against random."""
    def stats(sel: list[dict]) -> dict:
        """mean, std and count of each figure, over the rows that have it"""
        found = {k: [r[k] for r in sel if k in r] for k in METRICS}
        return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in found.items() if v}

    student = [r for r in rows if r["head"] == "student"]
    cells = {}
    for strategy in strategies:
        for n in sizes:
            sel = [r for r in rows if r["head"] == "adapted" and r["strategy"] == strategy and r["n"] == n]
            if sel:
                cells[strategy, n] = sel
                summary[f"{n}/{strategy}"] = stats(sel)
                for pool in POOLS:
                    picked = [r for r in sel if r.get("pool", "mvsa") == pool]
                    if picked:
                        summary[f"{n}/{strategy}"]["per_class" + ("" if pool == "mvsa" else f" {pool}")] = {
                            c: float(np.mean([r["per_class"][c] for r in picked])) for c in CLASSES}
    if student:
        summary["0/student"] = {k: v for k, v in stats(student).items() if k.endswith("_bal")}
    for bench, title in BENCHES:
        if not any(bench in cell for cell in summary.values()):
            continue
        fitted_by = "`visent adapt`" if args.learner == "adapt" else f"the {args.learner} learner"
        print(f"\n{title}: binary balanced accuracy of {fitted_by} on the picked labels, mean ± std over "
              f"{folds} folds x {args.draws} draws (picks {args.picks})")
        print("| N labels | " + " | ".join(strategies) + " |")
        print("|---" * (len(strategies) + 1) + "|")
        if bench in summary.get("0/student", {}):
            m, sd, _ = summary["0/student"][bench]
            print("| 0 (the zero-label student) | " + " | ".join([f"{m:.4f} ± {sd:.4f}"] * len(strategies)) + " |")
        for n in sizes:
            print(f"| {n} | " + " | ".join(
                f"{summary[f'{n}/{s}'][bench][0]:.4f} ± {summary[f'{n}/{s}'][bench][1]:.4f}"
                if bench in summary.get(f"{n}/{s}", {}) else "" for s in strategies) + " |")
    for pool in POOLS:
        which = "per_class" + ("" if pool == "mvsa" else f" {pool}")
        print(f"\nlabels per class picked from the {pool} pool (mean negative / neutral / positive):")
        for n in sizes:
            shown = []
            for s in strategies:
                if which in summary.get(f"{n}/{s}", {}):
                    per_class = summary[f"{n}/{s}"][which]
                    shown.append(f"{s} " + "/".join(f"{per_class[c]:.0f}" for c in CLASSES))
            print(f"  N={n:<4} " + "   ".join(shown))
    if "random" not in strategies:
        return
    print("\npaired against random (same fold and draw), points of balanced accuracy, mean ± std:")
    for s in strategies:
        if s == "random":
            continue
        for n in sizes:
            if (s, n) not in cells or ("random", n) not in cells:
                continue
            base = {pair(r): r for r in cells["random", n]}
            line = []
            for bench, _ in BENCHES:
                d = [100 * (r[bench] - base[pair(r)][bench]) for r in cells[s, n]
                     if pair(r) in base and bench in r and bench in base[pair(r)]]
                if d:
                    better = sum(x > 0 for x in d)
                    line.append(f"{SHORT[bench]} {np.mean(d):+.2f} ± {np.std(d):.2f} ({better}/{len(d)} better)")
            print(f"  {s} - random, N={n:<4} " + " | ".join(line))
    print("\naims (balanced accuracy):")
    for s in strategies:
        if s == "random":
            continue
        for bench, title in BENCHES:
            if bench not in AIMED:
                continue
            r200 = summary.get("200/random", {}).get(bench)
            s100, s200 = summary.get(f"100/{s}", {}).get(bench), summary.get(f"200/{s}", {}).get(bench)
            if r200 and s100:
                print(f"  {title:<20} {s} 100 {s100[0]:.4f} vs random 200 {r200[0]:.4f}: "
                      f"{'reaches' if s100[0] >= r200[0] else 'does not reach'} it ({100 * (s100[0] - r200[0]):+.2f})")
            if r200 and s200:
                gain = 100 * (s200[0] - r200[0])
                print(f"  {title:<20} {s} 200 - random 200 = {gain:+.2f} points (aim >= +1.5: "
                      f"{'met' if gain >= 1.5 else 'not met'})")


if __name__ == "__main__":
    main()
