"""The ray engine against the local one on a small crawl: ingest, teach, embed and predict give the same tables,
cached features and prediction rows. Runs on a local Ray cluster on 127.0.0.1 with 2 CPUs (2 actors per stage);
skipped when Ray is not installed (`pip install "visent[ray]"`)."""

from __future__ import annotations

import contextlib
import functools
import gc
import http.server
import logging
import re
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from test_pipeline import make_crawl, make_image, make_mvsa

ray = pytest.importorskip("ray", exc_type=ImportError)

from visent import Dataset  # noqa: E402
from visent.clean import clean  # noqa: E402
from visent.cli import app  # noqa: E402
from visent.core.store import Checkpoint  # noqa: E402
from visent.embed import FeatureCache, load_backbone  # noqa: E402
from visent.embed.dataset import embed_dataset, kept_images  # noqa: E402
from visent.embed.features import feature_key  # noqa: E402
from visent.engine import EngineError, get_engine  # noqa: E402
from visent.ingest import READERS, detect_format  # noqa: E402
from visent.ingest.stage import _unique  # noqa: E402
from visent.ingest.worker import ingest  # noqa: E402
from visent.predict import iter_predict  # noqa: E402
from visent.teach import teach  # noqa: E402
from visent.train import train  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")  # Ray's own settings

runner = CliRunner()
THRESHOLDS = {"negative": 0.4, "neutral": 0.9, "positive": 0.4}


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster on 127.0.0.1 with 2 CPUs: the ray engine joins it instead of starting its own."""
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir="/tmp/visent-ray-test",
             log_to_driver=False, logging_level=logging.WARNING)
    try:
        engine = get_engine("ray")
        assert ray.cluster_resources()["CPU"] == 2
        yield engine
    finally:
        # shut down an idle cluster: Ray ends a process (exit status 1) whose threads touch Ray after ray.shutdown(),
        # so the last stage's actors are let go and Ray objects left in reference cycles freed while Ray runs
        gc.collect()
        _cpus_given_back()
        ray.shutdown()


@contextlib.contextmanager
def _server(folder: Path):
    """An HTTP server on 127.0.0.1 serving ``folder``; yields its URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "images").rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.filterwarnings("error::RuntimeWarning")  # e.g. the ray ingest's checkpoint not taken by the stage
def test_ray_and_local_engines_agree(cluster, tmp_path, monkeypatch):
    # relative paths from here; the Ray workers run in another working directory (the one Ray started in)
    monkeypatch.chdir(tmp_path)
    crawl = make_crawl(Path("crawl"), n_per_class=12)  # 24 posts, a broken line, a missing image
    # a post whose image is not an image, one repeated id, and images downloaded over HTTP (one missing):
    # error rows must match as well
    (tmp_path / "crawl" / "notes.jpg").write_text("not an image")
    make_image(tmp_path / "served.jpg", "positive", seed=99)
    with _server(tmp_path) as url, crawl.open("a") as handle:
        handle.write('{"id": "notes", "text": "so happy today", "image": "notes.jpg"}\n')
        handle.write('{"id": "3", "text": "the same id again, sad", "image": "3.jpg"}\n')
        handle.write(f'{{"id": "web", "text": "lovely view", "image": "{url}/served.jpg"}}\n')
        handle.write(f'{{"id": "gone", "text": "awful", "image": "{url}/gone.jpg"}}\n')
        handle.flush()
        local, remote = Path("local"), Path("ray")

        # ingest: the same posts table (row order included) and the same stored image files
        counts = {name: ingest(crawl, root, engine=engine, batch_size=4, workers=2, per_host=1, retries=0)
                  for name, root, engine in (("local", local, "local"), ("ray", remote, cluster))}
    assert counts["ray"] == counts["local"] and counts["local"]["posts"] == 30 and counts["local"]["error"] == 5
    posts = Dataset(local).read_table("posts")
    assert Dataset(remote).read_table("posts").equals(posts)
    in_order = [post.post_id for post in _unique(READERS.create(detect_format(crawl), source=crawl))]
    assert posts.column("post_id").to_pylist() == in_order and in_order[-4:] == ["notes", "3#2", "web", "gone"]
    assert _files(remote) == _files(local) and len(_files(local)) == 25
    assert not (remote / "work" / "ingest").exists()  # the checkpoint was merged and removed
    again = ingest(crawl, remote, engine=cluster, batch_size=4, workers=2, per_host=1, retries=0)
    assert again == counts["ray"]  # done: a no-op

    # teach (through the command line for ray): the same table, float32 values exactly equal
    assert teach(local, "vader", batch_size=5)["posts"] == 30
    result = runner.invoke(app, ["teach", str(remote), "--teacher", "vader", "--engine", "ray"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(remote / "teach.parquet").equals(pq.read_table(local / "teach.parquet"))
    for root in (local, remote):
        clean(root, thresholds=THRESHOLDS)
    assert Dataset(remote).read_table("clean").equals(Dataset(local).read_table("clean"))

    # embed: the same cache keys; values equal up to float summation order (1 vs 2 threads per forward pass)
    # (ray through the command line, into the default cache that train reads below)
    caches = {"local": FeatureCache(tmp_path / "cache-local"), "ray": FeatureCache()}
    lite0 = embed_dataset(local, "efficientnet-lite0", runtime="torch", chunk_size=6, cache=caches["local"])
    lite0 = lite0["efficientnet-lite0"]
    assert lite0["computed"] == lite0["images"] >= 20 and lite0["cached"] == lite0["errors"] == 0
    result = runner.invoke(app, ["embed", str(remote), "--backbone", "efficientnet-lite0", "--runtime", "torch",
                                 "--chunk-size", "6", "--engine", "ray"])
    assert result.exit_code == 0, result.output
    assert re.search(rf"computed\s*│\s*{lite0['images']}\s*│", result.output), result.output
    digests, _ = kept_images(Dataset(remote))
    key = feature_key(load_backbone("efficientnet-lite0"), "none", "torch")
    found = {name: FeatureCache(cache.root).get_many(key, digests) for name, cache in caches.items()}
    assert set(found["ray"]) == set(found["local"]) == set(digests)
    assert len(list(caches["ray"].directory(key).glob("shard-*.npz"))) == -(-len(digests) // 6)  # a shard per chunk
    for digest in digests:
        np.testing.assert_allclose(found["ray"][digest], found["local"][digest], rtol=0, atol=1e-5)

    # train reads the features the ray engine cached: it computes none (no new shard)
    shards = sorted(caches["ray"].root.rglob("shard-*.npz"))
    model = train(remote, "model", backbone="efficientnet-lite0", runtime="torch", C=0.01)
    assert sorted(caches["ray"].root.rglob("shard-*.npz")) == shards
    assert model.metrics["n_train_posts"] == len(digests)

    # predict (features computed in the workers, not read from the cache): the same rows in input order
    inputs = ["crawl", "crawl/missing.jpg"]
    rows = {name: list(iter_predict("model", inputs, batch_size=4, cache=False, chunk_size=7, engine=engine))
            for name, engine in (("local", None), ("ray", cluster))}
    assert len(rows["local"]) == 26
    for mine, theirs in zip(rows["ray"], rows["local"], strict=True):
        assert {k: mine[k] for k in ("path", "label", "status", "error")} == \
               {k: theirs[k] for k in ("path", "label", "status", "error")}
        if mine["status"] == "ok":
            assert [mine[c] for c in ("negative", "neutral", "positive")] == \
                   pytest.approx([theirs[c] for c in ("negative", "neutral", "positive")], abs=1e-6)
    assert sum(row["status"] == "error" for row in rows["ray"]) == 2  # notes.jpg and missing.jpg


@pytest.mark.slow
def test_ray_ingest_of_a_labelled_source(cluster, tmp_path):
    """An MVSA folder: the human labels go to their own table, equal with both engines."""
    source = make_mvsa(tmp_path / "mvsa", n_per_class=5)
    for name, engine in (("local", "local"), ("ray", cluster)):
        assert ingest(source, tmp_path / name, engine=engine, batch_size=3)["with_human_labels"] == 10
    for table in ("posts", "human_labels"):
        assert Dataset(tmp_path / "ray").read_table(table).equals(Dataset(tmp_path / "local").read_table(table))


class _Counting:
    """An engine that passes batches to ``inner`` and counts the rows that come back; with ``stop_after`` it is
    interrupted (KeyboardInterrupt) once that many batches are done."""

    def __init__(self, inner, stop_after: int | None = None):
        self.inner, self.stop_after, self.rows, self.batches = inner, stop_after, 0, 0
        self.name, self.threads_per_worker = f"counting-{inner.name}", inner.threads_per_worker

    def map_batches(self, worker, args, table, *, batch_size, local=None):
        for rows in self.inner.map_batches(worker, args, table, batch_size=batch_size, local=local):
            if self.batches == self.stop_after:
                raise KeyboardInterrupt
            self.batches += 1
            self.rows += rows.num_rows
            yield rows


def _cpus_given_back(timeout: float = 10.0) -> bool:
    """True once every CPU of the cluster is free again (a stage's actors each hold one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_a_run_interrupted_on_one_engine_is_finished_by_the_other(cluster, tmp_path, monkeypatch):
    crawl = make_crawl(tmp_path / "crawl", n_per_class=8)  # 18 posts
    ingest(crawl, tmp_path / "local", batch_size=4)
    teach(tmp_path / "local", "vader", batch_size=4)
    first = _Counting(get_engine("local"), stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        ingest(crawl, tmp_path / "mixed", engine=first, batch_size=4)
    rest = _Counting(cluster)
    ingest(crawl, tmp_path / "mixed", engine=rest, batch_size=4)
    assert (first.rows, rest.rows) == (8, 10)  # nothing fetched twice
    assert Dataset(tmp_path / "mixed").read_table("posts").equals(Dataset(tmp_path / "local").read_table("posts"))
    # ^C while teach writes its third batch, the ray engine's iterator suspended in the stage: Ray Data's executor
    # stops with the stage and its actors give their CPUs back
    write, writes = Checkpoint.write, []

    def interrupted(self, rows, schema=None):
        if len(writes) == 2:
            raise KeyboardInterrupt
        writes.append(rows)
        return write(self, rows, schema)

    monkeypatch.setattr(Checkpoint, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        teach(tmp_path / "mixed", "vader", batch_size=4, engine=cluster)
    assert _cpus_given_back()
    monkeypatch.setattr(Checkpoint, "write", write)
    rest = _Counting(get_engine("local"))
    teach(tmp_path / "mixed", "vader", batch_size=4, engine=rest)
    assert rest.rows == 10  # the two batches written before ^C are not taught again
    assert pq.read_table(tmp_path / "mixed" / "teach.parquet").equals(pq.read_table(tmp_path / "local" / "teach.parquet"))


def test_ray_engine_errors(cluster, tmp_path):
    with pytest.raises(EngineError, match="unknown engine"):
        get_engine("spark")
    with pytest.raises(EngineError, match="--engine ray"):
        get_engine("local", address="auto")
    result = runner.invoke(app, ["predict", "default", str(tmp_path), "--engine", "dask"])
    assert result.exit_code == 1 and "unknown engine 'dask'" in result.output
    with pytest.raises(EngineError, match="Ray Client"):
        get_engine("ray", address="ray://127.0.0.1:10001")
    with pytest.raises(EngineError, match="give auto or host:port"):
        get_engine("ray", address="head-node")



@pytest.mark.slow
def test_a_workers_error_reaches_the_driver_as_its_own_one_line(cluster):
    """A VisentError raised on an actor (a refused write here) comes back as itself, one line, not as Ray's
    exception around a remote traceback."""
    from visent.core.errors import WriteError

    class FullDisk:  # defined here, so that it travels to the actors by value
        """A stage worker that finds the disk full, as an ingest worker writing an image would."""

        def __call__(self, batch):
            import errno

            from visent.core.errors import write_error

            raise write_error(OSError(errno.ENOSPC, "No space left on device"), "/data/ds/images/ab/x.jpg", 1000)

    with pytest.raises(WriteError) as raised:
        list(cluster.map_batches(FullDisk, (), pa.table({"x": [1, 2]}), batch_size=1))
    assert str(raised.value).startswith("no space left on device writing /data/ds/images/ab/x.jpg")
    assert "\n" not in str(raised.value)
    # once its error is let go, the failed stage's actors give their CPUs back (the error's frames, which hold
    # them through Ray Data's executor, are in reference cycles: the collector frees them)
    del raised
    gc.collect()
    assert _cpus_given_back(timeout=5.0)
