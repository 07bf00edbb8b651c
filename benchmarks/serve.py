"""What `visent serve` answers per second: the real command on 127.0.0.1, real MVSA photos over HTTP.

Starts `visent serve MODEL` on a free loopback port, warms it up, then times ``POST /predict`` with one photo per
request, with batches of 8, with 4 clients at once, and ``POST /explain`` (the predicted class's map as PNG).
Uploads never reach the feature cache, so every request runs the networks. Prints requests/s, images/s and the
median and 95th-percentile latency. Every request goes to the server this script started, and the loops are
bounded by ``--requests``.

    python benchmarks/serve.py ../shared/data/mvsa-single --requests 40
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from visent.serve import background

from record import add_results_argument, save_results


def timed(call, n: int, workers: int = 1) -> list[float]:
    def one(i: int) -> float:
        started = time.perf_counter()
        call(i)
        return time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(n)))


def figures(name: str, latencies: list[float], wall: float, images_per_request: int) -> dict:
    ordered = sorted(latencies)
    n = len(latencies)
    return {"request": name, "requests_per_s": n / wall, "images_per_s": n * images_per_request / wall,
            "median_ms": statistics.median(ordered) * 1000,
            "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000, "requests": n}


def cells(row: dict) -> list[str]:
    return [row["request"], f"{row['requests_per_s']:.1f}", f"{row['images_per_s']:.1f}", f"{row['median_ms']:.0f}",
            f"{row['p95_ms']:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mvsa", type=Path, nargs="?", default=Path(__file__).resolve().parents[2] / "shared/data/mvsa-single")
    parser.add_argument("--model", default="default")
    parser.add_argument("--requests", type=int, default=40, help="requests per measurement")
    add_results_argument(parser, "serve")
    args = parser.parse_args()
    photos = sorted((args.mvsa / "data").glob("*.jpg"))[: args.requests * 8 + 8]
    if len(photos) < 16:
        sys.exit(f"{args.mvsa}: no MVSA photos in data/; give the MVSA folder")
    blobs = [p.read_bytes() for p in photos]

    with background(args.model, env={"VISENT_PROGRESS": "0"}, timeout=180) as base, \
            httpx.Client(base_url=base, timeout=120) as client:
        for blob in blobs[-8:]:  # warm-up: models loaded, ONNX sessions built
            client.post("/predict", files={"files": ("w.jpg", blob, "image/jpeg")}).raise_for_status()
            client.post("/explain", files={"file": ("w.jpg", blob, "image/jpeg")}).raise_for_status()

        def predict_one(i: int) -> None:
            client.post("/predict", files={"files": (f"{i}.jpg", blobs[i], "image/jpeg")}).raise_for_status()

        def predict_batch(i: int) -> None:
            files = [("files", (f"{i}-{k}.jpg", blobs[i * 8 + k], "image/jpeg")) for k in range(8)]
            client.post("/predict", files=files).raise_for_status()

        def explain_one(i: int) -> None:
            response = client.post("/explain", files={"file": (f"{i}.jpg", blobs[i], "image/jpeg")})
            response.raise_for_status()
            assert response.headers["content-type"] == "image/png"

        print(f"visent serve {args.model}: {args.requests} requests each, MVSA photos (uploads are never cached), "
              f"{os.cpu_count()} cores")
        print("| request | requests/s | images/s | median ms | p95 ms |\n|---|---|---|---|---|")
        rows = []
        for name, call, workers, per in (("/predict, 1 photo", predict_one, 1, 1),
                                         ("/predict, 8 photos", predict_batch, 1, 8),
                                         ("/predict, 1 photo, 4 clients", predict_one, 4, 1),
                                         ("/explain (PNG of the predicted class's map)", explain_one, 1, 1)):
            started = time.perf_counter()
            latencies = timed(call, args.requests, workers)
            rows.append(figures(name, latencies, time.perf_counter() - started, per))
            print("| " + " | ".join(cells(rows[-1])) + " |", flush=True)
    save_results(args.results, rows, columns=["request", "requests/s", "images/s", "median ms", "p95 ms"],
                 table=[cells(row) for row in rows], model=args.model)


if __name__ == "__main__":
    main()
