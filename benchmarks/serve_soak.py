"""Does a long-lived `visent serve` stay small? RSS of the real server process over many passes of mixed traffic.

Starts `visent serve MODEL` on a free loopback port and sends ``--passes`` passes, 4 clients at once, each pass:
8 requests of 10 MVSA photos, 40 single photos, 8 ``/explain`` maps and 16 hostile uploads (empty, an HTML page,
a truncated JPEG, a broken GIF). After each pass it prints the server's resident memory (``VmRSS`` of the
process listening on the port, Linux) and, at the end, the spread after the second pass: the aim is flat within
15%.

    python benchmarks/serve_soak.py ../shared/data/mvsa-single --passes 20
"""

from __future__ import annotations

import argparse
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from visent.serve import background

from record import add_results_argument, save_results

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def listening_pid(port: int) -> int:
    """The process listening on ``port`` (from ``ss -ltnp``)."""
    out = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True, check=True).stdout
    line = next(row for row in out.splitlines() if f":{port} " in row)
    return int(line.split("pid=")[1].split(",")[0])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return int(next(row for row in status if row.startswith("VmRSS")).split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mvsa", type=Path, nargs="?", default=SHARED / "mvsa-single")
    parser.add_argument("--model", default="default")
    parser.add_argument("--passes", type=int, default=20)
    add_results_argument(parser, "serve_soak")
    args = parser.parse_args()
    photos = sorted((args.mvsa / "data").glob("*.jpg"))[:60]
    blobs = [(p.name, p.read_bytes()) for p in photos]
    hostile = [b"", b"<!doctype html><html>not an image</html>", blobs[0][1][:500], b"GIF89a" + b"\x00" * 100]
    with background(args.model, timeout=240) as url, httpx.Client(timeout=120) as client:
        pid = listening_pid(int(url.rsplit(":", 1)[1]))

        def batch(i: int) -> None:
            start = (i * 10) % 50
            client.post(url + "/predict", files=[("files", (n, b, "image/jpeg")) for n, b in blobs[start:start + 10]])

        def single(i: int) -> None:
            name, data = blobs[i % len(blobs)]
            client.post(url + "/predict", files=[("files", (name, data, "image/jpeg"))])

        def explain(i: int) -> None:
            name, data = blobs[i % len(blobs)]
            client.post(url + "/explain", files=[("file", (name, data, "image/jpeg"))])

        def bad(i: int) -> None:
            client.post(url + "/predict", files=[("files", (f"bad{i}.jpg", hostile[i % len(hostile)], "image/jpeg"))])

        rss = []
        for n in range(args.passes):
            with ThreadPoolExecutor(4) as pool:
                for call, count in ((batch, 8), (single, 40), (explain, 8), (bad, 16)):
                    list(pool.map(call, range(count)))
            rss.append(rss_mb(pid))
            print(f"pass {n + 1:>3}: server RSS {rss[-1]:.0f} MB", flush=True)
    later = rss[2:] or rss
    base = rss[1] if len(rss) > 1 else rss[0]
    print(f"\nafter the second pass ({base:.0f} MB): min {min(later):.0f}, max {max(later):.0f} MB, "
          f"{100 * (max(later) / base - 1):+.1f}% at most (aim: within 15%)")
    save_results(args.results, [{"pass": n + 1, "rss_mb": mb} for n, mb in enumerate(rss)], model=args.model,
                 after_second_pass_mb=base, later_min_mb=min(later), later_max_mb=max(later))


if __name__ == "__main__":
    main()
