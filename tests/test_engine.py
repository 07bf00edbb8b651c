"""The local engine's contract: batches in order, and a worker it built is closed when the batches are done."""

from __future__ import annotations

import pyarrow as pa
import pytest

from test_pipeline import make_crawl
from visent.engine import LocalEngine
from visent.ingest.worker import ingest


class Recording:
    """A worker that doubles ``x`` and records that it was closed."""

    closed: list[str] = []

    def __init__(self, name: str):
        self.name = name

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.table({"x": [2 * v for v in batch.column("x").to_pylist()]})

    def close(self) -> None:
        Recording.closed.append(self.name)


@pytest.fixture(autouse=True)
def _fresh_record():
    Recording.closed = []


def test_batches_come_back_in_order_and_the_built_worker_is_closed_once():
    out = list(LocalEngine().map_batches(Recording, ("all",), pa.table({"x": list(range(7))}), batch_size=3))
    assert [t.column("x").to_pylist() for t in out] == [[0, 2, 4], [6, 8, 10], [12]]
    assert Recording.closed == ["all"]


def test_a_caller_that_stops_early_closes_the_worker_too():
    batches = LocalEngine().map_batches(Recording, ("early",), pa.table({"x": list(range(7))}), batch_size=3)
    next(batches)
    assert Recording.closed == []
    batches.close()
    assert Recording.closed == ["early"]


def test_a_worker_given_by_the_caller_is_left_open():
    mine = Recording("mine")
    list(LocalEngine().map_batches(Recording, ("unused",), pa.table({"x": [1]}), batch_size=1, local=mine))
    assert Recording.closed == []


def test_ingest_through_an_engine_closes_each_image_fetcher_it_opened(tmp_path, monkeypatch):
    """Through an engine, ingest builds an IngestWorker per window of posts: each one's HTTP client is closed."""
    from visent.ingest import download

    opened, closed = [], []
    real_init, real_close = download.ImageFetcher.__init__, download.ImageFetcher.close
    monkeypatch.setattr(download.ImageFetcher, "__init__",
                        lambda self, *a, **k: (opened.append(self), real_init(self, *a, **k))[1])
    monkeypatch.setattr(download.ImageFetcher, "close", lambda self: (closed.append(self), real_close(self))[1])

    class Elsewhere(LocalEngine):  # any engine but the local stage's own path
        name = "elsewhere"

    crawl = make_crawl(tmp_path / "crawl", n_per_class=3)
    assert ingest(crawl, tmp_path / "ds", engine=Elsewhere(), workers=2, batch_size=2)["posts"] >= 6
    assert opened and {id(f) for f in closed} == {id(f) for f in opened}
