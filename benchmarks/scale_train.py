"""The train stage at crawl scale: wall time and peak memory of `visent train` on fake datasets of N kept posts.

Nothing upstream runs and no image exists: for each N the script writes a dataset whose ingest, teach and clean
stages are done (``posts``, ``teach`` and ``clean`` tables of N kept posts plus 5% dropped ones, distinct fake
SHA-256s, a teacher's random but plausible probabilities) and a feature cache (``$VISENT_CACHE``, through
visent's own FeatureCache) holding a float32 vector per image for the student's backbone, with a little of the
teacher's label in it. Then ``python -m visent train DATASET --out MODEL`` runs as a process of its own, reads every
feature from that cache and fits the head; the script reports its wall time and its peak resident memory (``os.wait4``
ru_maxrss), how the head was fitted (``metrics.json``'s ``fit``) and the log-log slope of time and memory against N.

    python benchmarks/scale_train.py --rows 100000 300000 1000000
    python benchmarks/scale_train.py --rows 20000 --src /tmp/visent-old/src   # another source tree (before/after)

The student is the default one (int8, the network shipped with the default model), so the cache is written under
the key `visent train` reads with its defaults; ``--runtime torch`` writes and reads PyTorch's key instead (the
features and the head are the same code whatever the runtime).
Each N takes about 10.3 GB of disk per million rows for the cache, and as much again while train runs (the
features beyond ``VISENT_TRAIN_MEMORY_MB`` go to a file under the dataset's ``work/train``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from visent.core.labels import CLASSES
from visent.core.schema import CLEAN, POSTS, TEACH
from visent.core.store import Dataset
from visent.embed import FeatureCache, load_backbone
from visent.embed.features import feature_key
from visent.embed.onnx import INT8_RECIPE, calibration_id, packaged_int8
from visent.core.machine import cpu_model as machine_cpu

from record import add_results_argument, save_results

WORDS = ("love this view so happy today what a day great sad awful never again tired rain sun friends coffee train "
         "late city night music best worst ever beautiful broken morning home").split()
SHARD_ROWS = 1024  # rows per cache shard, as embedding writes them (visent.embed.cached.FLUSH_EVERY)


def cpu_model() -> str:
    """The CPU (:func:`visent.core.machine.cpu_model`) and its cores."""
    return f"{machine_cpu()}, {os.cpu_count()} cores"

def fake_dataset(root: Path, n_kept: int, seed: int) -> tuple[list[str], np.ndarray]:
    """A dataset with ingest, teach and clean done: n_kept kept posts and 5% more dropped. Returns the kept posts'
    image hashes and teacher labels (indices)."""
    rng = np.random.default_rng(seed)
    n = n_kept + n_kept // 20
    ids = [f"fake{i}" for i in range(n)]
    hashes = [hashlib.sha256(f"visent-scale-{seed}-{i}".encode()).hexdigest() for i in range(n)]
    files = [f"images/{h[:2]}/{h}.jpg" for h in hashes]
    words = np.array(WORDS)
    texts = [" ".join(words[rng.integers(0, len(words), 12)]) for _ in range(min(n, 5000))]
    dataset = Dataset(root, create=True)
    posts = pa.table({
        "post_id": ids, "source": [f"fake.jsonl:{i + 1}" for i in range(n)],
        "text": [texts[i % len(texts)] for i in range(n)], "lang": ["en"] * n,
        "created_at": ["2024-05-01T12:00:00Z"] * n, "image_ref": [f"https://cdn.example/{h[:16]}.jpg" for h in hashes],
        "image_sha256": hashes, "image_file": files, "ingest_status": ["ok"] * n, "ingest_reason": [""] * n,
    }, schema=POSTS)
    dataset.write_table("posts", posts)
    dataset.finish_stage("ingest", {"source": "fake.jsonl"}, {"posts": n, "ok": n, "error": 0})

    # a teacher that is sure of some posts and unsure of others, a little more often negative
    label = rng.choice(3, n, p=[0.4, 0.25, 0.35])
    probs = rng.dirichlet(np.ones(3), n) * 0.6 + 0.4 * np.eye(3)[label]
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    argmax = probs.argmax(axis=1)
    names = np.array(CLASSES)[argmax]
    teach = pa.table({
        "post_id": ids, "teacher": ["default"] * n, "p_negative": probs[:, 0], "p_neutral": probs[:, 1],
        "p_positive": probs[:, 2], "teach_label": names, "teach_confidence": probs.max(axis=1),
        "teach_status": ["ok"] * n, "teach_reason": [""] * n,
    }, schema=TEACH)
    dataset.write_table("teach", teach)
    dataset.finish_stage("teach", {"teacher": "default"}, {"posts": n})

    dropped = np.zeros(n, dtype=bool)
    dropped[rng.choice(n, n - n_kept, replace=False)] = True
    clean = pa.table({
        "post_id": ids, "clean_status": np.where(dropped, "dropped", "kept"),
        "clean_step": pa.array([("low_confidence" if d else None) for d in dropped], pa.string()),
        "clean_reason": np.where(dropped, "the teacher is unsure", ""), "label": names,
        "width": np.full(n, 640, np.int32), "height": np.full(n, 480, np.int32),
        "phash": [h[:16] for h in hashes], "duplicate_of": pa.nulls(n, pa.string()),
    }, schema=CLEAN)
    dataset.write_table("clean", clean)
    dataset.finish_stage("clean", {"thresholds": "fake"}, {"posts": n, "kept": n_kept,
                                                         "low_confidence": int(dropped.sum())})
    kept = np.flatnonzero(~dropped)
    return [hashes[i] for i in kept], argmax[kept]


def fake_cache(cache: Path, key: str, dim: int, hashes: list[str], labels: np.ndarray, seed: int,
               latent: int = 32) -> None:
    """A float32 vector of ``dim`` per hash in visent's feature cache under ``key``: non-negative, as pooled
    activations are, and correlated, as a network's features are (``latent`` factors mixed into every feature, plus
    noise of their own), with the teacher's label shifting the factors a little."""
    rng = np.random.default_rng(seed + 1)
    store = FeatureCache(cache / "features")
    mixing = (rng.standard_normal((latent, dim), dtype=np.float32) / np.sqrt(latent)).astype(np.float32)
    shift = rng.normal(0.0, 0.25, (3, latent)).astype(np.float32)
    for start in range(0, len(hashes), SHARD_ROWS):
        stop = min(len(hashes), start + SHARD_ROWS)
        factors = rng.standard_normal((stop - start, latent), dtype=np.float32) + shift[labels[start:stop]]
        block = factors @ mixing
        block += 0.7 * rng.standard_normal(block.shape, dtype=np.float32)
        np.abs(block, out=block)
        store.put_many(key, dict(zip(hashes[start:stop], block)))


def run_train(dataset: Path, out: Path, cache: Path, backbone: str, src: Path | None,
              runtime: str = "onnx-int8") -> tuple[float, float, int]:
    """``python -m visent train`` as a process: wall seconds, peak RSS in MB, exit status."""
    env = {**os.environ, "VISENT_CACHE": str(cache), "VISENT_PROGRESS": "0"}
    if src is not None:
        env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "visent", "train", str(dataset), "--out", str(out), "--backbone", backbone,
               "--runtime", runtime]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, process.returncode


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x."""
    lx, ly = np.log(xs), np.log(ys)
    return float(np.polyfit(lx, ly, 1)[0]) if len(xs) > 1 else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 300_000, 1_000_000],
                        help="kept posts of each fake dataset")
    parser.add_argument("--work", type=Path, default=Path("/tmp/visent-scale-train"))
    parser.add_argument("--backbone", default="efficientnet-lite0-ms", help="whose feature dimension and cache key")
    parser.add_argument("--src", type=Path, help="run train from this source tree (PYTHONPATH), e.g. an older visent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep each N's dataset and cache (they are large)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--runtime", default="onnx-int8", choices=["onnx-int8", "torch"])
    add_results_argument(parser, "scale_train")
    args = parser.parse_args()
    run(args)


def run(args: argparse.Namespace) -> None:
    backbone = load_backbone(args.backbone)
    if args.runtime == "onnx-int8":
        shipped = packaged_int8(backbone.key)
        if shipped is None:
            raise SystemExit(f"{args.backbone}: no int8 network is shipped for it; use --runtime torch")
        key = feature_key(backbone, False, "onnx-int8", calibration_id(shipped[0]), INT8_RECIPE)
    else:
        key = feature_key(backbone, False, "torch")
    print(f"CPU: {cpu_model()}; VISENT_TRAIN_MEMORY_MB={os.environ.get('VISENT_TRAIN_MEMORY_MB', 'default')}; "
          f"backbone {args.backbone} ({backbone.dim:,} features, key {key.split('|')[0]})", flush=True)
    rows = []
    for n in args.rows:
        root = args.work / f"n{n}"
        if root.exists():
            shutil.rmtree(root)
        started = time.perf_counter()
        hashes, labels = fake_dataset(root / "dataset", n, args.seed)
        fake_cache(root / "cache", key, backbone.dim, hashes, labels, args.seed)
        setup = time.perf_counter() - started
        del hashes, labels
        seconds, peak_mb, code = run_train(root / "dataset", root / "model", root / "cache", args.backbone, args.src,
                                           args.runtime)
        metrics = json.loads((root / "model" / "metrics.json").read_text()) if code == 0 else {}
        row = {"rows": n, "setup_seconds": round(setup, 1), "seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb),
               "exit": code, "n_train_posts": metrics.get("n_train_posts"), "C": metrics.get("C"),
               "fit": metrics.get("fit"), "val_balanced_accuracy":
                   (metrics.get("validation") or {}).get("chosen", {}).get("val_balanced_accuracy")}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    done = [r for r in rows if r["exit"] == 0]
    print("\n| kept posts | train wall (s) | peak RSS (MB) | head fit | C | passes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        fit = r["fit"] or {}
        route = ("streamed, features on disk" if fit.get("features_on_disk") else "streamed, features in memory"
                 if fit.get("streamed") else "in memory") if fit else f"failed (exit {r['exit']})"
        print(f"| {r['rows']:,} | {r['seconds']:.1f} | {r['peak_rss_mb']:,} | {route} | {r['C']} | "
              f"{fit.get('passes', '-')} |")
    if len(done) > 1:
        ns = [r["rows"] for r in done]
        print(f"\nlog-log slope against N: time {slope(ns, [r['seconds'] for r in done]):.2f}, "
              f"peak RSS {slope(ns, [r['peak_rss_mb'] for r in done]):.2f}")
        for a, b in zip(done, done[1:]):
            print(f"  {a['rows']:,} → {b['rows']:,}: time {slope([a['rows'], b['rows']], [a['seconds'], b['seconds']]):.2f}, "
                  f"peak RSS {slope([a['rows'], b['rows']], [a['peak_rss_mb'], b['peak_rss_mb']]):.2f}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "rows": rows}, indent=2))
    table = []
    for r in rows:
        fit = r["fit"] or {}
        route = ("streamed, features on disk" if fit.get("features_on_disk") else "streamed, features in memory"
                 if fit.get("streamed") else "in memory") if fit else f"failed (exit {r['exit']})"
        passes = f", {fit['passes']} passes" if fit.get("passes") else ""
        table.append([f"{r['rows']:,}", f"{r['seconds']:.1f} s", f"{r['peak_rss_mb']:,} MB", route + passes])
    save_results(getattr(args, "results", "scale_train"), rows, columns=["kept posts", "`visent train`", "peak RSS",
                                                                          "fit"], table=table)


if __name__ == "__main__":
    main()
