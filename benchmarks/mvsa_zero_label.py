"""Zero-human-label protocol on the MVSA crawl, 5-fold cross-validation by post id.

For each fold, ``visent build`` runs on 4/5 of the posts with the labels file withheld (the crawl is seen
through a folder that holds only ``data/``), and the student is evaluated on the held-out 1/5 against the
human *image* labels. Prints per-fold and mean ± std of binary accuracy, balanced accuracy and macro-F1
(positive vs negative images, neutral left out) and 3-class macro-F1.

    python benchmarks/mvsa_zero_label.py ../shared/data/mvsa-single

Image features are cached per (backbone, image hash), so folds after the first reuse them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import KFold

from visent.build import BuildOptions, build
from visent.embed import DEFAULT_RUNTIME, RUNTIMES
from visent.evaluate import evaluate
from visent.ingest.readers import read_mvsa_labels
from visent.model import VisentModel
from visent.signals import SIGNALS
from visent.train import DEFAULT_BACKBONE, StudentHead

from record import add_results_argument, save_results


def human_probe(model_dir: Path, train_ids: list[str], test_ids: list[str], labels: dict, data_dir: Path) -> float:
    """Reference only: the student's head trained on human image labels (same features, same C)."""
    model = VisentModel.load(model_dir)

    def features(post_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        kept = [i for i in post_ids if labels.get(i, (None, None))[1] is not None]
        X, _ = model.features([data_dir / f"{i}.jpg" for i in kept])
        y = np.array([labels[i][1] for i in kept])
        ok = ~np.isnan(X).any(axis=1)
        return X[ok], y[ok]

    X, y = features(train_ids)
    head = StudentHead(C=model.head.C).fit(X, y)
    X, y = features(test_ids)
    binary = y != "neutral"
    probs = head.predict_proba(X[binary])
    pred = np.where(probs[:, 2] > probs[:, 0], "positive", "negative")
    return float(balanced_accuracy_score(y[binary], pred))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mvsa", type=Path, nargs="?", default=Path(__file__).resolve().parents[2] / "shared/data/mvsa-single")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "visent-bench-mvsa")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help="one, or several joined with +")
    parser.add_argument("--teacher", default="vader")
    parser.add_argument("--target", default="soft", choices=["soft", "hard"])
    parser.add_argument("--tta", default="none", choices=["none", "flip", "crops"])
    parser.add_argument("--runtime", default=DEFAULT_RUNTIME, choices=list(RUNTIMES),
                        help="how the backbone runs (features are cached per runtime)")
    parser.add_argument("--signal", action="append", default=[], choices=list(SIGNALS),
                        help="image signal fused with the backbone's features (repeatable)")
    parser.add_argument("--thresholds", help="negative,neutral,positive confidence thresholds (default: the teacher's)")
    parser.add_argument("--balance", action="store_true")
    parser.add_argument("--target-temperature", type=float, default=1.0)
    parser.add_argument("--self-training", type=int, default=0)
    parser.add_argument("--no-calibrate", action="store_true", help="leave the student's probabilities uncalibrated")
    parser.add_argument("--int8-calibration", default="packaged", choices=["packaged", "dataset"],
                        help="int8: the network shipped for the backbone, or ranges measured on each fold's images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--human-probe", action="store_true",
                        help="also train the same head on the training folds' human image labels (a reference line)")
    parser.add_argument("--json", type=Path, help="write all figures here")
    add_results_argument(parser, "mvsa_zero_label")
    args = parser.parse_args()

    data_dir = args.mvsa.resolve() / "data"  # the held-out CSVs name absolute paths
    labels = read_mvsa_labels(args.mvsa / "labelResultAll.txt")
    ids = sorted({p.stem for p in data_dir.glob("*.jpg")}, key=lambda s: (len(s), s))
    thresholds = None
    if args.thresholds:
        thresholds = dict(zip(("negative", "neutral", "positive"), (float(x) for x in args.thresholds.split(","))))
    options = BuildOptions(teacher=args.teacher, thresholds=thresholds,
                           backbone=args.backbone, target=args.target, tta=args.tta, balance=args.balance,
                           seed=args.seed, runtime=args.runtime, signals=tuple(args.signal),
                           target_temperature=args.target_temperature, self_training=args.self_training,
                           calibrate=not args.no_calibrate, int8_calibration=args.int8_calibration)
    tta_tag = {"none": "0", "flip": "1"}.get(args.tta, args.tta)  # the names earlier runs used
    tag = f"{args.backbone}-{args.teacher}-{args.target}-tta{tta_tag}-t{args.thresholds or 'teacher'}-b{int(args.balance)}"
    tag += f"-{args.runtime}" if args.runtime != "torch" else ""
    tag += "".join(f"-{name}" for name in args.signal)
    tag += f"-T{args.target_temperature:g}" if args.target_temperature != 1.0 else ""
    tag += f"-st{args.self_training}" if args.self_training else ""
    tag += "-uncal" if args.no_calibrate else ""
    tag += "-int8dataset" if args.int8_calibration == "dataset" and args.runtime == "onnx-int8" else ""
    work = args.work / tag

    # The crawl as the pipeline sees it: images and texts, no labels file.
    crawl = args.work / "crawl-without-labels"
    crawl.mkdir(parents=True, exist_ok=True)
    if not (crawl / "data").exists():
        os.symlink(data_dir.resolve(), crawl / "data")

    folds = []
    splitter = KFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    for fold, (train_idx, test_idx) in enumerate(splitter.split(ids)):
        started = time.time()
        train_ids = {ids[i] for i in train_idx}
        fold_dir = work / f"fold{fold}"
        summary = build(crawl, fold_dir / "model", dataset=fold_dir / "dataset",
                        options=BuildOptions(**{**options.__dict__, "ingest": {"ids": train_ids}}))
        bench = fold_dir / "heldout.csv"
        with bench.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label"])
            for i in test_idx:
                image_label = labels.get(ids[i], (None, None))[1]
                if image_label is not None:
                    writer.writerow([str(data_dir / f"{ids[i]}.jpg"), image_label])
        report = evaluate(fold_dir / "model", bench, out=fold_dir / "heldout-report.json")
        row = {
            "fold": fold,
            "train_posts": len(train_ids),
            "kept": summary["train"]["n_train_posts"],
            "class_counts": summary["train"]["class_counts"],
            "test_binary_n": report.binary.n,
            "binary_accuracy": report.binary.accuracy,
            "balanced_accuracy": report.binary.balanced_accuracy,
            "macro_f1": report.binary.macro_f1,
            "macro_f1_3class": report.three_class.macro_f1,
            "ece": report.three_class.ece,
            "seconds": round(time.time() - started, 1),
        }
        if args.human_probe:
            row["probe_balanced_accuracy"] = human_probe(fold_dir / "model", [ids[i] for i in train_idx],
                                                         [ids[i] for i in test_idx], labels, data_dir)
        folds.append(row)
        print(f"fold {fold}: kept {row['kept']} {row['class_counts']} | binary n={row['test_binary_n']} "
              f"acc={row['binary_accuracy']:.4f} bal_acc={row['balanced_accuracy']:.4f} "
              f"macro_f1={row['macro_f1']:.4f} | 3-class macro_f1={row['macro_f1_3class']:.4f} "
              f"ece={row['ece']:.3f} | {row['seconds']} s"
              + (f" | human-label probe bal_acc={row['probe_balanced_accuracy']:.4f}" if args.human_probe else ""),
              flush=True)

    print(f"\n{tag}: {args.folds}-fold zero-human-label protocol on {args.mvsa}")
    summary = {}
    keys = ["binary_accuracy", "balanced_accuracy", "macro_f1", "macro_f1_3class", "ece"]
    for key in keys + (["probe_balanced_accuracy"] if args.human_probe else []):
        values = [f[key] for f in folds]
        summary[key] = {"mean": float(np.mean(values)), "std": float(statistics.pstdev(values))}
        print(f"  {key:<18} {summary[key]['mean']:.4f} ± {summary[key]['std']:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"config": tag, "folds": folds, "summary": summary}, indent=2))
    columns, table = fold_table(folds, summary, args.human_probe)
    save_results(args.results, folds, columns=columns, table=table, summary=summary, config=tag)


def fold_table(folds: list[dict], summary: dict, probe: bool) -> tuple[list[str], list[list[str]]]:
    """The docs' table: a row per fold, then the mean ± std (in bold) of each figure."""
    columns = ["fold", "kept posts (neg / neu / pos)", "binary n", "binary accuracy", "balanced accuracy", "macro-F1",
               "3-class macro-F1", "ECE"] + (["human-label probe (balanced)"] if probe else [])
    keys = ["binary_accuracy", "balanced_accuracy", "macro_f1", "macro_f1_3class", "ece"]
    keys += ["probe_balanced_accuracy"] if probe else []
    rows = []
    for f in folds:
        counts = f["class_counts"]
        kept = f"{f['kept']} ({' / '.join(str(counts.get(c, 0)) for c in ('negative', 'neutral', 'positive'))})"
        rows.append([str(f["fold"]), kept, str(f["test_binary_n"])]
                    + [f"{f[k]:.3f}" if k == "ece" else f"{f[k]:.4f}" for k in keys])
    mean = [f"**{summary[k]['mean']:.3f}**" if k == "ece"
            else f"**{summary[k]['mean']:.4f} ± {summary[k]['std']:.4f}**" for k in keys]
    rows.append(["**mean ± std**", "", ""] + mean)
    return columns, rows


if __name__ == "__main__":
    main()
