"""Image signals on MVSA photos: OCR text and faces. Speed, coverage, and whether they help the zero-label student.

Speed (default): on the first ``--n`` MVSA images (by post id), each signal runs uncached after a warm-up image;
prints images/s (decoding included), the model loading time and the share of images with text / with faces.

``--all`` then computes both signals for every image into the feature cache (``$VISENT_CACHE``); run it once, it
is the long part (``nice`` it on a shared machine).

``--evaluate`` measures the lift on the 5-fold zero-human-label protocol of ``benchmarks/mvsa_zero_label.py``
(same KFold split of post ids, same seed), simplified to what the signals touch: per fold, the training posts'
texts are read by the teacher (VADER), posts below the teacher's confidence thresholds are dropped, and the
student head (``StudentHead``, soft targets, C chosen on a validation split of teacher labels over the same grid
as ``visent train``) is fitted on the cached EfficientNet-Lite0 features (ONNX runtime) with and without the
signal columns appended (the head standardises every column). Each is scored on the held-out fold against the
human *image* labels: binary balanced accuracy (positive vs negative, neutral left out). The duplicate filtering
of ``visent clean`` is not repeated here, so the absolute figures differ slightly from mvsa_zero_label's; the
comparison between feature sets is on identical posts.

    python benchmarks/signals.py ../shared/data/mvsa-single --n 300
    nice python benchmarks/signals.py --n 0 --all          # fill the cache once
    python benchmarks/signals.py --n 0 --evaluate --json signals.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import KFold

from visent.core.labels import CLASS_INDEX, CLASSES
from visent.embed import FeatureCache, embed_images, load_backbone
from visent.ingest.readers import read_mvsa
from visent.signals.faces import FACE_FEATURES, face_features
from visent.signals.ocr import OCR_FEATURES, ocr_features
from visent.teach import load_teacher
from visent.train import C_GRID, StudentHead, select_C

from record import add_results_argument, save_results

CONFIDENCE = {"negative": 0.5, "neutral": 0.5, "positive": 0.5}  # visent's measured thresholds for VADER


def mvsa_posts(mvsa: Path) -> tuple[list[str], list[Path], list[str], list[str | None]]:
    """(post ids, image paths, post texts, human image labels) of the MVSA posts that have an image."""
    posts = {p.post_id: p for p in read_mvsa(mvsa) if p.image_ref and not p.error}
    ids = sorted(posts, key=lambda s: (len(s), s))
    paths = [Path(posts[i].base_dir or mvsa) / str(posts[i].image_ref) for i in ids]
    return ids, paths, [posts[i].text for i in ids], [posts[i].image_label for i in ids]


def speed(paths: list[Path], threads: int) -> dict[str, float]:
    """Uncached images/s of each signal on ``paths`` (after loading the models on one image)."""
    out: dict[str, float] = {}
    for name, function, found in (("ocr", ocr_features, "with_text"), ("faces", face_features, "with_face")):
        started = time.perf_counter()
        function(paths[:1], cache=False, threads=threads)
        out[f"{name}_load_s"] = time.perf_counter() - started
        started = time.perf_counter()
        X, status = function(paths, cache=False, threads=threads)
        seconds = time.perf_counter() - started
        ok = [i for i, s in enumerate(status) if s.ok]
        out.update({f"{name}_images_per_s": len(paths) / seconds, f"{name}_s_per_image": seconds / len(paths),
                    f"{name}_{found}": float((X[ok, 0] > 0).mean()), f"{name}_errors": len(paths) - len(ok)})
    return out


def fold_scores(X: np.ndarray, soft: np.ndarray, train: np.ndarray, test: np.ndarray,
                image_labels: np.ndarray, seed: int) -> dict[str, float]:
    """Fit the student on the training rows' teacher targets; binary balanced accuracy on the test rows."""
    labels = np.array(CLASSES)[soft[train].argmax(axis=1)]
    C = select_C(X[train], soft[train], labels, 0.2, seed, C_GRID)[0]
    head = StudentHead(C=C).fit(X[train], soft[train])
    probs = head.predict_proba(X[test])
    y = image_labels[test]
    binary = y != "neutral"
    pred = np.where(probs[binary, CLASS_INDEX["positive"]] > probs[binary, CLASS_INDEX["negative"]],
                    "positive", "negative")
    return {"C": C, "balanced_accuracy": float(balanced_accuracy_score(y[binary], pred)), "n": int(binary.sum())}


def evaluate(args: argparse.Namespace, ids: list[str], paths: list[Path], texts: list[str],
             image_labels: list[str | None]) -> dict:
    cache = FeatureCache()
    started = time.perf_counter()
    base, base_status = embed_images(paths, None, load_backbone("efficientnet-lite0", device="cpu"), cache=cache,
                                     runtime="onnx", threads=args.threads)
    ocr, _ = ocr_features(paths, teacher=load_teacher(args.teacher), cache=cache, threads=args.threads)
    faces, _ = face_features(paths, cache=cache, threads=args.threads)
    print(f"features ready in {time.perf_counter() - started:.0f} s "
          f"(backbone {sum(s.state == 'cached' for s in base_status)}/{len(paths)} from the cache)", flush=True)
    soft = np.asarray(load_teacher(args.teacher).predict_proba(texts), dtype=np.float64)
    confident = np.array([p.max() >= CONFIDENCE[CLASSES[p.argmax()]] for p in soft])
    usable = ~(np.isnan(base).any(axis=1) | np.isnan(ocr).any(axis=1) | np.isnan(faces).any(axis=1))
    labels = np.array([label or "" for label in image_labels])
    sets = {"lite0": [base], "lite0+ocr": [base, ocr], "lite0+faces": [base, faces],
            "lite0+ocr+faces": [base, ocr, faces]}
    folds = []
    splitter = KFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    for fold, (train_idx, test_idx) in enumerate(splitter.split(ids)):
        train = train_idx[usable[train_idx] & confident[train_idx]]
        test = test_idx[usable[test_idx] & (labels[test_idx] != "")]
        row: dict = {"fold": fold, "train": int(len(train)), "test": int(len(test))}
        for name, blocks in sets.items():
            row[name] = fold_scores(np.concatenate(blocks, axis=1), soft, train, test, labels, args.seed)
        folds.append(row)
        print(f"fold {fold}: train {row['train']} test {row['test']} (binary n={row['lite0']['n']}) | "
              + " | ".join(f"{name} {row[name]['balanced_accuracy']:.4f} (C={row[name]['C']:g})" for name in sets),
              flush=True)
    summary = {}
    print(f"\n{args.folds}-fold zero-human-label protocol, binary balanced accuracy against the image labels:")
    for name in sets:
        values = [f[name]["balanced_accuracy"] for f in folds]
        lift = [f[name]["balanced_accuracy"] - f["lite0"]["balanced_accuracy"] for f in folds]
        summary[name] = {"mean": float(np.mean(values)), "std": float(statistics.pstdev(values)),
                         "lift_mean": float(np.mean(lift)), "lift_std": float(statistics.pstdev(lift)),
                         "folds_better": int(sum(d > 0 for d in lift))}
        print(f"  {name:<16} {summary[name]['mean']:.4f} ± {summary[name]['std']:.4f}"
              + ("" if name == "lite0" else f"   lift {summary[name]['lift_mean']:+.4f} ± {summary[name]['lift_std']:.4f}"
                 f" (better in {summary[name]['folds_better']}/{args.folds} folds)"))
    return {"folds": folds, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mvsa", type=Path, nargs="?", default=Path(__file__).resolve().parents[2] / "shared/data/mvsa-single")
    parser.add_argument("--n", type=int, default=300, help="images for the speed measurement (0: skip it)")
    parser.add_argument("--all", action="store_true", help="compute both signals for every image into the cache")
    parser.add_argument("--evaluate", action="store_true", help="measure the lift on the 5-fold zero-label protocol")
    parser.add_argument("--threads", type=int, default=1, help="inference threads per model")
    parser.add_argument("--teacher", default="vader")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write all figures here")
    add_results_argument(parser, "signals")
    args = parser.parse_args()

    ids, paths, texts, image_labels = mvsa_posts(args.mvsa)
    print(f"{len(ids)} MVSA posts with an image in {args.mvsa}", flush=True)
    results: dict = {"images": len(ids), "threads": args.threads}
    if args.n > 0:
        sample = paths[: args.n]
        results["speed"] = figures = speed(sample, args.threads)
        print(f"first {len(sample)} images, {args.threads} thread(s), uncached:\n"
              f"  OCR   {figures['ocr_images_per_s']:.2f} images/s ({figures['ocr_s_per_image']:.3f} s/image), "
              f"with text {figures['ocr_with_text']:.1%}, errors {figures['ocr_errors']}, "
              f"models loaded in {figures['ocr_load_s']:.1f} s\n"
              f"  faces {figures['faces_images_per_s']:.2f} images/s ({figures['faces_s_per_image']:.3f} s/image), "
              f"with a face {figures['faces_with_face']:.1%}, errors {figures['faces_errors']}, "
              f"models loaded in {figures['faces_load_s']:.1f} s", flush=True)
    if args.all:
        for name, function in (("ocr", ocr_features), ("faces", face_features)):
            started = time.perf_counter()
            X, status = function(paths, threads=args.threads)
            ok = [i for i, s in enumerate(status) if s.ok]
            column = X[ok, 0] > 0
            results[f"all_{name}"] = {"seconds": time.perf_counter() - started, "errors": len(paths) - len(ok),
                                      "coverage": float(column.mean()),
                                      "computed": sum(s.state == "ok" for s in status)}
            print(f"all {len(paths)} images, {name}: {results[f'all_{name}']['seconds']:.0f} s "
                  f"({results[f'all_{name}']['computed']} computed, the rest cached), "
                  f"{'with text' if name == 'ocr' else 'with a face'} {column.mean():.1%}, "
                  f"errors {len(paths) - len(ok)}", flush=True)
    if args.evaluate:
        results["evaluate"] = evaluate(args, ids, paths, texts, image_labels)
    results["columns"] = {"ocr": list(OCR_FEATURES), "faces": list(FACE_FEATURES)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if "evaluate" in results:
        summary = results["evaluate"]["summary"]
        table = [[name, f"{s['mean']:.4f} ± {s['std']:.4f}",
                  "" if name == "lite0" else f"{s['lift_mean']:+.4f} ± {s['lift_std']:.4f}",
                  "" if name == "lite0" else f"{s['folds_better']} / {args.folds}"] for name, s in summary.items()]
        save_results(args.results, results["evaluate"]["folds"],
                     columns=["features", "balanced accuracy", "lift over Lite0", "folds better"], table=table,
                     summary=summary, speed=results.get("speed"), teacher=args.teacher)
    else:
        save_results(args.results, [results])


if __name__ == "__main__":
    main()
