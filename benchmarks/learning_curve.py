"""Learning curve of the zero-label student: how big must a crawl be, and is the student still rising at MVSA's size?

For each seed, the MVSA posts are split 5-fold (fold = seed % 5 held out); N posts are drawn (seeded) from the
other four folds, and ``visent build`` runs on them with no labels (the crawl seen through a folder with only
``data/``). The student is scored on the held-out fold's human image labels and on Twitter-II (zero-shot, 603
photos); beside it, the same head trained on the same N posts' human *image* labels (same features, same C), the
reference a labelled crawl of that size would give.

    python benchmarks/learning_curve.py --sizes 250,500,1000,2000,all --seeds 5

Image features are cached by content, so after the first build only the stages' own work is paid.
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
from sklearn.model_selection import KFold

from visent.build import BuildOptions, build
from visent.evaluate import compute_metrics, load_benchmark
from visent.ingest.readers import read_mvsa_labels
from visent.model import VisentModel
from visent.train import StudentHead

from record import add_results_argument, save_results

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def binary_scores(probs: np.ndarray, labels: list[str]) -> tuple[float, float]:
    """(balanced accuracy, accuracy) of positive vs negative, neutral images left out (evaluate's protocol)."""
    binary = compute_metrics(labels, probs)["binary"]
    return binary["balanced_accuracy"], binary["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mvsa", type=Path, default=SHARED / "mvsa-single")
    parser.add_argument("--twitter-ii", type=Path, default=SHARED / "twitter-ii")
    parser.add_argument("--sizes", default="250,500,1000,2000,all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--teacher", default="default")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "visent-bench-curve")
    parser.add_argument("--json", type=Path)
    add_results_argument(parser, "learning_curve")
    args = parser.parse_args()

    data_dir = (args.mvsa / "data").resolve()
    labels = read_mvsa_labels(args.mvsa / "labelResultAll.txt")
    ids = sorted({p.stem for p in data_dir.glob("*.jpg")}, key=lambda s: (len(s), s))
    twitter = load_benchmark(f"twitter-ii={args.twitter_ii}")
    crawl = args.work / "crawl-without-labels"
    crawl.mkdir(parents=True, exist_ok=True)
    if not (crawl / "data").exists():
        os.symlink(data_dir, crawl / "data")
    splits = list(KFold(n_splits=5, shuffle=True, random_state=0).split(ids))
    # rows are kept as they come, so an interrupted curve resumes where it stopped
    done_file = args.work / "rows.jsonl"
    done = [json.loads(line) for line in done_file.read_text().splitlines()] if done_file.exists() else []
    rows = []
    for seed in range(args.seeds):
        train_idx, test_idx = splits[seed % 5]
        pool = [ids[i] for i in train_idx]
        test = [(ids[i], labels[ids[i]][1]) for i in test_idx if labels.get(ids[i], (None, None))[1]]
        for size in args.sizes.split(","):
            previous = [r for r in done if r["seed"] == seed and r["size"] == size and r["teacher"] == args.teacher]
            if previous:
                rows.append(previous[-1])
                continue
            n = len(pool) if size == "all" else int(size)
            rng = np.random.default_rng(seed)
            chosen = sorted(rng.choice(len(pool), size=min(n, len(pool)), replace=False))
            posts = {pool[i] for i in chosen}
            run = args.work / f"seed{seed}-n{size}"
            started = time.time()
            summary = build(crawl, run / "model", dataset=run / "dataset",
                            options=BuildOptions(teacher=args.teacher, seed=seed, ingest={"ids": posts}))
            model = VisentModel.load(run / "model")
            probs, _ = model.predict_proba([data_dir / f"{i}.jpg" for i, _ in test])
            ok = ~np.isnan(probs).any(axis=1)
            mvsa = binary_scores(probs[ok], [label for (_, label), good in zip(test, ok) if good])
            tw_probs, _ = model.predict_proba(twitter.paths)
            tw_ok = ~np.isnan(tw_probs).any(axis=1)
            tw = binary_scores(tw_probs[tw_ok], [label for label, good in zip(twitter.labels, tw_ok) if good])
            # the same posts with their human image labels: the head a labelled crawl of this size gives
            labelled = [i for i in sorted(posts) if labels.get(i, (None, None))[1]]
            X, _ = model.features([data_dir / f"{i}.jpg" for i in labelled])
            keep = ~np.isnan(X).any(axis=1)
            human = StudentHead(C=model.head.C).fit(X[keep], [labels[i][1] for i, k in zip(labelled, keep) if k])
            X_test, _ = model.features([data_dir / f"{i}.jpg" for i, _ in test])
            h_mvsa = binary_scores(human.predict_proba(X_test[ok]), [label for (_, label), good in zip(test, ok) if good])
            X_tw, _ = model.features(twitter.paths)
            h_tw = binary_scores(human.predict_proba(X_tw[tw_ok]),
                                 [label for label, good in zip(twitter.labels, tw_ok) if good])
            row = {"seed": seed, "size": size, "posts": len(posts), "kept": summary["train"]["n_train_posts"],
                   "mvsa_bal": mvsa[0], "mvsa_acc": mvsa[1], "twitter_bal": tw[0], "twitter_acc": tw[1],
                   "human_mvsa_bal": h_mvsa[0], "human_twitter_bal": h_tw[0], "seconds": round(time.time() - started),
                   "teacher": args.teacher}
            rows.append(row)
            with done_file.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(f"seed {seed} N={size:>4}: kept {row['kept']:>5} | student MVSA {mvsa[0]:.4f} Twitter-II {tw[0]:.4f}"
                  f" | human-label head MVSA {h_mvsa[0]:.4f} Twitter-II {h_tw[0]:.4f} | {row['seconds']} s", flush=True)

    print(f"\nbinary balanced accuracy, mean ± std over {args.seeds} seeds")
    print(f"{'N':>6} {'kept':>6} {'student MVSA':>17} {'student Tw-II':>17} {'human MVSA':>17} {'human Tw-II':>17}")
    summary = {}
    for size in args.sizes.split(","):
        sel = [r for r in rows if r["size"] == size]
        stats = {k: (float(np.mean([r[k] for r in sel])), float(np.std([r[k] for r in sel])))
                 for k in ("kept", "mvsa_bal", "twitter_bal", "human_mvsa_bal", "human_twitter_bal")}
        summary[size] = stats
        cells = " ".join(f"{stats[k][0]:.4f} ± {stats[k][1]:.4f}".rjust(17)
                         for k in ("mvsa_bal", "twitter_bal", "human_mvsa_bal", "human_twitter_bal"))
        print(f"{size:>6} {stats['kept'][0]:>6.0f} {cells}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    table = [[size if size == "all" else f"{int(size):,}", f"{stats['kept'][0]:,.0f}",
              *(f"{stats[k][0]:.4f} ± {stats[k][1]:.4f}"
                for k in ("mvsa_bal", "twitter_bal", "human_mvsa_bal", "human_twitter_bal"))]
             for size, stats in summary.items()]
    save_results(args.results, rows, columns=["posts", "kept", "student, MVSA fold", "student, Twitter-II",
                                              "human-label head, MVSA fold", "human-label head, Twitter-II"],
                 table=table, summary=summary, teacher=args.teacher, seeds=args.seeds)
    with (args.work / "curve.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
