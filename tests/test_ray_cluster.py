"""A Ray cluster of two nodes on this machine (a head and a second node, one CPU each, as `ray start --head` and
`ray start --address` make them): visent joins it with --ray-address, the batches of ingest, teach, embed and
predict run on both nodes, and the tables, cached features and predictions equal the local engine's. Skipped when
Ray is not installed (`pip install "visent[ray]"`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.csv as pv
import pyarrow.parquet as pq
import pytest

from test_pipeline import make_crawl

ray = pytest.importorskip("ray", exc_type=ImportError)
cluster_utils = pytest.importorskip("ray.cluster_utils", exc_type=ImportError)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes():
    """The head and a second node, each with one CPU of its own, started the way `ray start` starts them."""
    if ray.is_initialized():
        ray.shutdown()
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        cluster.shutdown()


def visent(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "visent", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_a_two_node_cluster_runs_every_stage_that_scales_out_on_both_nodes(two_nodes, tmp_path):
    crawl = make_crawl(tmp_path / "crawl", n_per_class=12)
    env = {**os.environ, "VISENT_CACHE": str(tmp_path / "cache"), "VISENT_PROGRESS": "0", "COLUMNS": "200"}
    on_both = re.compile(r"ray: (\d+) batches on 2 of the cluster's 2 nodes \((\d+) \+ (\d+)\)")
    ray_args = ["--engine", "ray", "--ray-address", two_nodes]

    found = {}
    clean = ["clean", str(tmp_path / "ray"), "--neg-threshold", "0.4", "--neu-threshold", "0.9", "--pos-threshold",
             "0.4"]
    for stage, args in (("ingest", ["ingest", str(crawl), "--out", str(tmp_path / "ray"), "--batch-size", "4"]),
                        ("teach", ["teach", str(tmp_path / "ray"), "--teacher", "vader", "--batch-size", "6"]),
                        ("clean", clean),
                        ("embed", ["embed", str(tmp_path / "ray"), "--chunk-size", "4"])):
        printed = visent(*args, *(ray_args if stage != "clean" else []), env=env)
        if stage != "clean":  # clean runs in the visent process
            assert on_both.search(printed), (stage, printed)
    visent("ingest", str(crawl), "--out", str(tmp_path / "local"), "--batch-size", "4", env=env)
    visent("teach", str(tmp_path / "local"), "--teacher", "vader", env=env)
    for name in ("posts", "teach"):
        assert pq.read_table(tmp_path / "ray" / f"{name}.parquet").equals(
            pq.read_table(tmp_path / "local" / f"{name}.parquet")), name

    # train reads the features the two nodes cached (it embeds nothing), then predict runs on both nodes
    cached = sorted((tmp_path / "cache").rglob("shard-*.npz"))
    assert "model →" in visent("train", str(tmp_path / "ray"), "--out", str(tmp_path / "model"), "--C", "0.01",
                               env=env)
    assert sorted((tmp_path / "cache").rglob("shard-*.npz")) == cached
    outputs = {}
    for name, extra in (("ray", [*ray_args, "--chunk-size", "5"]), ("local", [])):
        printed = visent("predict", str(tmp_path / "model"), str(tmp_path / "crawl"), "--out",
                         str(tmp_path / f"{name}.csv"), *extra, env=env)
        outputs[name] = pv.read_csv(tmp_path / f"{name}.csv")
        if name == "ray":
            assert on_both.search(printed), printed
    assert outputs["ray"].column("path").equals(outputs["local"].column("path"))
    assert outputs["ray"].column("label").equals(outputs["local"].column("label"))
    np.testing.assert_allclose(outputs["ray"].column("positive").to_numpy(), outputs["local"].column("positive")
                               .to_numpy(), atol=1e-6)
