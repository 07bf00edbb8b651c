"""``kill -9`` in the middle of a stage, then the same command again: the tables are those of an
undisturbed run.

Each test runs the real command (``python -m visent ...``) in a process of its own, waits until
the stage has written some checkpoint parts (watching ``work/<stage>/``), kills it with SIGKILL,
runs the same command again to the end, and compares every table (same rows, same order), the
image files and the stage counts with a run that was never interrupted.

``train`` is not here: it writes a model directory, not dataset tables, and keeps no checkpoint
to resume from (a killed training starts over; its files are written atomically, config.json
last, so a killed run never leaves a directory that loads).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from faultserver import FAULTS, FaultServer
from visent import Dataset
from visent.ingest import ingest
from visent.teach import teach

WORDS = ("love", "hate", "great", "awful", "sunny", "rain", "happy", "sad", "the", "day", "game", "lost",
         "won", "beautiful", "terrible", "ok", "fine", "angry", "good", "bad", ":)", ":(", "#win", "lol")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(VISENT_PROGRESS="0", NO_PROXY="127.0.0.1,localhost")
    return env


def visent(*args: str | Path, timeout: float = 120) -> None:
    """Run ``visent ARGS`` to the end; fail with its output if it fails."""
    done = subprocess.run([sys.executable, "-m", "visent", *map(str, args)], env=_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"visent {' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"


def visent_killed(*args: str | Path, parts: Path, min_parts: int, timeout: float = 60,
                  pattern: str = "part-*.parquet") -> int:
    """Start ``visent ARGS``, SIGKILL it once ``parts`` holds ``min_parts`` checkpoint parts (files matching
    ``pattern``); returns how many there were. Fails if the command ended before it could be killed mid-way."""
    proc = subprocess.Popen([sys.executable, "-m", "visent", *map(str, args)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end and proc.poll() is None:
            if len(list(parts.glob(pattern))) >= min_parts:
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"visent {args[0]} ended ({proc.returncode}) before it could be killed; " \
                                    "give it more work"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return len(list(parts.glob(pattern)))


def snapshot(root: Path) -> dict:
    """Everything a stage leaves behind that users read: tables, image files, stage counts."""
    manifest = json.loads((root / "manifest.json").read_text())
    return {
        "tables": {p.name: pq.read_table(p) for p in sorted(root.glob("*.parquet"))},
        "images": {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in sorted((root / "images").rglob("*")) if p.is_file()} if (root / "images").exists() else {},
        "stages": {name: (info["status"], info.get("counts")) for name, info in manifest["stages"].items()},
        "work": sorted(str(p.relative_to(root)) for p in (root / "work").glob("*/*")) if (root / "work").exists() else [],
    }


def assert_same(resumed: Path, undisturbed: Path, stage: str) -> None:
    a, b = snapshot(resumed), snapshot(undisturbed)
    assert a["tables"].keys() == b["tables"].keys()
    for name, table in a["tables"].items():
        assert table.num_rows > 0
        assert table.equals(b["tables"][name]), f"{name} differs after kill -9 and resume"
    assert a["images"] == b["images"]
    assert a["stages"] == b["stages"] and a["stages"][stage][0] == "done"
    assert not list((resumed / "work").glob(f"{stage}/*")), "the stage's checkpoint parts outlived it"


@pytest.fixture
def server():
    with FaultServer(slow_s=2.0, huge_bytes=400_000) as httpd:
        yield httpd


@pytest.mark.slow
def test_ingest_killed_mid_crawl_resumes_to_the_same_tables(server, tmp_path):
    faults = [fault for fault in FAULTS if fault != "/endless/slow"]  # its deadline would make the test slow
    lines = []
    for n in range(180):
        path = faults[n // 3 % len(faults)].format(n=n) if n % 3 == 0 else f"/ok/{n}.jpg?delay=0.02"
        lines.append({"id": str(n), "text": f"post {n}", "image_url": server.url(path)})
    lines.append(lines[5])  # a repeated id is kept, renamed and flagged
    source = tmp_path / "crawl.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    options = ["--workers", "4", "--per-host", "4", "--timeout", "0.8", "--retries", "1", "--backoff", "0.01",
               "--max-bytes", "100000", "--batch-size", "12"]
    parts = visent_killed("ingest", source, "--out", tmp_path / "a", *options,
                          parts=tmp_path / "a" / "work" / "ingest", min_parts=3)
    assert 3 <= parts < 15  # 181 posts are 16 parts of 12
    visent("ingest", source, "--out", tmp_path / "a", *options)
    visent("ingest", source, "--out", tmp_path / "b", *options)
    assert_same(tmp_path / "a", tmp_path / "b", "ingest")
    posts = Dataset(tmp_path / "a").read_table("posts")
    assert posts.num_rows == len(lines) and posts.column("post_id")[-1].as_py() == "5#2"
    assert all(posts.column("ingest_status").to_pylist())
    errors = [r for r in posts.to_pylist() if r["ingest_status"] == "error"]
    assert all(r["ingest_reason"] for r in errors)
    assert len({r["ingest_reason"].split(" (")[0] for r in errors}) >= 9  # every kind of fault was met


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(0, 12)))) for _ in range(n)]


@pytest.mark.slow
def test_teach_killed_mid_way_resumes_to_the_same_table(tmp_path):
    source = tmp_path / "posts.jsonl"
    source.write_text("".join(json.dumps({"id": f"t{i}", "text": text}) + "\n"
                              for i, text in enumerate(_texts(30_000))))
    ingest(source, tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    parts = visent_killed("teach", tmp_path / "a", "--teacher", "vader",
                          parts=tmp_path / "a" / "work" / "teach", min_parts=2)
    assert 2 <= parts < 14  # 30,000 posts are 15 parts of 2,048
    visent("teach", tmp_path / "a", "--teacher", "vader")
    visent("teach", tmp_path / "b", "--teacher", "vader")
    assert_same(tmp_path / "a", tmp_path / "b", "teach")


@pytest.mark.slow
def test_clean_killed_mid_way_resumes_to_the_same_table(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    texts = _texts(2_600, seed=1)
    lines = []
    for i, text in enumerate(texts):
        buffer = io.BytesIO()
        side = 24 if i % 50 else 16  # a few too small to keep
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, "PNG")
        (folder / f"{i}.png").write_bytes(buffer.getvalue())
        lines.append({"id": f"c{i}", "text": text, "image": f"images/{i}.png"})
        if i % 97 == 0:  # the same image again: an exact duplicate
            lines.append({"id": f"c{i}-again", "text": text, "image": f"images/{i}.png"})
    source = tmp_path / "posts.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    ingest(source, tmp_path / "a")
    teach(tmp_path / "a", "vader")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    options = ["--min-side", "20", "--balance"]
    visent_killed("clean", tmp_path / "a", *options, parts=tmp_path / "a" / "work" / "clean-images", min_parts=1)
    visent("clean", tmp_path / "a", *options)
    visent("clean", tmp_path / "b", *options)
    assert_same(tmp_path / "a", tmp_path / "b", "clean")
    kept = Dataset(tmp_path / "a").read_table("clean").column("clean_status").to_pylist()
    assert "kept" in kept and len(set(kept)) > 1


def _crawl_rows(root: Path) -> tuple[list[dict], list[dict]]:
    """The rows and tombstones of a crawl folder, in order, across its shards."""
    from visent.crawl.shards import committed_shards, committed_tombstones, read_rows

    rows = [row for shard in committed_shards(root) for _, row in read_rows(shard)]
    return rows, [row for path in committed_tombstones(root) for _, row in read_rows(path)]


@pytest.mark.slow
def test_crawl_killed_twice_mid_shard_resumes_to_the_same_crawl(tmp_path):
    from blueskyserver import ReplayServer, synthetic_events

    from visent.crawl.events import parse_jetstream

    events = synthetic_events(2400, seed=11, image_share=0.5, delete_share=0.04)
    image_posts = [e for e in map(lambda raw: parse_jetstream(json.dumps(raw)), events)
                   if e.operation == "create" and (e.record or {}).get("embed", {}).get("$type", "").endswith(
                       ("images", "recordWithMedia"))]
    target = str(len(image_posts) * 9 // 10)  # stop before the end of the replay
    with ReplayServer(events, rate=800) as server:
        command = ["crawl", "bluesky", "--endpoint", server.url, "--posts", target, "--min-words", "0",
                   "--per-author", "0", "--keep-labelled", "--shard-posts", "25"]
        for min_shards in (3, 9):  # killed mid-shard: the shard after these is in memory
            visent_killed(*command, "--out", tmp_path / "a", parts=tmp_path / "a", min_parts=min_shards,
                          pattern="posts-*.jsonl")
        visent(*command, "--out", tmp_path / "a")
        visent(*command, "--out", tmp_path / "b")
    resumed, undisturbed = _crawl_rows(tmp_path / "a"), _crawl_rows(tmp_path / "b")
    rows, tombstones = resumed
    assert len(rows) > 100 and tombstones, "the replay should give rows and deletions of written posts"
    assert len({row["id"] for row in rows}) == len(rows), "a row was written twice"
    assert resumed == undisturbed
    assert [p.name for p in (tmp_path / "a").glob(".*.tmp")] == []
