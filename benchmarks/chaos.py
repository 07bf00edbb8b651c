"""A crawl of faults, killed twice: does every post come out once, with a status and a reason?

5,000 posts (``--posts``) whose image URLs hit the fault server (``tests/faultserver.py``, in a
process of its own on 127.0.0.1): two thirds valid JPEGs, one third spread over every fault it
serves (timeouts, resets, 404/500/429, HTML, wrong content type, truncated, endless and huge
bodies, redirect loops, flaky hosts). ``visent ingest`` runs in a subprocess and is killed with
SIGKILL twice at random points (after a random number of checkpoint parts), then started again
until it finishes. Then an undisturbed run ingests the same crawl into another dataset.

Prints the posts in, the posts accounted for (rows with a status, and a reason when it is an
error, each post id once), whether the tables and image files of the two datasets are equal,
and the time taken.

    python benchmarks/chaos.py --posts 5000 --seed 0
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from faultserver import FAULTS  # noqa: E402

from record import add_results_argument, save_results  # noqa: E402

# A timeout far above a local answer's time even on a loaded machine (a fault must not become a timeout
# in one run and not in the other) and far below /slow's wait; threads enough that the bodies
# trickling in until the 10 s deadline do not idle the crawl.
OPTIONS = ["--workers", "48", "--per-host", "48", "--timeout", "1.0", "--retries", "1", "--backoff", "0.01",
           "--max-bytes", "200000", "--batch-size", "100"]


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    out.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", VISENT_PROGRESS="0")
    return out


def command(source: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "visent", "ingest", str(source), "--out", str(out), *OPTIONS]


def parts(out: Path) -> int:
    return len(list((out / "work" / "ingest").glob("part-*.parquet")))


def run_killed(source: Path, out: Path, kill_after: list[int]) -> list[str]:
    """Run until done; kill with SIGKILL when the checkpoint holds each of ``kill_after`` parts."""
    log = []
    pending = list(kill_after)
    while True:
        proc = subprocess.Popen(command(source, out), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        target = pending[0] if pending else None
        while proc.poll() is None:
            if target is not None and parts(out) >= target:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                log.append(f"killed with SIGKILL at {parts(out)} checkpoint parts")
                pending.pop(0)
                break
            time.sleep(0.01)
        else:
            if proc.returncode != 0:
                sys.exit(f"visent ingest failed ({proc.returncode}):\n{proc.stderr.read()[-3000:]}")
            if target is not None:
                log.append(f"finished before part {target}; no kill")
            return log


def snapshot(out: Path) -> tuple[dict, dict]:
    tables = {p.name: pq.read_table(p) for p in sorted(out.glob("*.parquet"))}
    images = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in sorted((out / "images").rglob("*")) if p.is_file()}
    return tables, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    add_results_argument(parser, "chaos")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="visent-bench-chaos-"))
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "faultserver.py"), "--slow", "3.0"],
                              stdout=subprocess.PIPE, text=True, env=env())
    try:
        base = server.stdout.readline().strip()
        if not base.startswith("http://127.0.0.1:"):
            sys.exit(f"the fault server did not start (said {base!r})")
        source = work / "crawl.jsonl"
        kinds = collections.Counter()
        with open(source, "w") as handle:
            for n in range(args.posts):
                path = f"/ok/{n}.jpg" if n % 3 else FAULTS[n // 3 % len(FAULTS)].format(n=n) + f"?post={n}"
                kinds["ok" if n % 3 else FAULTS[n // 3 % len(FAULTS)]] += 1
                handle.write(json.dumps({"id": f"p{n}", "text": f"post {n}", "image_url": base + path}) + "\n")
        batches = -(-args.posts // 100)
        first = rng.randint(max(1, batches // 10), max(1, batches // 2))
        second = rng.randint(first + 1, max(first + 1, batches * 9 // 10))

        start = time.perf_counter()
        log = run_killed(source, work / "chaos", [first, second])
        chaos_s = time.perf_counter() - start
        start = time.perf_counter()
        run_killed(source, work / "calm", [])
        calm_s = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=10)

    (tables, images), (calm_tables, calm_images) = snapshot(work / "chaos"), snapshot(work / "calm")
    posts = tables["posts.parquet"].to_pylist()
    ids = [row["post_id"] for row in posts]
    accounted = sum(1 for row in posts if row["ingest_status"] == "ok" or
                    (row["ingest_status"] == "error" and row["ingest_reason"]))
    equal = tables.keys() == calm_tables.keys() and all(t.equals(calm_tables[k]) for k, t in tables.items())
    reasons = collections.Counter(row["ingest_reason"].split(" (")[0] for row in posts if row["ingest_status"] == "error")

    print(f"\ncrawl: {args.posts} posts, {kinds['ok']} valid images and {args.posts - kinds['ok']} faults "
          f"({len(FAULTS)} kinds), seed {args.seed}")
    for line in log:
        print(f"  chaos run: {line}")
    print(f"posts in:                 {args.posts}")
    print(f"posts accounted for:      {accounted} ({accounted / args.posts:.1%}); each id once: "
          f"{len(set(ids)) == len(ids) == args.posts}")
    print(f"ok / error:               {sum(r['ingest_status'] == 'ok' for r in posts)} / "
          f"{sum(r['ingest_status'] == 'error' for r in posts)}")
    print("error reasons:            " + "; ".join(f"{k}: {v}" for k, v in sorted(reasons.items())))
    print(f"tables equal to an undisturbed run's: {equal}; image files equal: {images == calm_images} "
          f"({len(images)} files)")
    print(f"time: killed twice and resumed {chaos_s:.1f} s, undisturbed {calm_s:.1f} s")
    shutil.rmtree(work, ignore_errors=True)
    save_results(args.results, [{"posts": args.posts, "faults": args.posts - kinds["ok"], "fault_kinds": len(FAULTS),
                                 "accounted": accounted, "each_id_once": len(set(ids)) == len(ids) == args.posts,
                                 "ok": sum(r["ingest_status"] == "ok" for r in posts),
                                 "errors": sum(r["ingest_status"] == "error" for r in posts),
                                 "reasons": dict(sorted(reasons.items())), "tables_equal": equal,
                                 "images_equal": images == calm_images, "image_files": len(images),
                                 "killed_at": [first, second], "chaos_s": chaos_s, "calm_s": calm_s}],
                 seed=args.seed, log=log)


if __name__ == "__main__":
    main()
