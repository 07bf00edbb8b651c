"""Near-duplicate search at crawl scale: visent's multi-index Hamming search on synthetic 64-bit hashes.

For each size, random 64-bit hashes get planted near-duplicate pairs (a copy of a hash with 0..8 bits
flipped). Prints the search time, the peak memory it allocated, the recall of the planted pairs within the
distance, and, on a sample small enough for it, whether the result equals the exact all-pairs search.

    python benchmarks/dedup.py                      # 100k and 1M hashes, distance 4
    python benchmarks/dedup.py --sizes 100000 --distance 6
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from visent.clean.hamming import HammingIndex, popcount64

from record import add_results_argument, save_results


def planted_hashes(n: int, n_pairs: int, max_flips: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` random hashes where ``n_pairs`` targets are copies of a source with 0..max_flips bits flipped."""
    hashes = rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)
    chosen = rng.choice(n, size=2 * n_pairs, replace=False)
    sources, targets = chosen[:n_pairs], chosen[n_pairs:]
    flips = rng.integers(0, max_flips + 1, size=n_pairs)
    masks = np.zeros(n_pairs, dtype=np.uint64)
    for k in range(n_pairs):
        for bit in rng.choice(64, size=flips[k], replace=False):
            masks[k] |= np.uint64(1) << np.uint64(bit)
    hashes[targets] = hashes[sources] ^ masks
    return hashes, np.minimum(sources, targets), np.maximum(sources, targets)


def exact_pairs(hashes: np.ndarray, distance: int, block: int = 2048) -> set[tuple[int, int]]:
    """All pairs within ``distance`` by comparing every pair (only for small samples)."""
    found: set[tuple[int, int]] = set()
    for start in range(0, len(hashes), block):
        rows = hashes[start:start + block]
        dist = popcount64((rows[:, None] ^ hashes[None, :]).ravel()).reshape(len(rows), -1)
        for a, b in zip(*np.nonzero(dist <= distance)):
            i = start + int(a)
            if i < b:
                found.add((i, int(b)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--distance", type=int, default=4)
    parser.add_argument("--planted-fraction", type=float, default=0.01, help="planted pairs per hash")
    parser.add_argument("--exact-sample", type=int, default=20_000, help="size of the all-pairs check")
    parser.add_argument("--seed", type=int, default=0)
    add_results_argument(parser, "dedup")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    print(f"visent near-duplicate search, distance {args.distance}, multi-index hashing "
          f"({args.distance + 1} chunks)")
    print(f"{'hashes':>10} {'planted':>8} {'seconds':>8} {'peak MiB':>9} {'pairs':>8} {'planted recall':>15}")
    rows = []
    for n in args.sizes:
        hashes, src, dst = planted_hashes(n, int(n * args.planted_fraction), 8, rng)
        tracemalloc.start()
        started = time.perf_counter()
        i, j, _ = HammingIndex(hashes).pair_arrays(args.distance)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        within = popcount64(hashes[src] ^ hashes[dst]) <= args.distance
        found = set(zip(i.tolist(), j.tolist()))
        recall = np.mean([(a, b) in found for a, b in zip(src[within].tolist(), dst[within].tolist())])
        print(f"{n:>10,} {int(within.sum()):>8,} {seconds:>8.2f} {peak:>9.1f} {len(found):>8,} {recall:>15.4f}")
        rows.append({"hashes": n, "planted": int(within.sum()), "seconds": seconds, "peak_mib": peak,
                     "pairs": len(found), "recall": float(recall)})

    sample, _, _ = planted_hashes(args.exact_sample, args.exact_sample // 100, 8, rng)
    i, j, _ = HammingIndex(sample).pair_arrays(args.distance)
    same = set(zip(i.tolist(), j.tolist())) == exact_pairs(sample, args.distance)
    print(f"all-pairs check on {args.exact_sample:,} hashes: {'identical pairs' if same else 'DIFFERENT pairs'}")
    save_results(args.results, rows, columns=["hashes", "planted near-duplicate pairs", "seconds", "peak MiB",
                                              "recall of planted pairs"],
                 table=[[f"{r['hashes']:,}", f"{r['planted']:,}", f"{r['seconds']:.2f}", f"{r['peak_mib']:.1f}",
                         f"{r['recall']:.4f}"] for r in rows],
                 distance=args.distance, all_pairs_check={"hashes": args.exact_sample, "identical": same})


if __name__ == "__main__":
    main()
