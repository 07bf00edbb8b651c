"""``visent crawl bluesky`` against local servers that replay real captured Jetstream traffic and synthetic streams
with faults: every image post that passes the filters comes out exactly once, deletions are honoured, a resumed
crawl equals an undisturbed one, and the shards ingest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from blueskyserver import ImageServer, ReplayServer, synthetic_events
from visent.crawl import CrawlError, crawl_bluesky, parse_duration
from visent.crawl.events import (Event, FrameError, PostFilter, image_rows, langs_option, parse_jetstream,
                                 parse_subscribe_events)
from visent.crawl.shards import CrawlWriter, committed_shards, post_uri, read_rows, tombstoned

REFERENCES = Path(__file__).resolve().parents[1].parent / "shared" / "references" / "bluesky"
CAPTURE = REFERENCES / "jetstream-v1-events.jsonl"
FAST = dict(idle_timeout=1.0, backoff=0.01, max_backoff=0.05)  # a local replay: reconnect at once


def _rows(root: Path) -> list[dict]:
    return [row for shard in committed_shards(root) for _, row in read_rows(shard)]


def _live(root: Path) -> list[str]:
    """The row ids of a crawl whose posts were not deleted, in crawl order."""
    gone = tombstoned(root)
    return [row["id"] for row in _rows(root) if post_uri(row["id"]) not in gone]


def _expected(events: list[dict], post_filter: PostFilter, *, protocol: str = "v1") -> list[str]:
    """What a crawl of ``events`` must keep, computed from the events alone: the rows of every image post the
    filter keeps, in stream order, less the posts deleted later in the stream."""
    parse = parse_jetstream if protocol == "v1" else parse_subscribe_events
    kept: dict[str, list[str]] = {}
    for raw in events:
        event = parse(json.dumps(raw))
        if event.kind != "commit" or event.collection != "app.bsky.feed.post":
            continue
        if event.operation == "delete":
            kept.pop(event.uri, None)
        elif event.operation == "create" and event.uri not in kept and post_filter.reason(event) is None:
            rows = image_rows(event)
            if rows:
                post_filter.count(event)
                kept[event.uri] = [row["id"] for row in rows]
    return [row_id for ids in kept.values() for row_id in ids]


NO_FILTER = dict(min_words=0, per_author_hour=0, keep_labelled=True)


# --------------------------------------------------------------------------- the real captured window
@pytest.mark.slow
@pytest.mark.shared
def test_real_capture_keeps_its_two_image_posts(tmp_path):
    if not CAPTURE.exists():
        pytest.skip("../shared/references/bluesky is absent")
    events = [json.loads(line) for line in CAPTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    with ReplayServer(events) as server:
        counts = crawl_bluesky(tmp_path / "crawl", endpoints=[server.url], duration=2, cdn="http://cdn.test/img",
                               **NO_FILTER, **{**FAST, "idle_timeout": 10.0})  # one connection: nothing read twice
    assert server.requests[0]["wantedCollections"] == "app.bsky.feed.post"
    rows = _rows(tmp_path / "crawl")
    assert [row["id"] for row in rows] == [
        "at://did:plc:6aw7u7xjbaiznddugigmdhvc/app.bsky.feed.post/3mptbxs3hq22j#1",
        "at://did:plc:ynfp6wddjqpl44gordpsqkuw/app.bsky.feed.post/3mptbyo7tas2u#1"]
    first = rows[0]
    assert first["image"] == ("http://cdn.test/img/feed_thumbnail/plain/did:plc:6aw7u7xjbaiznddugigmdhvc/"
                              "bafkreicwsq23gkygrgpijv7ocssxdyjokfv3quss3f2dg4csds3jpeqkwe@jpeg")
    assert first["lang"] == "ru" and first["author"] == "did:plc:6aw7u7xjbaiznddugigmdhvc"
    assert first["created_at"] == "2026-07-04T14:37:36.557Z" and first["text"].startswith("Вечерок")
    assert rows[1]["langs"] == ["es", "en"] and rows[1]["lang"] == "es"
    # 17 post creates, 15 without images; the one delete names a post this crawl never saw
    assert counts["posts_seen"] == 17 and counts["dropped"] == {"no image": 15}
    assert counts["deleted"] == {"unknown": 1} and counts["posts"] == 2 and counts["stopped_by"] == "duration"
    info = json.loads((tmp_path / "crawl" / "crawl.json").read_text())
    assert info["first_event"] == "2026-07-04T14:38:08.090631Z" and info["service"] == "bluesky"


# --------------------------------------------------------------------------- faults
@pytest.mark.slow
def test_every_image_post_once_through_faults(tmp_path):
    events = synthetic_events(3000, seed=1)
    post_filter = dict(min_words=2, per_author_hour=5)
    expected = _expected(events, PostFilter(**post_filter))
    info = [{"kind": "info", "info": {"name": "OutdatedCursor", "message": "resumed at the retention floor"}}]
    with ReplayServer(events, drop_every=257, garbage_every=97, duplicate_on_reconnect=40, info_frames=info,
                      error_after=200) as server:
        counts = crawl_bluesky(tmp_path / "crawl", endpoints=[server.url], duration=6, shard_rows=64,
                               **post_filter, **FAST)
    assert server.connections > 5 and counts["reconnects"] >= 5
    ids = [row["id"] for row in _rows(tmp_path / "crawl")]
    assert len(ids) == len(set(ids)), "a row was written twice"
    assert _live(tmp_path / "crawl") == expected
    assert counts["malformed"] > 0 and counts["replayed"] > 0
    assert counts["notices"]["OutdatedCursor"] >= 1 and counts["notices"]["ConsumerTooSlow"] == 1
    assert counts["posts"] == len({post_uri(i) for i in ids}) and counts["images"] == len(ids)
    # the reconnections asked for the stream from the cursor, a little before the last event
    cursors = [int(r["cursor"]) for r in server.requests if "cursor" in r]
    assert cursors and cursors == sorted(cursors)
    info_file = json.loads((tmp_path / "crawl" / "crawl.json").read_text())
    assert info_file["gaps"], "an OutdatedCursor notice is a possible gap and must be recorded"


@pytest.mark.slow
def test_deleted_posts_become_tombstones(tmp_path):
    events = synthetic_events(1500, seed=2, delete_share=0.05)
    with ReplayServer(events) as server:
        # small shards: most deletes arrive after the post's shard was written
        counts = crawl_bluesky(tmp_path / "crawl", endpoints=[server.url], duration=4, shard_rows=8, **NO_FILTER,
                               **FAST)
    root = tmp_path / "crawl"
    gone = tombstoned(root)
    written = {post_uri(row["id"]) for row in _rows(root)}
    assert gone and gone <= written, "a tombstone names only a post the crawl wrote"
    assert counts["tombstones"] == len(gone)
    assert _live(root) == _expected(events, PostFilter(**{k: v for k, v in NO_FILTER.items()}))


@pytest.mark.slow
def test_subscribe_events_protocol(tmp_path):
    events = synthetic_events(800, seed=3, protocol="xrpc")
    with ReplayServer(events, protocol="xrpc", drop_every=150) as server:
        counts = crawl_bluesky(tmp_path / "crawl", endpoints=[server.url], duration=4, shard_rows=16, **NO_FILTER,
                               **FAST)
    assert server.requests[0]["collections"] == "app.bsky.feed.post"
    assert counts["reconnects"] >= 3
    ids = [row["id"] for row in _rows(tmp_path / "crawl")]
    assert len(ids) == len(set(ids))
    assert _live(tmp_path / "crawl") == _expected(events, PostFilter(**NO_FILTER), protocol="xrpc")
    # seq cursors resume inclusively at the last event handled
    assert all(int(r["cursor"]) >= 1 for r in server.requests[1:])


@pytest.mark.slow
def test_refused_handshakes_are_retried(tmp_path):
    events = synthetic_events(300, seed=4)
    with ReplayServer(events, refuse_first=3) as server:
        counts = crawl_bluesky(tmp_path / "crawl", endpoints=[server.url], duration=3, **NO_FILTER, **FAST)
    assert counts["failures"].get("HTTP 503") == 3
    assert _live(tmp_path / "crawl") == _expected(events, PostFilter(**NO_FILTER))


# --------------------------------------------------------------------------- resuming
@pytest.mark.slow
def test_resumed_crawl_equals_an_undisturbed_one(tmp_path):
    events = synthetic_events(2000, seed=5)
    options = dict(min_words=1, per_author_hour=3, shard_rows=32, **FAST)
    with ReplayServer(events) as server:
        crawl_bluesky(tmp_path / "whole", endpoints=[server.url], posts=120, **options)
        first = crawl_bluesky(tmp_path / "parts", endpoints=[server.url], posts=50, **options)
        second = crawl_bluesky(tmp_path / "parts", endpoints=[server.url], posts=120, **options)
        again = crawl_bluesky(tmp_path / "parts", endpoints=[server.url], posts=120, **options)
    assert first["posts"] == 50 and second["posts"] == 120
    assert again["events"] == 0 and again["stopped_by"] == "posts", "a finished crawl is not read again"
    assert _rows(tmp_path / "parts") == _rows(tmp_path / "whole")
    assert tombstoned(tmp_path / "parts") == tombstoned(tmp_path / "whole")
    resumed = [r for r in server.requests if "cursor" in r]
    assert resumed, "the second run must ask for the stream from its cursor"


@pytest.mark.slow
def test_a_second_crawler_on_the_same_folder_is_refused(tmp_path):
    root = tmp_path / "crawl"
    with ReplayServer(synthetic_events(50, seed=6)) as server:
        crawl_bluesky(root, endpoints=[server.url], duration=1, **NO_FILTER, **FAST)
        info = json.loads((root / "crawl.json").read_text())
        with CrawlWriter(root, info):
            with pytest.raises(CrawlError, match="is being crawled by process"):
                crawl_bluesky(root, endpoints=[server.url], duration=1, **NO_FILTER, **FAST)


@pytest.mark.slow
def test_other_options_on_a_crawl_are_refused(tmp_path):
    root = tmp_path / "crawl"
    with ReplayServer(synthetic_events(50, seed=7)) as server:
        crawl_bluesky(root, endpoints=[server.url], duration=1, **NO_FILTER, **FAST)
        with pytest.raises(ValueError, match="crawled with other options"):
            crawl_bluesky(root, endpoints=[server.url], duration=1, langs=langs_option("fr"),
                          **{**NO_FILTER, "min_words": 0}, **FAST)
        with pytest.raises(ValueError, match="not a visent crawl"):
            (tmp_path / "other").mkdir()
            (tmp_path / "other" / "notes.txt").write_text("mine")
            crawl_bluesky(tmp_path / "other", endpoints=[server.url], duration=1, **FAST)


@pytest.mark.slow
def test_a_shard_above_the_cursor_is_dropped_and_written_again(tmp_path):
    """A crawler killed between writing a shard and committing its cursor leaves a shard the cursor does not name:
    the next run removes it and the replay writes the same rows once."""
    events = synthetic_events(600, seed=8)
    root = tmp_path / "crawl"
    with ReplayServer(events) as server:
        crawl_bluesky(root, endpoints=[server.url], posts=20, shard_rows=10, **NO_FILTER, **FAST)
        shards = committed_shards(root)
        orphan = root / f"posts-{len(shards) + 1:06d}.jsonl"
        orphan.write_text(shards[-1].read_text())
        crawl_bluesky(root, endpoints=[server.url], posts=60, shard_rows=10, **NO_FILTER, **FAST)
        crawl_bluesky(tmp_path / "whole", endpoints=[server.url], posts=60, shard_rows=10, **NO_FILTER, **FAST)
    ids = [row["id"] for row in _rows(root)]
    assert len(ids) == len(set(ids))
    assert _rows(root) == _rows(tmp_path / "whole")


# --------------------------------------------------------------------------- filters and parsing
def _post(did: str = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", *, text: str = "a fine day out", langs=("en",),
          images: int = 1, reply: bool = False, labels=(), time_us: int = 3_600_000_000 * 500) -> Event:
    record = {"$type": "app.bsky.feed.post", "text": text, "langs": list(langs), "createdAt": "2026-07-04T14:38:06Z"}
    if images:
        cid = "bafkreicwsq23gkygrgpijv7ocssxdyjokfv3quss3f2dg4csds3jpeqkwe"
        record["embed"] = {"$type": "app.bsky.embed.images", "images": [
            {"alt": f"alt {k}", "image": {"$type": "blob", "ref": {"$link": cid}, "mimeType": "image/jpeg",
                                          "size": 10}} for k in range(images)]}
    if reply:
        record["reply"] = {"root": {"uri": "at://x", "cid": "y"}, "parent": {"uri": "at://x", "cid": "y"}}
    if labels:
        record["labels"] = {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": v} for v in labels]}
    return Event("commit", did=did, position=time_us, time_us=time_us, operation="create",
                 collection="app.bsky.feed.post", rkey="3mptbxs3hq22j", record=record, cid="bafyreib5")


def test_filters_say_why_a_post_is_left_out():
    keep = PostFilter(langs=langs_option("en,fr"), replies=False, min_words=3, per_author_hour=2)
    assert keep.reason(_post()) is None
    assert keep.reason(_post(langs=("en-US",))) is None
    assert keep.reason(_post(images=0)) == "no image"
    assert keep.reason(_post(langs=("ja",))) == "language"
    assert keep.reason(_post(langs=())) == "language"
    assert keep.reason(_post(reply=True)) == "reply"
    assert keep.reason(_post(text="two words")) == "short text"
    assert keep.reason(_post(labels=("porn",))) == "adult self-label"
    assert PostFilter(keep_labelled=True).reason(_post(labels=("porn",))) is None
    assert keep.reason(_post(labels=("something-else",))) is None
    for _ in range(2):
        keep.count(_post())
    assert keep.reason(_post()) == "author's hourly cap"
    assert keep.reason(_post(did="did:plc:bbbbbbbbbbbbbbbbbbbbbbbb")) is None
    assert keep.reason(_post(time_us=3_600_000_000 * 501)) is None, "the cap is per hour"


def test_image_rows_of_quotes_with_media_and_four_images():
    event = _post(images=4)
    rows = image_rows(event, cdn="http://cdn/img/", size="fullsize")
    assert [r["id"][-2:] for r in rows] == ["#1", "#2", "#3", "#4"]
    assert rows[0]["image"].startswith("http://cdn/img/feed_fullsize/plain/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/")
    assert rows[2]["alt"] == "alt 2"
    quote = dict(event.record)
    quote["embed"] = {"$type": "app.bsky.embed.recordWithMedia", "record": {"record": {"uri": "at://q", "cid": "c"}},
                      "media": event.record["embed"]}
    assert len(image_rows(Event(**{**_fields(event), "record": quote}))) == 4
    video = dict(event.record)
    video["embed"] = {"$type": "app.bsky.embed.video", "video": {"ref": {"$link": "bafkreiabc"}}}
    assert image_rows(Event(**{**_fields(event), "record": video})) == []
    broken = dict(event.record)
    broken["embed"] = {"$type": "app.bsky.embed.images", "images": [{"image": {"ref": {"$link": "../../etc"}}}]}
    assert image_rows(Event(**{**_fields(event), "record": broken})) == []


def _fields(event: Event) -> dict:
    return {name: getattr(event, name) for name in Event.__slots__}


@pytest.mark.parametrize("frame", [b"\x00\xff garbage", "[1, 2]", "{}", '{"kind": "commit", "time_us": 5}',
                                   '{"kind": "commit", "time_us": "x", "did": "did:plc:a"}',
                                   '{"kind": "commit", "time_us": 5, "did": "not a did", "commit": {}}',
                                   '{"kind": "banana", "time_us": 5}', "{" * 100_000])
def test_malformed_frames_are_frame_errors(frame):
    with pytest.raises(FrameError):
        parse_jetstream(frame)


def test_error_and_info_frames():
    error = parse_jetstream('{"error": "ConsumerTooSlow", "message": "too slow"}')
    assert error.kind == "error" and error.name == "ConsumerTooSlow"
    info = parse_subscribe_events('{"$type": "network.bsky.jetstream.subscribeEvents#info", "name": "OutdatedCursor"}')
    assert info.kind == "info" and info.name == "OutdatedCursor"


@pytest.mark.parametrize("text, seconds", [("45s", 45), ("30m", 1800), ("72h", 259200), ("2d", 172800),
                                           ("1h30m", 5400), ("90", 90)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_durations_are_usage_errors():
    for text in ("soon", "-5m", "0s"):
        with pytest.raises(ValueError):
            parse_duration(text)


# --------------------------------------------------------------------------- the command, and ingest
def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(VISENT_PROGRESS="0", NO_PROXY="127.0.0.1,localhost")
    return env


@pytest.mark.slow
def test_command_crawls_and_ingest_reads_the_crawl(tmp_path):
    events = synthetic_events(600, seed=9, image_share=0.6)
    with ReplayServer(events) as server, ImageServer() as cdn:
        done = subprocess.run([sys.executable, "-m", "visent", "crawl", "bluesky", "--out", str(tmp_path / "crawl"),
                               "--endpoint", server.url, "--cdn", cdn.url, "--posts", "60", "--min-words", "0",
                               "--shard-posts", "16"], env=_env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "crawl → " in done.stdout and "posts" in done.stdout
        ingested = subprocess.run([sys.executable, "-m", "visent", "ingest", str(tmp_path / "crawl"), "--out",
                                   str(tmp_path / "ds")], env=_env(), capture_output=True, text=True, timeout=120)
        assert ingested.returncode == 0, ingested.stderr
        posts = pq.read_table(tmp_path / "ds" / "posts.parquet").to_pylist()
        assert [p["post_id"] for p in posts] == _live(tmp_path / "crawl")
        assert all(p["ingest_status"] == "ok" for p in posts), [p["ingest_reason"] for p in posts][:3]
        assert len({p["image_sha256"] for p in posts}) == len(posts)
        # and the crawl builds a model, as any crawl does
        from visent.build import BuildOptions, build

        loose = {"negative": 0.34, "neutral": 0.34, "positive": 0.34}
        summary = build(tmp_path / "crawl", tmp_path / "model", options=BuildOptions(teacher="vader",
                                                                                     thresholds=loose))
    assert summary["ingest"]["posts"] == len(posts) and summary["train"]["n_train_posts"] > 0
    assert (tmp_path / "model" / "config.json").exists()


def test_command_errors_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    done = subprocess.run([sys.executable, "-m", "visent", "crawl", "bluesky", "--out", str(tmp_path / "file"),
                           "--duration", "1s"], env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "is a file; crawl into a folder" in done.stderr
    done = subprocess.run([sys.executable, "-m", "visent", "crawl", "bluesky", "--out", str(tmp_path / "c"),
                           "--duration", "soon"], env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "write it like 72h" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.shared
def test_firehose_crawl_equals_the_jetstream_crawl_of_the_same_window(tmp_path):
    """The captured window in both forms: crawling the relay's frames and Jetstream's events gives the same rows
    (but for ``time_us``: Jetstream stamps events with its own clock)."""
    frames = REFERENCES / "relay-frames.bin.zst"
    if not (CAPTURE.exists() and frames.exists()):
        pytest.skip("../shared/references/bluesky is absent")
    from blueskyserver import read_relay_frames

    events = [json.loads(line) for line in CAPTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    options = dict(duration=2, **NO_FILTER, **{**FAST, "idle_timeout": 10.0})
    with ReplayServer(events) as jet, ReplayServer(read_relay_frames(str(frames)), protocol="firehose") as relay:
        by_jetstream = crawl_bluesky(tmp_path / "jetstream", endpoints=[jet.url], **options)
        by_firehose = crawl_bluesky(tmp_path / "firehose", source="firehose", endpoints=[relay.url], **options)
    def strip(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "time_us"} for row in rows]

    assert strip(_rows(tmp_path / "firehose")) == strip(_rows(tmp_path / "jetstream"))
    assert len(_rows(tmp_path / "firehose")) == 2
    for key in ("posts_seen", "posts", "images", "dropped", "deleted"):
        assert by_firehose[key] == by_jetstream[key], key
    assert by_firehose["cursor"] == 31527015471, "the firehose's cursor is the relay's seq"


def test_hash_index_merges_and_loads_like_a_set():
    import numpy as np

    from visent.crawl.shards import HashIndex

    rng = np.random.default_rng(0)
    index, truth = HashIndex(), set()
    for _ in range(20):
        for key in rng.integers(0, 2**63, size=50, dtype=np.uint64).tolist() + list(truth)[:5]:
            index.add(int(key))
            truth.add(int(key))
        assert all(k in index for k in truth)
        index.take_pending()
        assert len(index) == len(truth) and all(k in index for k in truth)
    assert not any(int(k) in index for k in rng.integers(0, 2**63, size=200, dtype=np.uint64))
    loaded = HashIndex()
    keys = np.array(sorted(truth), dtype=np.uint64)
    loaded.load([keys[::2], keys[1::2], keys[:10]])
    assert len(loaded) == len(truth) and all(k in loaded for k in truth)


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stopped_crawl_commits_what_it_holds_and_says_so(tmp_path, sig):
    import signal
    import time

    events = synthetic_events(20_000, seed=10, image_share=0.5)
    with ReplayServer(events, rate=2000) as server:
        proc = subprocess.Popen([sys.executable, "-m", "visent", "crawl", "bluesky", "--out", str(tmp_path / "c"),
                                 "--endpoint", server.url, "--min-words", "0", "--shard-posts", "100000"],
                                env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cursor = tmp_path / "c" / ".state" / "cursor.json"
        end = time.monotonic() + 60
        while time.monotonic() < end and proc.poll() is None and server.events_sent < 1500:
            time.sleep(0.02)
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "interrupted" in out and "Traceback" not in err
    # the one shard the crawl had in memory (its size was never reached) was committed on the way out
    state = json.loads(cursor.read_text())
    rows = _rows(tmp_path / "c")
    assert state["shard"] == 1 and len(rows) == state["totals"]["images"] > 100


def test_a_signal_while_a_post_is_being_taken_in_waits_until_it_is_counted(tmp_path, monkeypatch):
    """Ctrl-C arriving between a post's rows being written and the post being counted: the crawl stops after the
    frame, so the committed rows are exactly the ones the cursor's totals count."""
    import signal

    writes = {"n": 0}
    add_post = CrawlWriter.add_post

    def add_then_interrupt(self, uri, rows):
        add_post(self, uri, rows)
        writes["n"] += 1
        if writes["n"] == 40:  # the handler runs at once, before the crawl counts this post
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(CrawlWriter, "add_post", add_then_interrupt)
    events = synthetic_events(3000, seed=11, image_share=0.5)
    with ReplayServer(events, rate=5000) as server:
        counts = crawl_bluesky(tmp_path / "c", endpoints=[server.url], duration=30, shard_rows=100_000,
                               **NO_FILTER, **FAST)
    assert counts["stopped_by"] == "interrupted"
    state = json.loads((tmp_path / "c" / ".state" / "cursor.json").read_text())
    rows = _rows(tmp_path / "c")
    assert len({row["id"].split("#")[0] for row in rows}) == state["totals"]["posts"] >= 40
    assert len(rows) == state["totals"]["images"]
