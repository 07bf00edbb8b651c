"""`visent build` at growing crawl sizes: each stage's wall time, peak RSS and disk, and how time grows with N.

For each N the script makes a synthetic crawl that behaves like a real one: a JSONL of N posts whose texts are
SemEval training tweets (``../shared/data/semeval2017-task4a/train``) and whose images are real photos made
distinct: a 2 x 2 mosaic of crops of four different MVSA photos (``../shared/data/mvsa-single``), jittered and
re-encoded as JPEG, so neither the exact nor the near-duplicate check merges them; ``--broken`` of the posts
(default 3%) name a missing file, a truncated JPEG or a file that is not an image. Then it runs the stages of
`visent build` as users run them, one whole process each (``visent ingest``, ``teach``, ``clean``, ``train``, in
one dataset, a fresh HOME and feature cache per N), and prints per stage: wall time, peak RSS (``ru_maxrss``) and
the dataset's size after it; then the log-log slope of each stage's time over N (1.0 = linear).

``--grow F`` then appends F x N new posts to the crawl and runs the same stages again on the same dataset: the
time of that second build against the first says how much of the work is redone.

``--engine ray`` starts a Ray cluster of ``--nodes`` nodes on this machine (``ray start --head``, then ``ray start
--address`` for each other node, ``--cpus-per-node`` CPUs each; ``ray stop`` at the end stops every Ray process of
the machine) and runs the stages that scale out on it (``ingest``, ``teach``, ``embed`` with ``--engine ray
--ray-address``; ``clean`` and ``train``, which read the cached features, in the visent process).

    python benchmarks/scale.py --posts 10000 30000 100000
    python benchmarks/scale.py --posts 2000 --grow 0.1 --teacher vader       # a quick look
    python benchmarks/scale.py --posts 2000 --engine ray --nodes 2           # a two-node Ray cluster
    python benchmarks/scale.py --stages train --posts 100000 300000 1000000  # train alone, on fake upstream tables

``--stages train`` runs ``benchmarks/scale_train.py`` (fake posts, teach and clean tables and a feature cache, so
train reaches a million rows without a million images).

Name the CPU beside the figures (printed first): the stages' speed depends on it.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from visent.core.machine import cpu_model

from record import save_results

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
STAGES = ("ingest", "teach", "clean", "train")
RAY_STAGES = ("ingest", "teach", "embed")  # with --engine ray: the stages that run on the cluster



def tweets(limit: int | None = None) -> list[str]:
    texts = []
    for path in sorted((DATA / "semeval2017-task4a" / "train").glob("*.tsv")):
        if "2016test" in path.name:
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[2].strip():
                texts.append(parts[2].strip())
    return texts[:limit]


class Photos:
    """MVSA photos, decoded once at 192 px, from which distinct mosaics are made."""

    def __init__(self, count: int = 600, seed: int = 0):
        paths = sorted((DATA / "mvsa-single" / "data").glob("*.jpg"))
        random.Random(seed).shuffle(paths)
        self.tiles: list[Image.Image] = []
        for path in paths:
            if len(self.tiles) >= count:
                break
            try:
                with Image.open(path) as image:
                    image.draft("RGB", (384, 384))
                    self.tiles.append(image.convert("RGB").resize((192, 192)))
            except OSError:
                continue

    def mosaic(self, i: int) -> bytes:
        rng = random.Random(i)
        canvas = Image.new("RGB", (256, 256))
        for k, (x, y) in enumerate(((0, 0), (128, 0), (0, 128), (128, 128))):
            tile = self.tiles[(i * 7 + k * 131 + rng.randrange(len(self.tiles))) % len(self.tiles)]
            left, top = rng.randrange(0, 64), rng.randrange(0, 64)
            canvas.paste(tile.crop((left, top, left + 128, top + 128)), (x, y))
        buffer = io.BytesIO()
        canvas.save(buffer, "JPEG", quality=rng.randrange(80, 93))
        return buffer.getvalue()


def make_crawl(folder: Path, start: int, n: int, texts: list[str], photos: Photos, broken: float) -> None:
    """Append posts ``start .. start + n - 1`` to ``folder/posts.jsonl``, their images under ``folder/images``."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = random.Random(start)
    with open(folder / "posts.jsonl", "a", encoding="utf-8") as out:
        for i in range(start, start + n):
            name = f"images/{i}.jpg"
            fault = rng.random() < broken
            data = photos.mosaic(i)
            if fault:
                kind = i % 3
                if kind == 0:
                    name = f"images/missing-{i}.jpg"  # never written
                elif kind == 1:
                    (folder / name).write_bytes(data[: len(data) // 2])
                else:
                    (folder / name).write_bytes(b"<html>not an image</html>")
            else:
                (folder / name).write_bytes(data)
            out.write(json.dumps({"id": str(i), "text": texts[i % len(texts)], "image": name}) + "\n")


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def run_stage(stage: str, crawl: Path, dataset: Path, model: Path, env: dict[str, str], teacher: str,
              ray_address: str | None = None) -> dict:
    args = {"ingest": ["ingest", str(crawl / "posts.jsonl"), "--out", str(dataset)],
            "teach": ["teach", str(dataset), "--teacher", teacher],
            "clean": ["clean", str(dataset)],
            "embed": ["embed", str(dataset)],
            "train": ["train", str(dataset), "--out", str(model)]}[stage]
    if ray_address and stage in RAY_STAGES:
        args += ["--engine", "ray", "--ray-address", ray_address]
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "visent", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"visent {stage} failed on {crawl}: {proc.stderr.read().decode()[-3000:]}")  # type: ignore
    return {"wall_s": wall, "peak_mb": usage.ru_maxrss / 1024, "disk_mb": du(dataset) / 1e6}


def build(crawl: Path, dataset: Path, model: Path, env: dict[str, str], teacher: str,
          ray_address: str | None = None) -> dict[str, dict]:
    stages = STAGES if ray_address is None else ("ingest", "teach", "clean", "embed", "train")
    return {stage: run_stage(stage, crawl, dataset, model, env, teacher, ray_address) for stage in stages}


def start_cluster(nodes: int, cpus: int, port: int = 6399) -> str:
    """A Ray cluster of ``nodes`` nodes on this machine, ``cpus`` CPUs each; returns the head's address."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # 127.0.0.1 only (a real cluster keeps Ray's token)
    common = [f"--num-cpus={cpus}", "--disable-usage-stats"]
    subprocess.run(["ray", "start", "--head", f"--port={port}", "--include-dashboard=false",
                    "--temp-dir=/tmp/visent-ray-scale", *common], env=env, check=True, capture_output=True)
    for _ in range(nodes - 1):
        subprocess.run(["ray", "start", f"--address=127.0.0.1:{port}", *common], env=env, check=True,
                       capture_output=True)
    return f"127.0.0.1:{port}"


def slope(ns: list[int], times: list[float]) -> float:
    xs, ys = [math.log(n) for n in ns], [math.log(max(t, 1e-3)) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--grow", type=float, default=0.0, help="append this share of new posts and build again")
    parser.add_argument("--broken", type=float, default=0.03)
    parser.add_argument("--teacher", default="default")
    parser.add_argument("--keep", type=Path, help="keep the crawls, datasets and models in this folder")
    parser.add_argument("--engine", choices=["local", "ray"], default="local")
    parser.add_argument("--nodes", type=int, default=2, help="--engine ray: nodes of the local cluster")
    parser.add_argument("--cpus-per-node", type=int, default=1, help="--engine ray: CPUs of each node")
    parser.add_argument("--stages", choices=["build", "train"], default="build",
                        help="train: the train stage alone on fake upstream tables (benchmarks/scale_train.py)")
    parser.add_argument("--results", metavar="NAME",
                        help="save the rows as benchmarks/results/NAME.json with the command, commit, CPU and date "
                             "(default: scale, scale_ray with --engine ray, scale_train with --stages train; '' saves "
                             "nothing); the docs' tables are made from these files")
    args = parser.parse_args()
    if args.stages == "train":
        sys.path.insert(0, str(Path(__file__).parent))
        import scale_train

        scale_train.run(argparse.Namespace(rows=args.posts, work=Path("/tmp/visent-scale-train"),
                                           backbone="efficientnet-lite0-ms", src=None, seed=0, keep=False,
                                           json=None, runtime="onnx-int8",
                                           results="scale_train" if args.results is None else args.results))
        return
    if args.results is None:
        args.results = "scale_ray" if args.engine == "ray" else "scale"
    if not (DATA / "mvsa-single").exists() or not (DATA / "semeval2017-task4a").exists():
        raise SystemExit(f"needs {DATA}/mvsa-single and {DATA}/semeval2017-task4a")
    print(f"visent build, stage by stage; {cpu_model()}, {os.cpu_count()} cores; teacher {args.teacher}"
          + (f"; engine ray, {args.nodes} nodes of {args.cpus_per_node} CPU on this machine" if args.engine == "ray"
             else ""))
    texts, photos = tweets(), Photos()
    work = args.keep or Path(tempfile.mkdtemp(prefix="visent-scale-"))
    results: dict[int, dict[str, dict]] = {}
    seconds_again: dict[int, dict] = {}
    address = start_cluster(args.nodes, args.cpus_per_node) if args.engine == "ray" else None
    if address:
        os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        for n in args.posts:
            base = work / f"n{n}"
            shutil.rmtree(base, ignore_errors=True)
            made = time.perf_counter()
            make_crawl(base / "crawl", 0, n, texts, photos, args.broken)
            print(f"\nN = {n:,} posts (crawl made in {time.perf_counter() - made:.0f} s, "
                  f"{du(base / 'crawl') / 1e6:.0f} MB)", flush=True)
            (base / "home").mkdir()
            env = {**os.environ, "HOME": str(base / "home"), "VISENT_CACHE": str(base / "cache"),
                   "VISENT_PROGRESS": "0"}
            results[n] = build(base / "crawl", base / "dataset", base / "model", env, args.teacher, address)
            for stage, r in results[n].items():
                print(f"  {stage:<7} {r['wall_s']:8.1f} s  {r['peak_mb']:8.0f} MB peak  {r['disk_mb']:8.0f} MB on disk",
                      flush=True)
            total = sum(r["wall_s"] for r in results[n].values())
            print(f"  {'build':<7} {total:8.1f} s  {max(r['peak_mb'] for r in results[n].values()):8.0f} MB peak")
            if args.grow > 0:
                extra = max(1, int(n * args.grow))
                make_crawl(base / "crawl", n, extra, texts, photos, args.broken)
                again = build(base / "crawl", base / "dataset", base / "model", env, args.teacher, address)
                second = sum(r["wall_s"] for r in again.values())
                seconds_again[n] = {"posts_added": extra, "stages": again, "build_s": second}
                print(f"  + {extra:,} posts ({args.grow:.0%}): second build {second:.1f} s = "
                      f"{second / total:.0%} of the first; " +
                      ", ".join(f"{stage} {r['wall_s']:.1f} s" for stage, r in again.items()), flush=True)
        if len(results) >= 2:
            ns = sorted(results)
            print("\nlog-log slope of time over N (1.0 = linear): " + ", ".join(
                f"{stage} {slope(ns, [results[n][stage]['wall_s'] for n in ns]):.2f}" for stage in results[ns[0]])
                + f", build {slope(ns, [sum(r['wall_s'] for r in results[n].values()) for n in ns]):.2f}")
        if results:
            save_scale(args, results, seconds_again)
    finally:
        if address:
            subprocess.run(["ray", "stop", "--force"], capture_output=True)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def save_scale(args: argparse.Namespace, results: dict[int, dict[str, dict]], again: dict[int, dict]) -> None:
    """The docs' table: per N, each stage's wall time, the build, the peak RSS and its stage, the dataset's size
    on disk, and the second build after the crawl grew."""
    stages = list(next(iter(results.values())))
    columns = ["posts", *stages, "build", "peak RSS (largest stage)", "dataset on disk"]
    columns += [f"second build after +{args.grow:.0%}"] if again else []
    table, rows = [], []
    for n, stage_results in results.items():
        total = sum(r["wall_s"] for r in stage_results.values())
        top = max(stage_results, key=lambda stage: stage_results[stage]["peak_mb"])
        row = [f"{n:,}", *(f"{stage_results[stage]['wall_s']:.1f} s" for stage in stages), f"{total:.1f} s",
               f"{stage_results[top]['peak_mb']:,.0f} MB ({top})", f"{stage_results[stages[-1]]['disk_mb']:,.0f} MB"]
        if again:
            second = again.get(n)
            row.append(f"{second['build_s']:.1f} s = {second['build_s'] / total:.0%}" if second else "")
        table.append(row)
        rows.append({"posts": n, "stages": stage_results, "build_s": total, "again": again.get(n)})
    save_results(args.results, rows, columns=columns, table=table, teacher=args.teacher, engine=args.engine,
                 nodes=args.nodes if args.engine == "ray" else None)


if __name__ == "__main__":
    main()
