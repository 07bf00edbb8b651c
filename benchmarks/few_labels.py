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

    python benchmarks/mvsa_zero_label.py --teacher default --work /tmp/bench-F     # the per-fold students
    python benchmarks/few_labels.py --folds-dir /tmp/bench-F/efficientnet-lite0-ms-default-soft-tta0-tteacher-b0-onnx-int8
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from visent.core.labels import CLASS_INDEX, CLASSES
from visent.core.numeric import softmax
from visent.evaluate import compute_metrics, load_benchmark
from visent.ingest.readers import read_mvsa_labels
from visent.model import VisentModel
from visent.model.adapt import adapt_head, choose_C, fit_towards

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def binary_scores(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(balanced accuracy, accuracy) of positive vs negative, neutral images left out (evaluate's protocol)."""
    binary = compute_metrics([CLASSES[c] for c in y], probs)["binary"]
    return binary["balanced_accuracy"], binary["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds-dir", type=Path, required=True, help="fold0..foldK made by mvsa_zero_label.py")
    parser.add_argument("--mvsa", type=Path, default=SHARED / "mvsa-single")
    parser.add_argument("--twitter-ii", type=Path, default=SHARED / "twitter-ii")
    parser.add_argument("--sizes", default="25,50,100,200,400,all",
                        help="label counts; 'all' is every labelled training post of the fold (the ceiling)")
    parser.add_argument("--draws", type=int, default=3, help="seeded draws of the N labels per fold")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    labels = read_mvsa_labels(args.mvsa / "labelResultAll.txt")
    data_dir = (args.mvsa / "data").resolve()
    twitter = load_benchmark(f"twitter-ii={args.twitter_ii}")
    y_twitter = np.array([CLASS_INDEX[label] for label in twitter.labels])
    ALL = 10**9  # 'all': every labelled training post of the fold
    sizes = [ALL if s == "all" else int(s) for s in args.sizes.split(",")]
    folds = sorted(p for p in args.folds_dir.glob("fold*") if (p / "model" / "config.json").exists())
    if not folds:
        raise SystemExit(f"{args.folds_dir}: no fold*/model; run benchmarks/mvsa_zero_label.py first")
    rows: list[dict] = []
    for fold_dir in folds:
        started = time.time()
        model = VisentModel.load(fold_dir / "model")
        with (fold_dir / "heldout.csv").open() as handle:
            test = {Path(r["path"]).stem: r["label"] for r in csv.DictReader(handle)}
        pool = [i for i, (_, image) in labels.items() if image is not None and i not in test]
        paths = [data_dir / f"{i}.jpg" for i in pool] + [data_dir / f"{i}.jpg" for i in test] + list(twitter.paths)
        X, _ = model.features(paths)
        ok = ~np.isnan(X).any(axis=1)
        n_pool, n_test = len(pool), len(test)
        y_pool = np.array([CLASS_INDEX[labels[i][1]] for i in pool])
        y_test = np.array([CLASS_INDEX[label] for label in test.values()])
        X_pool, X_test, X_tw = X[:n_pool], X[n_pool:n_pool + n_test], X[n_pool + n_test:]
        pool_ok, test_ok, tw_ok = ok[:n_pool], ok[n_pool:n_pool + n_test], ok[n_pool + n_test:]
        head = model.head

        def score(predict, name: str, n: int, draw: int) -> None:
            mvsa = binary_scores(predict(X_test[test_ok]), y_test[test_ok])
            tw = binary_scores(predict(X_tw[tw_ok]), y_twitter[tw_ok])
            rows.append({"fold": fold_dir.name, "n": "all" if n == ALL else n, "draw": draw, "head": name,
                         "mvsa_bal": mvsa[0], "mvsa_acc": mvsa[1], "twitter_bal": tw[0], "twitter_acc": tw[1]})

        score(head.predict_proba, "student", 0, 0)
        candidates = np.flatnonzero(pool_ok)
        for n in sizes:
            for draw in range(1 if n >= len(candidates) else args.draws):
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
        print(f"{fold_dir.name}: {n_pool} labelled training posts, {n_test} held out, {time.time() - started:.0f} s",
              flush=True)

    print(f"\nbinary balanced accuracy (accuracy), mean ± std over {len(folds)} folds x {args.draws} draws")
    print(f"{'N':>5} {'head':<8} {'MVSA held-out fold':>28} {'Twitter-II zero-shot':>28}")
    summary: dict = {}
    for n in [0] + sizes:
        for name in (["student"] if n == 0 else ["adapted", "scratch"]):
            key = "all" if n == ALL else n
            sel = [r for r in rows if r["n"] == key and r["head"] == name]
            if not sel:
                continue
            stats = {k: (float(np.mean([r[k] for r in sel])), float(np.std([r[k] for r in sel])))
                     for k in ("mvsa_bal", "mvsa_acc", "twitter_bal", "twitter_acc")}
            summary[f"{key}/{name}"] = stats
            cell = lambda b, a: f"{stats[b][0]:.4f} ± {stats[b][1]:.4f} ({stats[a][0]:.3f})"  # noqa: E731
            print(f"{key:>5} {name:<8} {cell('mvsa_bal', 'mvsa_acc'):>28} {cell('twitter_bal', 'twitter_acc'):>28}")
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
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
