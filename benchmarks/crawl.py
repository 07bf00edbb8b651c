"""How fast `visent crawl bluesky` reads a stream, and whether its memory stays flat as the crawl grows.

A replay server in a process of its own (``tests/blueskyserver.py``) serves N synthetic Jetstream v1 events (posts,
a third with 1-4 images, deletes, replies, several languages, spam-bot-like authors) as fast as it can, from
127.0.0.1. The crawler runs as users run it, a whole ``visent crawl bluesky`` process with a fresh HOME, with no
filter (every image post kept: the most work per event) until it holds every image post of the stream. For each
N the script prints the wall time of the process, events/s (the events it read over that time, start-up
included), its peak RSS and the crawl folder's size per image row.

    python benchmarks/crawl.py                      # N = 100,000 and 1,000,000
    python benchmarks/crawl.py --events 20000       # a quick look

Aims (issue: crawl): at least 5,000 events/s on 2 cores, and the peak RSS after 1M events within 10% of that
after 100k.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from blueskyserver import SyntheticStream  # noqa: E402

from visent.crawl.events import image_rows, parse_jetstream  # noqa: E402
from visent.core.machine import cpu_model  # noqa: E402

from record import add_results_argument, save_results  # noqa: E402



def image_posts(n: int, seed: int) -> int:
    """How many posts with images the stream of ``n`` events creates (what the crawler keeps with no filter)."""
    stream = SyntheticStream(n, seed=seed)
    count = 0
    for i in range(n):
        if stream.operation(i)[0] != "create":
            continue
        event = parse_jetstream(json.dumps(stream.event(i)))
        count += bool(image_rows(event))
    return count


def run(n: int, seed: int, work: Path) -> dict:
    target = image_posts(n, seed)
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "blueskyserver.py"), "--events", str(n),
                               "--seed", str(seed)], stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()  # type: ignore[union-attr]
        out = work / f"crawl-{n}"
        home = work / f"home-{n}"
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "VISENT_PROGRESS": "0", "NO_PROXY": "127.0.0.1"}
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "visent", "crawl", "bluesky", "--endpoint", url, "--out",
                                 str(out), "--posts", str(target), "--min-words", "0", "--per-author", "0",
                                 "--keep-labelled"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        if status != 0:
            raise SystemExit(f"the crawl of {n} events failed: {proc.stderr.read().decode()[-2000:]}")  # type: ignore
    finally:
        server.terminate()
        server.wait(timeout=30)
    cursor = json.loads((out / ".state" / "cursor.json").read_text())
    start_us, step_us = 1_783_175_888_000_000, 1_000
    read = (cursor["position"] - start_us) // step_us + 1  # events up to the last one handled
    rows = sum(1 for shard in out.glob("posts-*.jsonl") for _ in open(shard, "rb"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out)
    return {"events": n, "read": read, "image_posts": target, "rows": rows, "wall_s": wall,
            "events_per_s": read / wall, "peak_rss_mb": usage.ru_maxrss / 1024, "bytes_per_row": size / rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    add_results_argument(parser, "crawl")
    args = parser.parse_args()
    print(f"visent crawl bluesky from a local Jetstream replay; {cpu_model()}, {os.cpu_count()} cores")
    print(f"{'events':>10} {'image posts':>12} {'rows':>9} {'wall s':>8} {'events/s':>9} {'peak RSS MB':>12} "
          f"{'bytes/row':>10}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.events:
            rows.append(r := run(n, args.seed, Path(tmp)))
            print(f"{r['events']:>10,} {r['image_posts']:>12,} {r['rows']:>9,} {r['wall_s']:>8.1f} "
                  f"{r['events_per_s']:>9,.0f} {r['peak_rss_mb']:>12.1f} {r['bytes_per_row']:>10.0f}", flush=True)
    save_results(args.results, rows, columns=["events replayed", "image posts", "rows", "wall (whole process)",
                                              "events/s", "peak RSS"],
                 table=[[f"{r['events']:,}", f"{r['image_posts']:,}", f"{r['rows']:,}", f"{r['wall_s']:.1f} s",
                         f"{r['events_per_s']:,.0f}", f"{r['peak_rss_mb']:.1f} MB"] for r in rows], seed=args.seed)


if __name__ == "__main__":
    main()
