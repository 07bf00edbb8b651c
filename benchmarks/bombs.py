"""What a decompression bomb costs visent: small files that declare a costly decode, through `visent predict`.

Makes each bomb (a progressive JPEG whose smallest AC scan is repeated, at about 1.2 MB and 20 MB; a lossless WebP
of 9000 x 9000 pixels, 3 KB), puts it in a folder beside one ordinary photo and runs a whole `visent predict
default FOLDER` process on it (fresh HOME and VISENT_CACHE in a temporary folder); prints its wall time, its peak
resident memory and the bomb's row, and the time ``visent.core.images.open_image`` alone takes on the file. The
first row is the ordinary photo alone, the process's own cost. ``--unguarded`` adds the WebP with visent's memory
limits off (``VISENT_MAX_DECODE_MB=0``, ``VISENT_DECODE_BUDGET_MB=0``), what it cost before.

    python benchmarks/bombs.py
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from visent.core import images
from visent.core.images import ImageError, jpeg_segments, open_image
from visent.core.machine import cpu_model

from record import add_results_argument, save_results

def scan_bomb(target_bytes: int, side: int = 1000) -> bytes:
    """A progressive JPEG of ``side`` x ``side`` whose smallest AC scan is repeated up to ``target_bytes``."""
    buffer = io.BytesIO()
    gradient = Image.linear_gradient("L").resize((side, side))
    Image.merge("RGB", (gradient, gradient.rotate(90), gradient.rotate(180))).save(
        buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    scans = [(end - start, start, end) for code, start, end in jpeg_segments(data)
             if code == 0xDA and data[start + 5 + 2 * data[start + 4]] > 0]  # an AC scan
    length, start, end = min(scans)
    copies = max(1, (target_bytes - len(data)) // length)
    return data[:end] + data[start:end] * copies + data[end:]


def lossless_webp(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side)).save(buffer, "WEBP", lossless=True)
    return buffer.getvalue()


def photo() -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def run_predict(folder: Path, work: Path, extra_env: dict[str, str]) -> tuple[float, float, list[dict[str, str]]]:
    """Wall seconds, peak RSS in MB and the rows of one `visent predict` process on ``folder``."""
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "VISENT_CACHE": str(work / "cache"), **extra_env}
    out = work / "out.csv"
    command = [sys.executable, "-m", "visent", "predict", "default", str(folder), "-o", str(out)]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"visent predict failed ({process.returncode}): {process.stderr.read().decode()[-2000:]}")
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    return wall, usage.ru_maxrss / 1024, rows


def open_time(path: Path) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        with open_image(path) as image:
            images.decode(image, draft=("RGB", (224, 224)))
        outcome = "decoded"
    except ImageError as error:
        outcome = error.reason
    return time.perf_counter() - started, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unguarded", action="store_true", help="also the WebP with the memory limits off")
    add_results_argument(parser, "bombs")
    args = parser.parse_args()

    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); Python {sys.version.split()[0]}")
    print(f"limits: {images.MAX_JPEG_SCANS} scans, {images.MAX_DECODE_MB} MB per image, "
          f"{images.DECODE_BUDGET_MB} MB per process\n")
    bombs: list[tuple[str, str, bytes, dict[str, str]]] = [
        ("ordinary photo only", "", b"", {}),
        ("scan bomb 1000x1000, 1.2 MB", "bomb.jpg", scan_bomb(1_200_000), {}),
        ("scan bomb 1000x1000, 20 MB", "bomb.jpg", scan_bomb(20_000_000), {}),
        ("lossless WebP 9000x9000", "bomb.webp", lossless_webp(9000), {}),
    ]
    if args.unguarded:
        bombs.append(("lossless WebP 9000x9000, limits off", "bomb.webp", bombs[-1][2],
                      {"VISENT_MAX_DECODE_MB": "0", "VISENT_DECODE_BUDGET_MB": "0"}))
    print(f"{'file':<38} {'size':>10} {'open_image':>11} {'predict wall':>13} {'peak RSS':>9}  bomb's row")
    rows = []
    for label, name, data, env in bombs:
        with tempfile.TemporaryDirectory(prefix="visent-bombs-") as temporary:
            work = Path(temporary)
            folder = work / "images"
            folder.mkdir()
            (folder / "photo.jpg").write_bytes(photo())
            opened = ""
            if name:
                (folder / name).write_bytes(data)
                saved = dict(os.environ)
                os.environ.update(env)
                try:
                    seconds, _ = open_time(folder / name)
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
                opened = f"{seconds * 1000:.1f} ms"
            wall, peak, rows = run_predict(folder, work, env)
            row = next((r for r in rows if r["path"].endswith(name)), None) if name else None
            outcome = "" if row is None else (row["status"] if row["status"] != "error"
                                              else f"error: {row['error'].rsplit(': ', 1)[-1]}")
            size = f"{len(data):,}" if name else ""
            print(f"{label:<38} {size:>10} {opened:>11} {wall:>11.2f} s {peak:>6.0f} MB  {outcome}", flush=True)
            rows.append({"file": label, "bytes": len(data) if name else None, "open_image": opened,
                         "predict_wall_s": wall, "peak_rss_mb": peak, "row": outcome})
    save_results(args.results, rows, columns=["file", "size (bytes)", "open_image", "visent predict", "peak RSS",
                                              "the bomb's row"],
                 table=[[r["file"], f"{r['bytes']:,}" if r["bytes"] else "", r["open_image"],
                         f"{r['predict_wall_s']:.2f} s", f"{r['peak_rss_mb']:.0f} MB", r["row"]] for r in rows])


if __name__ == "__main__":
    main()
