"""Ingesting a crawl folder (``visent crawl bluesky``): the reader, deletions honoured, growing crawls read
incrementally (and equal to an ingest from scratch), and the export of a crawled dataset."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from faultserver import FaultServer
from test_pipeline import NEGATIVE_TEXTS, POSITIVE_TEXTS
from visent import Dataset
from visent.clean import clean
from visent.export import card_path, export_dataset
from visent.ingest import READERS, detect_format, ingest
from visent.ingest import stage as stage_module
from visent.teach import teach

FIRST, LAST = "2025-03-01T10:00:00.000000Z", "2025-03-01T11:30:00.000000Z"


@pytest.fixture(scope="module")
def server():
    with FaultServer() as httpd:
        yield httpd


def did(author: int) -> str:
    return f"did:plc:author{author:03d}"


def uri(author: int, rkey: str) -> str:
    return f"at://{did(author)}/app.bsky.feed.post/{rkey}"


def rows_of(server: FaultServer, author: int, rkey: str, images: list[int], text: str | None = None) -> list[dict]:
    """The crawl rows of one post (one per image), images served as /ok/<n>.jpg, as visent.crawl writes them."""
    text = text if text is not None else POSITIVE_TEXTS[images[0] % len(POSITIVE_TEXTS)]
    return [{"id": f"{uri(author, rkey)}#{k}", "text": text, "image": server.url(f"/ok/{n}.jpg"), "lang": "en",
             "langs": ["en-US"], "created_at": "2025-03-01T10:00:00.000Z", "author": did(author), "alt": "an alt text",
             "labels": [], "reply": False, "time_us": 1_740_823_200_000_000 + n, "cid": f"bafyrei{rkey}",
             "image_cid": f"bafkrei{n:04d}"} for k, n in enumerate(images, start=1)]


def write_info(root: Path) -> None:
    info = {"visent_crawl": 1, "service": "bluesky", "source": "jetstream",
            "endpoints": ["wss://jetstream2.us-east.bsky.network/subscribe"],
            "options": {"langs": [], "replies": True, "min_words": 0, "per_author_hour": 0, "keep_labelled": False,
                        "cdn": "https://cdn.bsky.app/img", "image_size": "thumbnail"},
            "started_at": FIRST, "updated_at": LAST, "first_event": FIRST, "last_event": LAST, "counts": {}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "crawl.json").write_text(json.dumps(info))


def write_shard(root: Path, number: int, rows: list[dict] | list[str]) -> None:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    (root / f"posts-{number:06d}.jsonl").write_text("".join(line + "\n" for line in lines))


def write_tombstones(root: Path, number: int, uris: list[str]) -> None:
    (root / f"tombstones-{number:06d}.jsonl").write_text(
        "".join(json.dumps({"id": u, "time_us": 1_740_830_000_000_000}) + "\n" for u in uris))


def commit(root: Path, shard: int) -> None:
    (root / ".state").mkdir(exist_ok=True)
    cursor = {"shard": shard, "position": 1_740_830_000_000_000 + shard}
    (root / ".state" / "cursor.json").write_text(json.dumps(cursor))


def make_crawl(root: Path, server: FaultServer) -> Path:
    """Two committed shards: 5 posts (7 images) by 4 authors, one post (2 images) deleted by its author."""
    write_info(root)
    write_shard(root, 1, rows_of(server, 1, "a1", [1]) + rows_of(server, 2, "b1", [2, 3])
                + rows_of(server, 3, "c1", [4]))
    write_shard(root, 2, rows_of(server, 1, "a2", [5]) + rows_of(server, 4, "d1", [6, 7]))
    write_tombstones(root, 2, [uri(2, "b1")])
    commit(root, 2)
    return root


def grow(root: Path, server: FaultServer) -> None:
    """Shard 3 (two new posts), a tombstone of an old post in it, and a commit with only a tombstone (of a post of
    shard 3)."""
    write_shard(root, 3, rows_of(server, 5, "e1", [8]) + rows_of(server, 3, "c2", [9, 10]))
    write_tombstones(root, 3, [uri(1, "a2")])
    write_tombstones(root, 4, [uri(5, "e1")])
    commit(root, 4)


def table(out: Path):
    return pq.read_table(out / "posts.parquet")


def images_on_disk(out: Path) -> set[str]:
    return {p.name for p in (out / "images").rglob("*") if p.is_file()}


def hits(server: FaultServer) -> set[int]:
    return {int(path.rsplit("/", 1)[1].split(".")[0]) for path in server.hits if path.startswith("/ok/")}


# --------------------------------------------------------------------------- reader
def test_detected_and_read_in_order_without_deleted_posts(tmp_path, server):
    crawl = make_crawl(tmp_path / "crawl", server)
    write_shard(crawl, 3, rows_of(server, 9, "z9", [99]))  # above the commit point: not finished
    assert detect_format(crawl) == "bluesky-crawl"
    assert "bluesky-crawl" in READERS.describe()
    posts = list(READERS.create("bluesky-crawl", source=crawl))
    assert [p.post_id for p in posts] == [f"{uri(1, 'a1')}#1", f"{uri(3, 'c1')}#1", f"{uri(1, 'a2')}#1",
                                          f"{uri(4, 'd1')}#1", f"{uri(4, 'd1')}#2"]
    assert [p.source for p in posts] == ["posts-000001.jsonl:1", "posts-000001.jsonl:4", "posts-000002.jsonl:1",
                                         "posts-000002.jsonl:2", "posts-000002.jsonl:3"]
    first = posts[0]
    assert (first.image_ref, first.lang, first.created_at, first.error) == (
        server.url("/ok/1.jpg"), "en", "2025-03-01T10:00:00.000Z", "")
    assert first.text == POSITIVE_TEXTS[1] and first.fields == () and first.base_dir is None


def test_ingest_leaves_out_deleted_posts_and_records_the_crawl(tmp_path, server):
    crawl = make_crawl(tmp_path / "crawl", server)
    write_shard(crawl, 3, rows_of(server, 9, "z9", [99]))  # above the commit point: not finished, not read
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about the fields visent does not read (author, alt, ...)
        counts = ingest(crawl, tmp_path / "ds", workers=2)
    assert counts["posts"] == counts["ok"] == 5
    assert counts["deleted_by_author"] == 2  # the two images of b1
    assert counts["authors"] == 3 and counts["shards"] == counts["new_shards"] == 2
    assert "ignored_fields" not in counts
    ids = table(tmp_path / "ds").column("post_id").to_pylist()
    assert not any(i.startswith((uri(2, "b1"), uri(9, "z9"))) for i in ids)
    record = Dataset(tmp_path / "ds").stage_info("ingest")["crawl"]
    assert record["service"] == "bluesky" and record["source"] == "jetstream"
    assert record["endpoints"] == ["jetstream2.us-east.bsky.network"]
    assert (record["first_event"], record["last_event"]) == (FIRST, LAST)
    assert record["authors"] == 3 and record["posts"] == 4 and record["deleted_by_author"] == 2
    assert [s["name"] for s in record["shards"]] == ["posts-000001.jsonl", "posts-000002.jsonl"]
    assert record["shards"][0]["size"] == (crawl / "posts-000001.jsonl").stat().st_size
    assert [t["name"] for t in record["tombstones"]] == ["tombstones-000002.jsonl"]
    assert [s["name"] for s in record["read"]["shards"]] == ["posts-000001.jsonl", "posts-000002.jsonl"]
    assert str(tmp_path) not in json.dumps({k: v for k, v in record.items() if k != "read"})


def test_malformed_lines_become_error_rows(tmp_path, server):
    crawl = tmp_path / "crawl"
    write_info(crawl)
    good = rows_of(server, 1, "ok", [11])[0]
    write_shard(crawl, 1, [
        good,
        "{not json",
        "[1, 2]",
        "[" * 100_000,
        {k: v for k, v in good.items() if k != "id"},
        {**good, "id": 12345},
        {**good, "id": f"{uri(1, 'noimage')}#1", "image": None},
        {**good, "id": f"{uri(1, 'local')}#1", "image": "/etc/hostname"},
        {**good, "id": f"{uri(1, 'odd')}#1", "text": ["not", "text"], "lang": 7, "created_at": {}},
    ])
    (crawl / "posts-000001.jsonl").open("ab").write(b'{"id": "\xff\xfe", "image": "x"}\n')
    commit(crawl, 1)
    counts = ingest(crawl, tmp_path / "ds", workers=2)
    posts = {row["source"]: row for row in table(tmp_path / "ds").to_pylist()}
    assert counts["posts"] == 10 and counts["ok"] == 2
    where = [f"posts-000001.jsonl:{n}" for n in range(1, 11)]
    assert list(posts) == where
    assert posts[where[0]]["ingest_status"] == "ok"
    assert "invalid JSON" in posts[where[1]]["ingest_reason"] and where[1] in posts[where[1]]["ingest_reason"]
    assert posts[where[1]]["post_id"] == where[1]
    assert "not an object" in posts[where[2]]["ingest_reason"]
    assert "nested too deeply" in posts[where[3]]["ingest_reason"]
    assert posts[where[4]]["ingest_reason"].startswith(f"no id at {where[4]}")
    assert "id is a int, not a string" in posts[where[5]]["ingest_reason"] and posts[where[5]]["post_id"] == where[5]
    assert posts[where[6]]["ingest_reason"] == f"no image at {where[6]}"
    assert "not an http(s) URL" in posts[where[7]]["ingest_reason"] and posts[where[7]]["image_sha256"] is None
    odd = posts[where[8]]
    assert odd["ingest_status"] == "ok" and (odd["text"], odd["lang"], odd["created_at"]) == ("", None, None)
    assert "not UTF-8" in posts[where[9]]["ingest_reason"]


# --------------------------------------------------------------------------- a growing crawl
def test_a_grown_crawl_is_read_incrementally_and_equals_an_ingest_from_scratch(tmp_path, server, monkeypatch):
    crawl = make_crawl(tmp_path / "crawl", server)
    out = tmp_path / "ds"
    ingest(crawl, out, workers=2)
    first_images = images_on_disk(out)

    def fail(*args):
        raise AssertionError("nothing changed: no post must be fetched")

    before = (out / "posts.parquet").stat().st_mtime_ns
    with monkeypatch.context() as patch:
        patch.setattr(stage_module, "_row", fail)
        again = ingest(crawl, out, workers=2)
    assert again["new_shards"] == 0 and again["new_tombstone_files"] == 0 and again["posts"] == 5
    assert (out / "posts.parquet").stat().st_mtime_ns == before

    grow(crawl, server)
    server.reset_counts()
    counts = ingest(crawl, out, workers=2)
    assert hits(server) == {9, 10}  # only the new shard's images; e1 was deleted before it was ever fetched
    assert counts["new_shards"] == 1 and counts["shards"] == 3 and counts["new_tombstone_files"] == 2
    assert counts["newly_deleted"] == 1  # a2, ingested before
    assert counts["deleted_by_author"] == 4  # b1 (2 images), a2, e1
    assert "full_reingest" not in counts
    record = Dataset(out).stage_info("ingest")["crawl"]
    assert record["read"] == {
        "shards": [{"name": "posts-000003.jsonl", "size": (crawl / "posts-000003.jsonl").stat().st_size}],
        "tombstones": [{"name": n, "size": (crawl / n).stat().st_size}
                       for n in ("tombstones-000003.jsonl", "tombstones-000004.jsonl")]}
    assert [s["name"] for s in record["shards"]] == [f"posts-00000{n}.jsonl" for n in (1, 2, 3)]

    scratch = tmp_path / "scratch"
    reference = ingest(crawl, scratch, workers=2)
    assert table(out).equals(table(scratch))
    assert table(out).column("post_id").to_pylist() == [
        f"{uri(1, 'a1')}#1", f"{uri(3, 'c1')}#1", f"{uri(4, 'd1')}#1", f"{uri(4, 'd1')}#2", f"{uri(3, 'c2')}#1",
        f"{uri(3, 'c2')}#2"]
    assert images_on_disk(out) == images_on_disk(scratch)  # a2's image left the dataset
    assert len(first_images - images_on_disk(out)) == 1
    for key in ("posts", "ok", "error", "images", "deleted_by_author", "authors", "shards"):
        assert counts[key] == reference[key], key

    # a new tombstone only: no shard to read, one old post to leave out
    write_tombstones(crawl, 5, [uri(4, "d1")])
    commit(crawl, 5)
    server.reset_counts()
    counts = ingest(crawl, out, workers=2)
    assert not hits(server) and counts["new_shards"] == 0 and counts["newly_deleted"] == 2
    ingest(crawl, tmp_path / "scratch2", workers=2)
    assert table(out).equals(table(tmp_path / "scratch2"))


def test_an_interrupted_incremental_ingest_resumes_to_the_same_tables(tmp_path, server, monkeypatch):
    crawl = make_crawl(tmp_path / "crawl", server)
    out = tmp_path / "ds"
    ingest(crawl, out, workers=1, batch_size=1)
    write_shard(crawl, 3, rows_of(server, 6, "f1", [21]) + rows_of(server, 6, "f2", [22])
                + rows_of(server, 7, "g1", [23, 24]))
    commit(crawl, 3)

    class Interrupted(Exception):
        pass

    real_row = stage_module._row
    calls: list[str] = []

    def crash_on_third(post, fetcher, dataset):
        calls.append(post.post_id)
        if len(calls) == 3:
            raise Interrupted
        return real_row(post, fetcher, dataset)

    with monkeypatch.context() as patch:
        patch.setattr(stage_module, "_row", crash_on_third)
        with pytest.raises(Interrupted):
            ingest(crawl, out, workers=1, batch_size=1)
    work = out / "work" / "ingest"
    assert (work / "crawl-plan.json").is_file() and len(list(work.glob("part-*.parquet"))) == 3  # base + 2 posts
    assert not Dataset(out).stage_done("ingest")

    # deletions arrive meanwhile: one of the rows kept from before, one of the rows written before the crash
    write_tombstones(crawl, 4, [uri(1, "a1"), uri(6, "f1")])
    commit(crawl, 4)
    calls.clear()
    with monkeypatch.context() as patch:
        patch.setattr(stage_module, "_row", lambda post, fetcher, dataset: calls.append(post.post_id)
                      or real_row(post, fetcher, dataset))
        counts = ingest(crawl, out, workers=1, batch_size=1)
    assert calls == [f"{uri(7, 'g1')}#1", f"{uri(7, 'g1')}#2"]
    reference = ingest(crawl, tmp_path / "scratch", workers=1)
    assert table(out).equals(table(tmp_path / "scratch"))
    assert counts["deleted_by_author"] == reference["deleted_by_author"] == 4  # b1 (2 images), a1, f1
    assert images_on_disk(out) == images_on_disk(tmp_path / "scratch")
    assert not work.exists()


def test_a_changed_or_vanished_shard_means_a_full_reingest(tmp_path, server):
    crawl = make_crawl(tmp_path / "crawl", server)
    out = tmp_path / "ds"
    ingest(crawl, out, workers=2)

    # the same size, other bytes, a new modification time: the SHA-256 tells
    shard = crawl / "posts-000001.jsonl"
    text = shard.read_text()
    shard.write_text(text.replace(POSITIVE_TEXTS[1], POSITIVE_TEXTS[1][::-1], 1))
    assert len(shard.read_text()) == len(text)
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10_000_000_000))
    server.reset_counts()
    counts = ingest(crawl, out, workers=2)
    assert counts["full_reingest"].startswith("posts-000001.jsonl changed")
    assert counts["new_shards"] == 2 and hits(server) == {1, 4, 5, 6, 7}
    ingest(crawl, tmp_path / "scratch", workers=2)
    assert table(out).equals(table(tmp_path / "scratch"))
    assert table(out).column("text").to_pylist()[0] == POSITIVE_TEXTS[1][::-1]

    # a crawl replaced by another: shard 1 gone, shard 2 other
    shutil.rmtree(crawl)
    write_info(crawl)
    write_shard(crawl, 2, rows_of(server, 8, "h1", [31]))
    commit(crawl, 2)
    counts = ingest(crawl, out, workers=2)
    assert counts["full_reingest"].startswith("posts-000001.jsonl is gone")
    assert table(out).column("post_id").to_pylist() == [f"{uri(8, 'h1')}#1"]
    assert counts["posts"] == 1 and counts["deleted_by_author"] == 0


def test_other_options_and_limits_read_the_whole_crawl(tmp_path, server):
    crawl = make_crawl(tmp_path / "crawl", server)
    out = tmp_path / "ds"
    ingest(crawl, out, workers=2, limit=3)
    assert table(out).num_rows == 3
    grow(crawl, server)
    counts = ingest(crawl, out, workers=2, limit=3)
    assert "limit" in counts["full_reingest"] and counts["new_shards"] == 3
    ingest(crawl, tmp_path / "scratch", workers=2, limit=3)
    assert table(out).equals(table(tmp_path / "scratch"))
    counts = ingest(crawl, out, workers=2, timeout=5.0)  # other parameters: a full run, as for any source
    assert counts["new_shards"] == 3 and counts["posts"] == 6 and "full_reingest" not in counts


# --------------------------------------------------------------------------- export
def test_export_leaves_out_posts_deleted_after_ingest_and_has_a_crawl_section(tmp_path, server):
    crawl = tmp_path / "crawl"
    write_info(crawl)
    rows = []
    for i in range(8):
        texts = POSITIVE_TEXTS if i % 2 == 0 else NEGATIVE_TEXTS
        rows += rows_of(server, i % 3, f"p{i}", [40 + i], text=texts[i % len(texts)])
    write_shard(crawl, 1, rows)
    write_tombstones(crawl, 1, [uri(0, "p0")])
    commit(crawl, 1)
    out = tmp_path / "ds"
    ingest(crawl, out, workers=2)
    teach(out, "vader")
    clean(out, thresholds={"negative": 0.3, "neutral": 0.3, "positive": 0.3}, min_side=8, near_dup_distance=0)

    write_tombstones(crawl, 2, [uri(1, "p1"), uri(2, "p2")])  # deleted after the ingest
    commit(crawl, 2)
    counts = export_dataset(out, tmp_path / "export" / "bsky.parquet")
    released = pq.read_table(tmp_path / "export" / "bsky.parquet")
    ids = released.column("post_id").to_pylist()
    assert counts["rows"] == len(ids) == 5 and counts["deleted_by_author"] == 2
    assert not any(i.startswith((uri(0, "p0"), uri(1, "p1"), uri(2, "p2"))) for i in ids)
    assert counts["authors"] == 3 and counts["posts"] == 5
    assert released.column("image_url").to_pylist()[0] == server.url("/ok/43.jpg")
    card = card_path(tmp_path / "export" / "bsky.parquet").read_text()
    section = card.split("## Crawl", 1)[1].split("\n## ", 1)[0]
    assert "Bluesky through Jetstream (`jetstream2.us-east.bsky.network`)" in section
    assert f"events from {FIRST} to {LAST}" in section
    assert "5 rows: the images of 5 posts by 3 authors" in section
    assert "3 rows in all, 1 when the crawl was ingested and 2 deleted since" in section
    assert "rehydrate" in section and "`image_url`" in card.split("## Columns", 1)[1]
    assert str(tmp_path) not in card

    shutil.rmtree(crawl)  # the crawl folder is gone: deletions since the ingest cannot be checked
    counts = export_dataset(out, tmp_path / "export" / "gone.parquet")
    assert counts["rows"] == 7 and counts["deleted_by_author"].startswith("not checked")
    card = card_path(tmp_path / "export" / "gone.parquet").read_text()
    assert "deletions after that date could not be checked" in card and str(tmp_path) not in card


def test_a_crawl_inside_a_folder_is_read_by_its_own_reader(tmp_path, server):
    """A folder that holds a crawl beside other posts: the crawl's shards are read with its tombstones honoured,
    not as plain JSONL files."""
    make_crawl(tmp_path / "mine" / "bluesky", server)
    (tmp_path / "mine" / "more.jsonl").write_text(json.dumps({"id": "x1", "text": "hello there",
                                                              "image": server.url("/ok/99.jpg")}) + "\n")
    assert detect_format(tmp_path / "mine") == "folder"
    ids = [post.post_id for post in READERS.create("folder", source=tmp_path / "mine")]
    whole = [post.post_id for post in READERS.create("bluesky-crawl", source=tmp_path / "mine" / "bluesky")]
    assert ids == ["x1", *whole] and len(whole) == 5
    assert not any(i.startswith(uri(2, "b1")) for i in ids), "a deleted post was read"
