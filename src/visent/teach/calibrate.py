"""Fit the VADER teacher's calibration on SemEval-2017 task 4A tweets.

    python -m visent.teach.calibrate /path/to/semeval2017-task4a/train [--out FILE]

Every ``*.tsv`` (``id<TAB>label<TAB>text``) in the folder except the held-out file trains a
multinomial logistic regression on :data:`visent.teach.vader.FEATURES`. The held-out file
(``twitter-2016test-A.tsv``, the SemEval-2016 test set) is only scored: macro-recall (the SemEval
metric), accuracy, macro-F1 and expected calibration error, next to the usual VADER rule
(compound >= 0.05 positive, <= -0.05 negative). Tweets of the held-out file, by id or by text,
never train. The result is a small JSON with the weights, the training class mix, provenance
and the scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, recall_score
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from visent.core.labels import CLASS_INDEX, CLASSES
from visent.core.numeric import expected_calibration_error
from visent.core.store import atomic_write_json
from visent.core.version import package_version
from visent.teach.data import Tweets, file_info, read_semeval
from visent.teach.text import preprocess_tweet
from visent.teach.vader import DEFAULT_CALIBRATION, FEATURES, VaderTeacher, vader_features

HELDOUT = "twitter-2016test-A.tsv"


def score(y: np.ndarray, pred: np.ndarray, probs: np.ndarray | None = None) -> dict[str, float | None]:
    """Macro-recall, accuracy, macro-F1 and (given probabilities) ECE."""
    labels = list(range(len(CLASSES)))
    out: dict[str, float | None] = {
        "macro_recall": float(recall_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "ece": None if probs is None else expected_calibration_error(y, probs),
    }
    return {k: (None if v is None else round(v, 4)) for k, v in out.items()}


def compound_rule(compound: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """The usual VADER labels: positive at compound >= threshold, negative at <= -threshold."""
    return np.where(compound >= threshold, CLASS_INDEX["positive"],
                    np.where(compound <= -threshold, CLASS_INDEX["negative"], CLASS_INDEX["neutral"]))


def calibrate(data_dir: Path, out: Path, heldout: str = HELDOUT, C: float = 1.0) -> dict[str, object]:
    """Fit, score and write the calibration JSON; returns what was written."""
    data_dir = Path(data_dir)
    heldout_path = data_dir / heldout
    if not heldout_path.is_file():
        raise FileNotFoundError(f"held-out file {heldout_path} not found (choose another with --heldout)")
    train_paths = sorted(p for p in data_dir.glob("*.tsv") if p.name != heldout)
    if not train_paths:
        raise FileNotFoundError(f"no training *.tsv files in {data_dir} besides {heldout}")

    test = Tweets()
    n_test = read_semeval(heldout_path, test, set(), set())
    train = Tweets()
    seen_ids, test_texts = set(test.ids), {preprocess_tweet(t) for t in test.texts}
    train_files = [file_info(p, read_semeval(p, train, seen_ids, test_texts)) for p in train_paths]
    y_train, y_test = np.asarray(train.labels), np.asarray(test.labels)
    missing = [c for i, c in enumerate(CLASSES) if not np.any(y_train == i)]
    if missing:
        raise ValueError(f"the training files have no {', '.join(missing)} tweets")

    analyzer = SentimentIntensityAnalyzer()
    print(f"scoring {len(train.texts)} training and {n_test} held-out tweets with VADER", file=sys.stderr)
    x_train, x_test = vader_features(train.texts, analyzer), vader_features(test.texts, analyzer)
    model = LogisticRegression(C=C, max_iter=5000).fit(x_train, y_train)
    train_prior = np.bincount(y_train, minlength=len(CLASSES)) / len(y_train)

    result: dict[str, object] = {
        "format": 1,
        "teacher": "vader",
        "classes": list(CLASSES),
        "features": list(FEATURES),
        "coef": model.coef_.tolist(),
        "intercept": model.intercept_.tolist(),
        "train_prior": train_prior.tolist(),
        "provenance": {
            "data": "SemEval-2017 task 4A (subtask A, English tweets)",
            "command": f"python -m visent.teach.calibrate {data_dir} --heldout {heldout} --C {C}",
            "created": time.strftime("%Y-%m-%d"),
            "train_files": train_files,
            "heldout_file": file_info(heldout_path, n_test),
            "n_train": len(y_train),
            "n_heldout": n_test,
            "dropped_train_lines": dict(sorted(train.dropped.items())),
            "dropped_heldout_lines": dict(sorted(test.dropped.items())),
            "model": f"sklearn LogisticRegression(C={C}, multinomial, lbfgs)",
            "versions": {p: package_version(p) for p in ("visent", "vaderSentiment", "scikit-learn", "numpy")},
        },
        "metrics": {},
    }
    metrics: dict[str, object] = {"n": n_test}
    if n_test:
        for prior in ("train", "uniform"):
            probs = VaderTeacher(result, prior=prior).predict_proba(test.texts)
            if prior == "train" and not np.allclose(probs, model.predict_proba(x_test), atol=1e-9):
                raise RuntimeError("the numpy teacher disagrees with the fitted model")
            metrics[f"calibrated_prior_{prior}"] = score(y_test, probs.argmax(axis=1), probs)
        metrics["compound_rule_0.05"] = score(y_test, compound_rule(x_test[:, FEATURES.index("compound")]))
    result["metrics"] = {"heldout": metrics}
    atomic_write_json(out, result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m visent.teach.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder of SemEval task 4A *.tsv files (id, label, text)")
    parser.add_argument("--out", type=Path, default=DEFAULT_CALIBRATION,
                        help="JSON to write (default: the one shipped with visent)")
    parser.add_argument("--heldout", default=HELDOUT,
                        help=f"file in data_dir that is scored but never trained on (default: {HELDOUT})")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 regularisation strength (default: 1.0)")
    args = parser.parse_args(argv)
    try:
        result = calibrate(args.data_dir, args.out, args.heldout, args.C)
    except (OSError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {args.out}", file=sys.stderr)
    for name, values in result["metrics"]["heldout"].items():  # type: ignore[index, union-attr]
        print(f"{name}: {values}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
