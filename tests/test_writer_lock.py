"""One writer per dataset: a stage holds the dataset's writer lock while it writes; a second process is refused at
once with one line naming the first; the lock goes with the process however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from test_pipeline import make_crawl
from visent.core.store import WRITER_LOCK, Dataset, DatasetBusy
from visent.ingest import ingest
from visent.teach import teach

HOLD = """
import sys, time
from visent.core.store import Dataset
with Dataset(sys.argv[1]).writing("ingest"):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(root: Path) -> subprocess.Popen:
    """Another process that holds the writer lock of ``root`` until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def visent(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VISENT_PROGRESS": "0", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "visent", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.slow
def test_a_second_writer_is_refused_at_once_and_the_lock_goes_with_its_process(tmp_path):
    crawl = make_crawl(tmp_path / "crawl", n_per_class=4)
    ingest(crawl, tmp_path / "ds")
    holder = _holder(tmp_path / "ds")
    try:
        with pytest.raises(DatasetBusy, match=rf"process {holder.pid}, ingest since .* is writing this dataset"):
            teach(tmp_path / "ds", "vader")
        started = time.monotonic()
        refused = visent("teach", str(tmp_path / "ds"), "--teacher", "vader")
        assert refused.returncode == 1 and time.monotonic() - started < 60
        message = (refused.stdout + refused.stderr).strip()
        assert "is writing this dataset" in message and f"process {holder.pid}" in message, message
        assert "Traceback" not in message and len(message.splitlines()) <= 3, message  # one line, folded
        assert not Dataset(tmp_path / "ds").has_table("teach")
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up: the OS releases the lock
        holder.wait()
    assert teach(tmp_path / "ds", "vader")["posts"] == 10
    # the same process nests it (build runs the stages in a row)
    ds = Dataset(tmp_path / "ds")
    with ds.writing("build"), ds.writing("teach"):
        assert (tmp_path / "ds" / WRITER_LOCK).exists()


@pytest.mark.slow
def test_two_ingests_into_one_dataset_never_mix_their_crawls(tmp_path):
    crawls = [make_crawl(tmp_path / f"crawl{i}", n_per_class=30 + 10 * i) for i in range(2)]
    alone = []
    for i, crawl in enumerate(crawls):
        ingest(crawl, tmp_path / f"alone{i}")
        alone.append(pq.read_table(tmp_path / f"alone{i}" / "posts.parquet").select(["post_id", "image_sha256"]))
    env = {**os.environ, "VISENT_PROGRESS": "0"}
    runs = [subprocess.Popen([sys.executable, "-m", "visent", "ingest", str(crawl), "--out", str(tmp_path / "ds"),
                              "--batch-size", "5", "--workers", "1"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for crawl in crawls]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    codes = [run.returncode for run in runs]
    assert 0 in codes, outputs
    for code, output in zip(codes, outputs):
        assert code == 0 or (code == 1 and "is writing this dataset" in output), output
    posts = pq.read_table(tmp_path / "ds" / "posts.parquet").select(["post_id", "image_sha256"])
    assert any(posts.equals(table) for table in alone)  # one crawl's posts, whole: never a mix, never duplicates
    assert Dataset(tmp_path / "ds").stage_done("ingest")
