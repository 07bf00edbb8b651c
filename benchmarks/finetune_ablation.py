"""Does partial fine-tuning of the backbone on the teacher's labels (FT-A style) beat the frozen backbone?

Same protocol and cached inputs as ``benchmarks/student_ablation.py`` (5-fold KFold by post id over MVSA-Single,
seed 0; per fold the posts that pass ``visent clean`` with VADER's threshold 0.5; human *image* labels for
evaluation only). Per fold and per recipe:

* ``frozen``: the student head (``StudentHead``, soft targets, C chosen on a 20% teacher-label split) on the
  frozen ImageNet backbone's pooled features;
* ``fine-tuned + head``: ``visent.train.finetune.finetune`` trains the last ``--blocks`` blocks and a linear layer
  on the kept posts' teacher probabilities (random resized crops and flips), then the same student head is fitted
  on the fine-tuned backbone's features (what ``visent train --finetune-blocks N`` does);
* ``fine-tuned, own layer``: the linear layer trained together with the blocks, as it is.

It runs on the CPU (minutes per fold and epoch) or on a GPU (``--device cuda``)::

    python benchmarks/student_ablation.py ../shared/data/mvsa-single --variants baseline   # caches the inputs
    python benchmarks/finetune_ablation.py --images ../shared/data/mvsa-single/data --blocks 2 --epochs 3

``--images`` may hold the photos under another extension or size (a copy shrunk for transfer, say); the post id is
the file's stem.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from student_ablation import THRESHOLD, kept_mask, scores, select_C, summarise  # noqa: E402

from visent.embed import embed_images, load_backbone  # noqa: E402
from visent.train import StudentHead  # noqa: E402
from visent.train.finetune import finetune  # noqa: E402

from record import add_results_argument, save_results  # noqa: E402


def image_files(folder: Path) -> tuple[list[str], list[Path]]:
    """Post ids in the ablation's order (by length, then text) and their image files."""
    files = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")}
    ids = sorted(files, key=lambda s: (len(s), s))
    return ids, [files[i] for i in ids]


def head_scores(X_train: np.ndarray, targets: np.ndarray, X_test: np.ndarray, y: np.ndarray, seed: int) -> dict:
    C = select_C(X_train, targets, seed)
    head = StudentHead(C=C).fit(X_train, targets)
    return {"C": C, **scores(head.predict_proba(X_test), y)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of the MVSA photos, <post id>.<ext>")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "visent-ablation",
                        help="student_ablation.py's cache: teacher-vader.npy, human-image-labels.npy, fold*-rows.npy")
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--folds", default="0,1,2,3,4", help="which of the 5 folds to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    add_results_argument(parser, "finetune_ablation")
    args = parser.parse_args()

    ids, paths = image_files(args.images)
    teacher = np.load(args.work / "teacher-vader.npy")
    human = np.load(args.work / "human-image-labels.npy")
    if len(teacher) != len(ids):
        sys.exit(f"{args.images} has {len(ids)} images but the cache in {args.work} has {len(teacher)} posts")
    splits = list(KFold(n_splits=5, shuffle=True, random_state=args.seed).split(ids))
    backbone = load_backbone(args.backbone, device=args.device)
    started = time.time()
    frozen, status = embed_images(paths, None, backbone, runtime="torch", batch_size=64)
    print(f"frozen features {frozen.shape} in {time.time() - started:.0f} s, "
          f"{sum(s.failed for s in status)} errors", flush=True)

    results: dict[str, list[dict]] = {"frozen": [], "fine-tuned + head": [], "fine-tuned, own layer": []}
    for fold in [int(f) for f in args.folds.split(",")]:
        rows = np.load(args.work / f"fold{fold}-rows.npy")
        rows = rows[np.isfinite(frozen[rows]).all(axis=1) & np.isfinite(teacher[rows]).all(axis=1)]
        rows = rows[kept_mask(teacher[rows], THRESHOLD)]
        test = splits[fold][1]
        test = test[(human[test] >= 0) & np.isfinite(frozen[test]).all(axis=1)]
        targets, y = teacher[rows], human[test]
        results["frozen"].append({"fold": fold, **head_scores(frozen[rows], targets, frozen[test], y, args.seed)})

        started = time.time()
        tuned = finetune(backbone, [paths[i] for i in rows], targets, n_blocks=args.blocks, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        seconds = time.time() - started
        wanted = np.concatenate([rows, test])
        features, _ = embed_images([paths[i] for i in wanted], None, tuned.backbone, runtime="torch", batch_size=64)
        X_train, X_test = features[: len(rows)], features[len(rows):]
        results["fine-tuned + head"].append({"fold": fold, "finetune_seconds": round(seconds, 1),
                                             "history": tuned.history,
                                             **head_scores(X_train, targets, X_test, y, args.seed)})
        results["fine-tuned, own layer"].append({"fold": fold, **scores(tuned.predict_proba(X_test), y)})
        print(f"fold {fold}: train {len(rows)} test {len(test)} | fine-tune {seconds:.0f} s | "
              + " | ".join(f"{name} {runs[-1]['balanced_accuracy']:.4f}" for name, runs in results.items()),
              flush=True)

    print(f"\n{args.backbone}, last {args.blocks} blocks, {args.epochs} epochs, lr {args.lr}, on {args.device}; "
          "mean ± std over folds (human image labels for evaluation only)\n")
    print("| recipe | balanced accuracy | binary accuracy | 3-class macro-F1 | 3-class ECE |")
    print("|---|---|---|---|---|")
    table = []
    for name, runs in results.items():
        cells = [f"{m:.4f} ± {s:.4f}" for m, s in (summarise([r[k] for r in runs]) for k in
                                                   ("balanced_accuracy", "binary_accuracy", "macro_f1_3class", "ece"))]
        print(f"| {name} | " + " | ".join(cells) + " |")
        table.append([name, *cells])
    if args.json:
        args.json.write_text(json.dumps(vars(args) | {"results": results}, indent=2, default=str))
    save_results(args.results, [{"recipe": name, "folds": runs} for name, runs in results.items()],
                 columns=["recipe", "balanced accuracy", "binary accuracy", "3-class macro-F1", "ECE"], table=table,
                 device=args.device, backbone=args.backbone, blocks=args.blocks, epochs=args.epochs,
                 accelerator=accelerator(args.device))


def accelerator(device: str) -> str | None:
    """The GPU's name when the fine-tuning ran on one (the captions name it beside the CPU)."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(torch.device(device))


if __name__ == "__main__":
    main()
