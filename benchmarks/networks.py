"""Embedding throughput and peak memory on real photos: PyTorch eager baseline against visent's runtimes.

For each backbone, on the same images (MVSA photos, repeated to ``--images`` when the folder has fewer):

- ``eager baseline``: the usual script: full-size ``Image.open().convert("RGB").resize()``, PyTorch eager,
  batches of 32, one thread of decoding;
- ``visent torch|onnx|onnx-int8``: ``embed_images(..., cache=None, runtime=...)``: reduced-size JPEG
  decoding in threads overlapped with batched inference.

Each configuration runs in a process of its own. Images/s count decoding and inference end to end; the
one-time ONNX export and int8 quantisation are timed apart (in another process). Whole processes as a user runs
them (`visent predict`, cold and warm) are `benchmarks/throughput.py`'s. Memory is the process's
peak resident set (Linux), and how much of it came during the run. Also prints the decoding rate of one
thread and the teacher's texts/s.

    python benchmarks/networks.py ../shared/data/mvsa-single --images 512
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from visent.embed.preprocess import RESAMPLE

from visent.embed import embed_images, load_backbone, load_image
from visent.embed.backbones import Backbone
from visent.embed.features import calibration_images
from visent.embed.onnx import calibrate_int8

from record import add_results_argument, save_results


def rss_mb() -> float:
    """Resident set size of this process now (Linux), in MB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Largest resident set size of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def eager_baseline(paths: list[Path], backbone: Backbone, batch_size: int = 32) -> np.ndarray:
    """The usual script: full-size decode, one resize (no crop), PyTorch eager, batches of 32."""
    size = backbone.image_size
    out = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            batch = [backbone.to_tensor(Image.open(p).convert("RGB").resize((size, size), RESAMPLE["bicubic"]))
                     for p in paths[start:start + batch_size]]
            out.append(backbone.module(torch.stack(batch)).flatten(1).numpy())
    return np.concatenate(out)


def measure(args: argparse.Namespace, paths: list[Path], name: str, runtime: str, phase: str,
            calibration: str = "") -> dict[str, float | str]:
    """One configuration, in a process of its own so that its memory is its own.

    ``phase`` "setup" exports (and for int8 calibrates and quantises, on 128 of the images) and times it;
    "run" embeds every image, with the ONNX models (and the int8 ``calibration``) already in the cache.
    """
    hashes = [f"bench-{i}" for i in range(len(paths))]  # distinct identities: repeated files are embedded again
    backbone = load_backbone(name, device="cpu")
    if phase == "setup":
        started = time.perf_counter()
        ranges = None
        if runtime == "onnx-int8":
            ranges = calibrate_int8(backbone, lambda: calibration_images(backbone, paths[:128], hashes[:128]),
                                    hashes[:128])
        embed_images(paths[:128], hashes[:128], backbone, runtime=runtime, workers=args.workers,
                     int8_calibration=ranges)
        return {"setup": time.perf_counter() - started, "calibration": str(ranges or "")}
    int8 = {"int8_calibration": Path(calibration)} if calibration else {}
    if runtime == "eager":
        eager_baseline(paths[:4], backbone, 4)  # first-call allocations out of the timing

        def run() -> None:
            eager_baseline(paths, backbone, args.batch_size)
    else:
        embed_images(paths[:4], hashes[:4], backbone, runtime=runtime, workers=args.workers, **int8)  # load the session

        def run() -> None:
            _, status = embed_images(paths, hashes, backbone, cache=None, batch_size=args.batch_size,
                                     runtime=runtime, workers=args.workers, **int8)
            assert all(s.state == "ok" for s in status), [str(s) for s in status if s.state != "ok"][:3]
    before = rss_mb()
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    return {"rate": len(paths) / seconds, "before_mb": before, "peak_mb": peak_rss_mb()}


def child(args: argparse.Namespace, name: str, runtime: str, phase: str, calibration: str = "") -> dict:
    command = [sys.executable, __file__, str(args.mvsa), "--images", str(args.images), "--batch-size",
               str(args.batch_size), "--workers", str(args.workers), "--one", f"{name},{runtime},{phase},{calibration}"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{name} {runtime} {phase} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mvsa", type=Path, nargs="?",
                        default=Path(__file__).resolve().parents[2] / "shared/data/mvsa-single")
    parser.add_argument("--images", type=int, default=512, help="images per configuration")
    parser.add_argument("--backbones", default="efficientnet-lite0,efficientnet-lite2")
    parser.add_argument("--runtimes", default="eager,torch,onnx,onnx-int8")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="visent's decoding threads")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # NAME,RUNTIME,PHASE,CALIBRATION: one measurement (a child)
    add_results_argument(parser, "networks")
    args = parser.parse_args()

    files = sorted((args.mvsa / "data").glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
    if not files:
        sys.exit(f"no .jpg images in {args.mvsa / 'data'}")
    paths = [files[i % len(files)] for i in range(args.images)]
    torch.set_num_threads(os.cpu_count() or 1)
    if args.one:
        print(json.dumps(measure(args, paths, *args.one.split(","))))
        return

    os.environ["VISENT_CACHE"] = tempfile.mkdtemp(prefix="visent-throughput-")  # fresh ONNX models: setup is timed
    print(f"{len(paths)} images ({len(set(paths))} distinct files) from {args.mvsa / 'data'}; {os.cpu_count()} cores; "
          f"torch {torch.__version__}, onnxruntime {_version('onnxruntime')}; batch {args.batch_size}, "
          f"{args.workers} decoding threads", flush=True)
    decoding(paths[:200])

    rows = []
    for name in args.backbones.split(","):
        baseline = None
        for runtime in args.runtimes.split(","):
            prepared = child(args, name, runtime, "setup") if runtime.startswith("onnx") else {}
            setup = prepared.get("setup")
            result = child(args, name, runtime, "run", prepared.get("calibration", ""))
            baseline = baseline or result["rate"]
            label = "eager baseline" if runtime == "eager" else f"visent {runtime}"
            rows.append((name, label, result, result["rate"] / baseline, setup))
            print(f"  {name:<18} {label:<17} {result['rate']:7.1f} images/s", flush=True)

    print("\n| backbone | path | images/s | × baseline | peak RSS (MB) | of which during the run | one-time setup (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, label, result, ratio, setup in rows:
        print(f"| {name} | {label} | {result['rate']:.1f} | {ratio:.1f}x | {result['peak_mb']:.0f} | "
              f"+{max(0.0, result['peak_mb'] - result['before_mb']):.0f} | {f'{setup:.1f}' if setup else '-'} |")
    teacher_rate(args.mvsa, files)
    print(f"command: python {shlex.join(sys.argv)}")
    save_results(args.results, [{"backbone": name, "path": label, **result, "ratio": ratio, "setup_s": setup}
                                for name, label, result, ratio, setup in rows],
                 columns=["backbone", "path", "images/s", "× baseline", "peak RSS (MB)", "one-time setup (s)"],
                 table=[[name, label, f"{result['rate']:.1f}", f"{ratio:.1f}×", f"{result['peak_mb']:,.0f}",
                         f"{setup:.1f}" if setup else "-"] for name, label, result, ratio, setup in rows],
                 images=len(paths), batch_size=args.batch_size, workers=args.workers)


def decoding(sample: list[Path]) -> None:
    """Decoding rate of one thread: full-size decode + resize, against visent's reduced-size JPEG decode."""
    started = time.perf_counter()
    for p in sample:
        Image.open(p).convert("RGB").resize((224, 224), RESAMPLE["bicubic"])
    full = len(sample) / (time.perf_counter() - started)
    lite0 = load_backbone("efficientnet-lite0", device="cpu")
    started = time.perf_counter()
    for p in sample:
        lite0.preprocess(load_image(p, 224))
    reduced = len(sample) / (time.perf_counter() - started)
    sizes = [Image.open(p).size for p in sample]
    print(f"decoding, one thread, 224 px: full-size decode + resize {full:.0f} images/s; visent load_image "
          f"(JPEG draft) + crop + normalise {reduced:.0f} images/s; median source size "
          f"{int(np.median([w for w, _ in sizes]))}x{int(np.median([h for _, h in sizes]))}", flush=True)


def teacher_rate(mvsa: Path, files: list[Path]) -> None:
    from visent.teach import load_teacher

    texts = [(mvsa / "data" / f"{p.stem}.txt").read_bytes().decode("utf-8", errors="replace")
             for p in files if (mvsa / "data" / f"{p.stem}.txt").exists()]
    teacher = load_teacher("vader")
    teacher.predict_proba(texts[:10])
    started = time.perf_counter()
    teacher.predict_proba(texts)
    print(f"\nteacher vader: {len(texts) / (time.perf_counter() - started):.0f} texts/s ({len(texts)} MVSA texts)")


def _version(package: str) -> str:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # noqa: BLE001
        return "not installed"


if __name__ == "__main__":
    main()
