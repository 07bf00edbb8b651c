"""The Bluesky replay server and image CDN of tests/blueskyserver.py, checked against the wire (and, where
/work/shared is present, against real captured Jetstream events and relay frames)."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from blueskyserver import ImageServer, ReplayServer, SyntheticStream, read_relay_frames, synthetic_events
from visent.crawl.events import FrameError, image_rows, parse_jetstream, parse_subscribe_events

REFERENCES = Path(__file__).resolve().parents[2] / "shared" / "references" / "bluesky"
V1_EVENTS = REFERENCES / "jetstream-v1-events.jsonl"
RELAY_FRAMES = REFERENCES / "relay-frames.bin.zst"
needs_references = pytest.mark.skipif(not V1_EVENTS.is_file() or not RELAY_FRAMES.is_file(),
                                      reason=f"captured Bluesky traffic not found at {REFERENCES}")
POST = "app.bsky.feed.post"


def drain(url: str, limit: int = 100_000, timeout: float = 0.5) -> tuple[list[str | bytes], BaseException | None]:
    """The frames a client receives until ``limit``, a close, or ``timeout`` seconds without a frame."""
    frames: list[str | bytes] = []
    try:
        with connect(url, open_timeout=5, close_timeout=1, max_size=1 << 22) as ws:
            while len(frames) < limit:
                frames.append(ws.recv(timeout=timeout))
    except (ConnectionClosed, TimeoutError, InvalidHandshake) as exc:
        return frames, exc
    return frames, None


@needs_references
def test_v1_cursor_and_filter_on_real_events():
    lines = [line for line in V1_EVENTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]
    cursor = events[40]["time_us"]
    with ReplayServer(lines, close_at_end=True) as server:
        frames, _ = drain(f"{server.url}?wantedCollections={POST}&cursor={cursor}")
        everything, _ = drain(server.url)
    first = next(i for i, e in enumerate(events) if e["time_us"] >= cursor)  # time_us is not sorted in the capture
    expected = [line for line, e in zip(lines[first:], events[first:])
                if e["kind"] != "commit" or e["commit"]["collection"] == POST]
    assert frames == expected
    assert {parse_jetstream(f).kind for f in frames} <= {"commit", "identity", "account"}
    assert everything == lines
    assert server.requests == [{"wantedCollections": POST, "cursor": str(cursor)}, {}]
    assert server.connections == 2 and server.sent == len(expected) + len(lines)


@needs_references
def test_firehose_cursor_sends_frames_after_it():
    import libipld

    frames = read_relay_frames(str(RELAY_FRAMES))
    seqs = [libipld.decode_dag_cbor_multi(f)[1]["seq"] for f in frames]
    with ReplayServer(frames, protocol="firehose", close_at_end=True) as server:
        assert server.url.endswith("/xrpc/com.atproto.sync.subscribeRepos")
        got, _ = drain(f"{server.url}?cursor={seqs[10]}")
    assert got == frames[11:]
    assert libipld.decode_dag_cbor_multi(got[0])[1]["seq"] == seqs[10] + 1


def test_xrpc_cursor_is_inclusive_and_filters():
    events = synthetic_events(60, protocol="xrpc")
    assert [e["seq"] for e in events] == list(range(1, 61))
    with ReplayServer(events, protocol="xrpc", close_at_end=True) as server:
        assert server.url.endswith("/xrpc/network.bsky.jetstream.subscribeEvents")
        frames, _ = drain(f"{server.url}?collections={POST}&kinds=commit&cursor=25")
        by_time, _ = drain(f"{server.url}?cursor=1783175888030000")  # events[30]'s time: a µs timestamp cursor
        other, _ = drain(f"{server.url}?collections=app.bsky.feed.like")
        _, exc = drain(f"{server.url}?kinds=bogus")
    parsed = [parse_subscribe_events(f) for f in frames]
    assert [e.position for e in parsed] == list(range(25, 61))
    assert events[30]["time"] == "2026-07-04T14:38:08.030000Z"
    assert [parse_subscribe_events(f).position for f in by_time] == list(range(31, 61))
    assert other == []
    assert isinstance(exc, InvalidStatus) and exc.response.status_code == 400


def test_drop_every_aborts_without_close_frame():
    events = synthetic_events(30)
    with ReplayServer(events, drop_every=7) as server:
        frames, exc = drain(server.url)
        again, _ = drain(f"{server.url}?cursor={events[7]['time_us']}")
    assert len(frames) == 7 and isinstance(exc, ConnectionClosedError) and exc.rcvd is None
    assert [json.loads(f)["time_us"] for f in again] == [e["time_us"] for e in events[7:14]]
    assert server.dropped == 2 and server.connections == 2


def test_garbage_info_error_duplicates_and_refusals():
    events = synthetic_events(20)
    info = {"kind": "info", "name": "OutdatedCursor", "message": "cursor clamped"}
    with ReplayServer(events, garbage_every=4, info_frames=[info], error_after=6, duplicate_on_reconnect=3,
                      refuse_first=1, close_at_end=True) as server:
        _, refused = drain(server.url)
        first, exc = drain(server.url)
        second, _ = drain(f"{server.url}?cursor={events[10]['time_us']}")
    assert isinstance(refused, InvalidStatus) and refused.response.status_code == 503
    assert json.loads(first[0]) == info and parse_jetstream(first[0]).kind == "info"
    assert len(first) == 7 and parse_jetstream(first[-1]).name == "ConsumerTooSlow"
    with pytest.raises(FrameError):
        parse_jetstream(first[5])  # the garbage after the 4th event (the info frame was 1st)
    assert exc is not None and exc.rcvd.code == 1008
    # the second connection: the info frame, then 3 duplicates before the cursor, then from it; garbage in between
    kinds = []
    for frame in second[1:]:
        try:
            kinds.append(parse_jetstream(frame).time_us)
        except FrameError:
            kinds.append("garbage")
    times = [k for k in kinds if k != "garbage"]
    assert times == [e["time_us"] for e in events[7:]]
    assert kinds.count("garbage") == server.garbage_sent - 1
    shapes = {type(f) for f in second if f not in (second[0],)}
    assert shapes == {str, bytes}  # random bytes as binary frames, the rest text
    assert server.requests[0] == {} and server.refused == 1 and server.connections == 2


def test_rate_limits_frames():
    with ReplayServer(synthetic_events(25), rate=100, close_at_end=True) as server:
        start = time.monotonic()
        frames, _ = drain(server.url)
        elapsed = time.monotonic() - start
    assert len(frames) == 25 and elapsed >= 0.2


def test_synthetic_events_are_deterministic_and_valid():
    import libipld

    events = synthetic_events(400, seed=7)
    assert events == synthetic_events(400, seed=7) != synthetic_events(400, seed=8)
    assert events[123] == SyntheticStream(10**6, seed=7).event(123)  # event i from (seed, i) alone
    times = [e["time_us"] for e in events]
    assert all(b - a == 1_000 for a, b in itertools.pairwise(times))
    created, operations, rows, langs, labelled, replies, quotes = {}, [], 0, set(), 0, 0, 0
    for event in events:
        parsed = parse_jetstream(json.dumps(event))
        operations.append(parsed.operation)
        if parsed.operation == "create":
            created[parsed.uri] = parsed
            record = parsed.record
            rows += len(image_rows(parsed))
            langs.update(record.get("langs", []))
            labelled += "labels" in record
            replies += "reply" in record
            quotes += record.get("embed", {}).get("$type") == "app.bsky.embed.recordWithMedia"
            for row in image_rows(parsed):
                assert libipld.decode_cid(row["image_cid"])["codec"] == 0x55 and len(row["image_cid"]) == 59
            assert libipld.decode_cid(parsed.cid)["codec"] == 0x71
            assert len(parsed.rkey) == 13 and len(parsed.did) == len("did:plc:") + 24
        else:
            assert parsed.uri in created  # deletes and updates are of posts created earlier in the list
    assert 0.2 < sum(1 for e in events if image_rows(parse_jetstream(json.dumps(e)))) / len(events) < 0.4
    assert "delete" in operations and rows > 100 and labelled and replies and quotes
    assert {"en", "en-US", "fr", "de", "ja", "pt-BR"} <= langs
    sizes = sorted(len(json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode()) for e in events)
    assert 550 < sizes[len(sizes) // 2] < 1100
    authors = {}
    for e in events:
        authors[e["did"]] = authors.get(e["did"], 0) + 1
    assert max(authors.values()) >= 5  # spam-bot-like authors
    for event in synthetic_events(50, protocol="xrpc", seed=7):
        assert parse_subscribe_events(json.dumps(event)).kind == "commit"


def test_image_server_serves_distinct_jpegs():
    import imagehash
    from PIL import Image

    events = synthetic_events(200, seed=3)
    rows = [row for e in events for row in image_rows(parse_jetstream(json.dumps(e)))][:40]
    with ImageServer() as cdn:
        hashes = []
        for row in rows:
            url = f"{cdn.url}/feed_thumbnail/plain/{row['author']}/{row['image_cid']}@jpeg"
            with urllib.request.urlopen(url, timeout=5) as answer:
                assert answer.headers["Content-Type"] == "image/jpeg"
                image = Image.open(io.BytesIO(answer.read()))
            assert image.size == (64, 64)
            hashes.append(imagehash.phash(image.convert("L")))
        full = f"{cdn.url}/feed_fullsize/plain/{rows[0]['author']}/{rows[0]['image_cid']}@jpeg"
        with urllib.request.urlopen(full, timeout=5) as answer:
            assert Image.open(io.BytesIO(answer.read())).size == (256, 256)
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{cdn.url}/feed_thumbnail/plain/did:plc:x/nothing", timeout=5)
        assert missing.value.code == 404
        assert cdn.hits == len(rows) + 2
    assert min(a - b for a, b in itertools.combinations(hashes, 2)) > 8


def test_script_mode_prints_urls_and_serves_lazily():
    script = Path(__file__).with_name("blueskyserver.py")
    proc = subprocess.Popen([sys.executable, str(script), "--events", "1000000", "--seed", "5", "--images"],
                            stdout=subprocess.PIPE, text=True)
    try:
        ws_url, cdn_url = proc.stdout.readline().strip(), proc.stdout.readline().strip()
        assert ws_url.startswith("ws://127.0.0.1:") and ws_url.endswith("/subscribe")
        assert cdn_url.startswith("http://127.0.0.1:") and cdn_url.endswith("/img")
        stream = SyntheticStream(1_000_000, seed=5)
        cursor = stream.time_us(999_990)
        frames, _ = drain(f"{ws_url}?wantedCollections={POST}&cursor={cursor}", limit=10, timeout=5)
        assert [json.loads(f) for f in frames] == [stream.event(i) for i in range(999_990, 1_000_000)]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
