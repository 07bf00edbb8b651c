"""Image download speed: visent ingest against img2dataset, the same N images from 127.0.0.1.

A server in a process of its own (``tests/faultserver.py --kind photo``) serves N deterministic
JPEGs of 30-100 KB at /ok/<n>.jpg, made before the clock starts. Then, each in a process of its own
and timed from start to exit:

- ``visent ingest`` of a JSONL of the N URLs (every image fetched, checked to decode, hashed and
  stored by content; one row per post);
- ``img2dataset`` on the same URL list, installed in a virtual environment of its own that this
  script creates on first use (``--venv``), with ``resize_mode="no"`` and ``skip_reencode=True`` so it
  stores the bytes as served (it still decodes each image, as visent does), SHA-256 on, EXIF off,
  ``output_format="files"``; once with one process of as many threads as visent's workers and once
  with one process per core (its usual setup).

Prints images/s, CPU seconds per image (the tool's process and its children, user + system, from
``RUSAGE_CHILDREN``) and how many images each stored, plus the server's CPU time. No traffic
leaves 127.0.0.1 (img2dataset's optional wandb and albumentations' update check are off).

    python benchmarks/download.py --images 2000 --workers 16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import add_results_argument, save_results

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "faultserver.py"
IMG2DATASET = "img2dataset==1.47.0"

I2D_SCRIPT = """
import sys
from img2dataset import download
url_list, out, processes, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
download(url_list=url_list, output_folder=out, processes_count=processes, thread_count=threads,
         resize_mode="no", skip_reencode=True, output_format="files", input_format="txt",
         extract_exif=False, compute_hash="sha256", timeout=10, retries=0, enable_wandb=False,
         number_sample_per_shard=10000, distributor="multiprocessing")
"""


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    out.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", VISENT_PROGRESS="0",
               NO_ALBUMENTATIONS_UPDATE="1", WANDB_MODE="disabled")
    return out


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import img2dataset"]
    if python.exists() and subprocess.run(probe, capture_output=True, env=env()).returncode == 0:
        return python
    print(f"creating {venv} with {IMG2DATASET} (first run only) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", IMG2DATASET], check=True)
    return python


def timed(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the command and its children, result)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} ... failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=16, help="visent's download threads; img2dataset's threads")
    parser.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "visent-bench-img2dataset-venv")
    parser.add_argument("--skip-img2dataset", action="store_true")
    add_results_argument(parser, "download")
    args = parser.parse_args()
    n, workers = args.images, args.workers
    i2d_python = None if args.skip_img2dataset else ensure_venv(args.venv)

    work = Path(tempfile.mkdtemp(prefix="visent-bench-download-"))
    server = subprocess.Popen([sys.executable, str(SERVER), "--kind", "photo", "--images", str(n)],
                              stdout=subprocess.PIPE, text=True, env=env())
    try:
        base = server.stdout.readline().strip()
        if not base.startswith("http://127.0.0.1:"):
            sys.exit(f"the image server did not start (said {base!r})")
        urls = [f"{base}/ok/{i}.jpg" for i in range(n)]
        (work / "urls.txt").write_text("\n".join(urls) + "\n")
        with open(work / "posts.jsonl", "w") as handle:
            for i, url in enumerate(urls):
                handle.write(json.dumps({"id": str(i), "text": f"post {i}", "image_url": url}) + "\n")

        results = []
        cpu0 = server_cpu(server.pid)
        wall, cpu, _ = timed([sys.executable, "-m", "visent", "ingest", str(work / "posts.jsonl"),
                              "--out", str(work / "visent"), "--workers", str(workers),
                              "--per-host", str(workers), "--batch-size", "500"])
        import pyarrow.parquet as pq

        posts = pq.read_table(work / "visent" / "posts.parquet")
        stored = sum(s == "ok" for s in posts.column("ingest_status").to_pylist())
        images = list((work / "visent" / "images").rglob("*.jpg"))
        mean_kb = sum(p.stat().st_size for p in images) / max(1, len(images)) / 1024
        results.append((f"visent ingest ({workers} threads)", wall, cpu, stored, server_cpu(server.pid) - cpu0))

        if i2d_python is not None:
            for processes, threads in ((1, workers), (os.cpu_count() or 1, workers)):
                out = work / f"img2dataset-{processes}"
                cpu0 = server_cpu(server.pid)
                wall, cpu, _ = timed([str(i2d_python), "-c", I2D_SCRIPT, str(work / "urls.txt"), str(out),
                                      str(processes), str(threads)])
                stored = len(list(out.rglob("*.jpg")))
                results.append((f"img2dataset ({processes} process{'es' if processes > 1 else ''} × {threads} threads)",
                                wall, cpu, stored, server_cpu(server.pid) - cpu0))
    finally:
        server.terminate()
        server.wait(timeout=10)

    print(f"\n{n} JPEGs (mean {mean_kb:.0f} KB) from 127.0.0.1 on {os.cpu_count()} cores; "
          "times from start to exit of each command")
    print(f"{'':44} {'images/s':>9} {'CPU s/image':>12} {'stored':>8} {'wall s':>7} {'server CPU s':>13}")
    for name, wall, cpu, stored, srv in results:
        print(f"{name:44} {n / wall:9.1f} {cpu / n * 1000:9.2f} ms {stored:8d} {wall:7.2f} {srv:13.2f}")
    shutil.rmtree(work, ignore_errors=True)
    save_results(args.results, [{"path": name, "wall_s": wall, "cpu_s": cpu, "stored": stored, "server_cpu_s": srv}
                                for name, wall, cpu, stored, srv in results],
                 columns=[f"download of {n:,} JPEGs ({mean_kb:.0f} KB mean) from 127.0.0.1, {os.cpu_count()} cores",
                          "images/s", "CPU ms per image"],
                 table=[[name, f"{n / wall:.1f}", f"{cpu / n * 1000:.2f}"] for name, wall, cpu, _, _ in results],
                 images=n, workers=workers)


if __name__ == "__main__":
    main()
