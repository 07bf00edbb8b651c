"""The relay firehose parser: the captured window gives the post commits Jetstream gives of the same window, records
equal as JSON data model; synthetic commits pin the record conversion (links, bytes, blobs) and which ops are left
out; every malformed frame, truncated, mutated or random, is a :class:`FrameError` and nothing else."""

from __future__ import annotations

import base64
import functools
import hashlib
import random
import struct
import sys
from collections import Counter
from pathlib import Path

import libipld
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visent.crawl.events import POST, Event, FrameError, image_rows, iso_to_us, parse_jetstream
from visent.crawl.firehose import FIREHOSE_HOSTS, firehose, parse_firehose

REFERENCES = Path(__file__).resolve().parents[1].parent / "shared" / "references" / "bluesky"
RELAY = REFERENCES / "relay-frames.bin.zst"
JETSTREAM = REFERENCES / "jetstream-v1-events.jsonl"
SETTINGS = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DID = "did:plc:ynfp6wddjqpl44gordpsqkuw"
TIME = "2026-07-04T14:38:07.517Z"
KINDS = {"commit", "identity", "account", "sync", "info", "error"}


@functools.cache
def relay_frames() -> tuple[bytes, ...]:
    """The captured relay frames (each prefixed by its length, 4 bytes little-endian, the whole zstd-compressed)."""
    if not RELAY.exists():
        pytest.skip("../shared/references/bluesky is absent")
    import zstandard

    with RELAY.open("rb") as file:
        data = zstandard.ZstdDecompressor().stream_reader(file).read()
    frames, at = [], 0
    while at < len(data):
        (size,) = struct.unpack_from("<I", data, at)
        frames.append(data[at + 4:at + 4 + size])
        at += 4 + size
    return tuple(frames)


# --------------------------------------------------------------------------- synthetic frames
def cid_of(block: bytes) -> bytes:
    """The binary CID (v1, dag-cbor, sha2-256) of a DAG-CBOR block."""
    return b"\x01\x71\x12\x20" + hashlib.sha256(block).digest()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def car(blocks: list[bytes], root: bytes | None = None) -> bytes:
    """A CARv1 file of ``blocks``, each stored under its CID."""
    header = libipld.encode_dag_cbor({"roots": [root or cid_of(blocks[0] if blocks else b"")], "version": 1})
    return _varint(len(header)) + header + b"".join(
        _varint(len(cid_of(block)) + len(block)) + cid_of(block) + block for block in blocks)


def frame(header: object, body: object) -> bytes:
    return libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body)


def commit(ops: list[dict], stored: list[bytes], **fields: object) -> bytes:
    """A ``#commit`` frame of ``ops`` whose CAR holds ``stored``; ``fields`` replace the body's."""
    body = {"seq": 7, "repo": DID, "time": TIME, "ops": ops, "blocks": car(stored), "tooBig": False,
            "rebase": False, "commit": cid_of(b"commit"), "rev": "3mptbyp", "since": None, "blobs": []}
    body.update(fields)
    return frame({"op": 1, "t": "#commit"}, body)


def op(action: str, path: str, block: bytes | None) -> dict:
    return {"action": action, "path": path, "cid": cid_of(block) if block is not None else None}


IMAGE = cid_of(b"an image")  # a blob's CID (a raw-codec one in real posts; any CID will do here)
POST_RECORD = {
    "$type": POST, "text": "a cat", "createdAt": TIME, "langs": ["en"],
    "embed": {"$type": "app.bsky.embed.images", "images": [
        {"alt": "cat", "image": {"$type": "blob", "ref": IMAGE, "mimeType": "image/jpeg", "size": 1234}}]},
    "sig": b"\x00\x01\x02\x03",
}
POST_BLOCK = libipld.encode_dag_cbor(POST_RECORD)
LIKE_BLOCK = libipld.encode_dag_cbor({"$type": "app.bsky.feed.like", "createdAt": TIME,
                                       "subject": {"uri": f"at://{DID}/{POST}/3abc", "cid": "bafyrei"}})
GOOD = commit([op("create", f"{POST}/3mpta", POST_BLOCK), op("create", "app.bsky.feed.like/3mptb", LIKE_BLOCK),
               op("delete", f"{POST}/3mptc", None)], [POST_BLOCK, LIKE_BLOCK])
SYNTHETIC = (GOOD, frame({"op": 1, "t": "#identity"}, {"seq": 8, "did": DID, "time": TIME, "handle": "a.b"}),
             frame({"op": -1}, {"error": "ConsumerTooSlow", "message": "slow"}),
             frame({"op": 1, "t": "#info"}, {"name": "OutdatedCursor", "message": "too old"}))


def test_source_asks_for_the_seq_it_resumes_from():
    source = firehose()
    assert source.name == "firehose" and source.endpoints == FIREHOSE_HOSTS
    assert FIREHOSE_HOSTS == ("wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos",)
    assert source.url(FIREHOSE_HOSTS[0], None) == FIREHOSE_HOSTS[0]
    assert source.url(FIREHOSE_HOSTS[0], 31527015322) == FIREHOSE_HOSTS[0] + "?cursor=31527015322"
    assert source.resume(31527015322) == 31527015322
    assert source.parse is parse_firehose
    assert firehose(("wss://relay.test/xrpc/com.atproto.sync.subscribeRepos",)).endpoints[0].startswith("wss://relay")


def test_a_commit_gives_one_event_per_op_and_post_records_in_the_json_data_model():
    create, like, delete = parse_firehose(GOOD)
    image = libipld.encode_cid(IMAGE)
    assert create == Event(
        "commit", did=DID, position=7, time_us=iso_to_us(TIME), operation="create", collection=POST, rkey="3mpta",
        cid=libipld.encode_cid(cid_of(POST_BLOCK)),
        record={"$type": POST, "text": "a cat", "createdAt": TIME, "langs": ["en"],
                "embed": {"$type": "app.bsky.embed.images", "images": [
                    {"alt": "cat", "image": {"$type": "blob", "ref": {"$link": image}, "mimeType": "image/jpeg",
                                             "size": 1234}}]},
                "sig": {"$bytes": "AAECAw"}})  # base64 without its padding
    assert image_rows(create)[0]["image_cid"] == image
    assert like == Event("commit", did=DID, position=7, time_us=iso_to_us(TIME), operation="create",
                         collection="app.bsky.feed.like", rkey="3mptb", cid=libipld.encode_cid(cid_of(LIKE_BLOCK)))
    assert delete == Event("commit", did=DID, position=7, time_us=iso_to_us(TIME), operation="delete",
                           collection=POST, rkey="3mptc")


def test_bytes_are_base64_without_padding():
    for raw in (b"", b"\x00", b"\x00\x01", b"\xff\xfe\xfd", bytes(range(40))):
        record = {"$type": POST, "text": "", "createdAt": TIME, "data": raw}
        block = libipld.encode_dag_cbor(record)
        (event,) = parse_firehose(commit([op("create", f"{POST}/3x", block)], [block]))
        encoded = event.record["data"]["$bytes"]
        assert "=" not in encoded and base64.b64decode(encoded + "=" * (-len(encoded) % 4)) == raw


def test_a_byte_string_that_parses_as_a_cid_is_not_passed_off_as_a_link():
    # libipld decodes a link and a byte string alike; a record holding a CID-shaped byte string cannot be told
    # from one holding a link, and re-encoding it does not give its block: the op is left out, not misreported
    placeholder = b"\xff" * 36
    block = libipld.encode_dag_cbor({"$type": POST, "text": "", "createdAt": TIME, "x": placeholder})
    assert block.count(b"\x58\x24" + placeholder) == 1
    block = block.replace(b"\x58\x24" + placeholder, b"\x58\x24" + IMAGE)  # a byte string, not tag 42
    assert libipld.decode_dag_cbor(block)["x"] == IMAGE
    events = parse_firehose(commit([op("create", f"{POST}/3a", block), op("create", f"{POST}/3b", POST_BLOCK)],
                                   [block, POST_BLOCK]))
    assert [e.rkey for e in events] == ["3b"]


def test_post_ops_whose_record_cannot_be_read_are_left_out_the_rest_kept():
    other = libipld.encode_dag_cbor({"$type": POST, "text": "other", "createdAt": TIME})
    # the block is missing from the CAR
    assert [e.rkey for e in parse_firehose(commit([op("create", f"{POST}/3a", other),
                                                   op("create", f"{POST}/3b", POST_BLOCK)], [POST_BLOCK]))] == ["3b"]
    # a block stored under the op's CID that is another record
    forged = car([POST_BLOCK]).replace(cid_of(POST_BLOCK), cid_of(other))
    assert parse_firehose(commit([op("update", f"{POST}/3a", other)], [], blocks=forged)) == []
    # a block that is not a map
    listed = libipld.encode_dag_cbor([1, 2])
    assert parse_firehose(commit([op("create", f"{POST}/3a", listed)], [listed])) == []
    # tooBig: no blocks at all; the deletes and the other collections' ops stand
    events = parse_firehose(commit([op("create", f"{POST}/3a", POST_BLOCK), op("delete", f"{POST}/3b", None),
                                    op("create", "app.bsky.graph.follow/3c", LIKE_BLOCK)], [], tooBig=True,
                                   blocks=b""))
    assert [(e.operation, e.rkey, e.record) for e in events] == [("delete", "3b", None), ("create", "3c", None)]
    # a record nested as deep as libipld reads, too deep to convert; one deeper than that makes the CAR unreadable
    for depth, outcome in ((sys.getrecursionlimit() - 5, []), (sys.getrecursionlimit() + 5, FrameError)):
        deep = libipld.encode_dag_cbor({"$type": POST, "text": "", "createdAt": TIME, "x": "PLACEHOLDER"})
        deep = deep.replace(b"\x6bPLACEHOLDER", b"\x81" * depth + b"\x64leaf")  # [[[...["leaf"]...]]]
        deep_commit = commit([op("create", f"{POST}/3a", deep)], [deep])
        if outcome is FrameError:
            with pytest.raises(FrameError):
                parse_firehose(deep_commit)
        else:
            assert parse_firehose(deep_commit) == outcome
    # a commit with no post record to read is never unpacked
    assert len(parse_firehose(commit([op("create", "app.bsky.feed.like/3a", LIKE_BLOCK)], [], blocks=b"junk"))) == 1


def test_notices_and_account_events():
    assert parse_firehose(SYNTHETIC[2]) == [Event("error", name="ConsumerTooSlow", message="slow")]
    assert parse_firehose(frame({"op": -1}, {"error": "FutureCursor"})) == [Event("error", name="FutureCursor")]
    assert parse_firehose(SYNTHETIC[3]) == [Event("info", name="OutdatedCursor", message="too old")]
    assert parse_firehose(SYNTHETIC[1]) == [Event("identity", did=DID, position=8, time_us=iso_to_us(TIME))]
    for t, kind in (("#account", "account"), ("#sync", "sync")):
        body = {"seq": 9, "did": DID, "time": TIME, "active": True, "blocks": b"", "rev": "3m"}
        assert parse_firehose(frame({"op": 1, "t": t}, body)) == [Event(kind, did=DID, position=9,
                                                                          time_us=iso_to_us(TIME))]


def _body_without(**changes: object) -> bytes:
    base = {"seq": 7, "repo": DID, "time": TIME, "ops": [op("create", f"{POST}/3a", POST_BLOCK)],
            "blocks": car([POST_BLOCK]), "tooBig": False}
    for key, value in changes.items():
        if value is KeyError:
            base.pop(key)
        else:
            base[key] = value
    return frame({"op": 1, "t": "#commit"}, base)


MALFORMED = {
    "text frame": '{"op": 1}',
    "empty": b"",
    "nested too deep": b"\x81" * 100_000,
    "header a float": b"\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00" + libipld.encode_dag_cbor({}),
    "one object": libipld.encode_dag_cbor({"op": 1, "t": "#commit"}),
    "three objects": SYNTHETIC[1] + libipld.encode_dag_cbor({}),
    "header not a map": frame([1, "#commit"], {}),
    "body not a map": frame({"op": 1, "t": "#identity"}, [DID]),
    "unknown op": frame({"op": 2, "t": "#commit"}, {}),
    "no op": frame({"t": "#identity"}, {"seq": 1, "did": DID, "time": TIME}),
    "unknown type": frame({"op": 1, "t": "#labels"}, {"seq": 1}),
    "error without its error": frame({"op": -1}, {"message": "x"}),
    "info without its name": frame({"op": 1, "t": "#info"}, {"message": "x"}),
    "identity with a bad did": frame({"op": 1, "t": "#identity"}, {"seq": 1, "did": "alice", "time": TIME}),
    "identity without seq": frame({"op": 1, "t": "#identity"}, {"did": DID, "time": TIME}),
    "commit without seq": _body_without(seq=KeyError),
    "seq a boolean": _body_without(seq=True),
    "seq a string": _body_without(seq="7"),
    "repo not a did": _body_without(repo="did:plc:"),
    "no ops": _body_without(ops=KeyError),
    "ops a map": _body_without(ops={"a": 1}),
    "op not a map": _body_without(ops=["create"]),
    "unknown action": _body_without(ops=[op("upsert", f"{POST}/3a", POST_BLOCK)]),
    "path without rkey": _body_without(ops=[op("create", POST, POST_BLOCK)]),
    "path without collection": _body_without(ops=[op("delete", "/3a", None)]),
    "path with a bad rkey": _body_without(ops=[op("delete", f"{POST}/3a/b", None)]),
    "path not a string": _body_without(ops=[{"action": "delete", "path": 5, "cid": None}]),
    "create without cid": _body_without(ops=[op("create", f"{POST}/3a", None)]),
    "cid not a cid": _body_without(ops=[{"action": "create", "path": "app.bsky.feed.like/3a", "cid": b"\x05junk"}]),
    "blocks not a CAR": _body_without(blocks=b"\x0anot a car"),
    "blocks a string": _body_without(blocks="car"),
    "no blocks": _body_without(blocks=KeyError),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_frames_are_frame_errors(name):
    with pytest.raises(FrameError) as info:
        parse_firehose(MALFORMED[name])
    assert "\n" not in str(info.value) and 0 < len(str(info.value)) <= 200


def test_random_bytes_are_frame_errors():
    rng = random.Random(7)
    for size in list(range(0, 64)) + [rng.randrange(64, 20_000) for _ in range(200)]:
        with pytest.raises(FrameError):
            parse_firehose(rng.randbytes(size))


def _assert_events_or_frame_error(data: bytes) -> None:
    try:
        events = parse_firehose(data)
    except FrameError:
        return
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, Event) and event.kind in KINDS
        assert event.record is None or isinstance(event.record, dict)


@pytest.mark.parametrize("index", range(len(SYNTHETIC)))
def test_every_truncation_of_a_synthetic_frame_is_a_frame_error(index):
    whole = SYNTHETIC[index]
    for cut in range(len(whole)):
        with pytest.raises(FrameError):
            parse_firehose(whole[:cut])


@SETTINGS
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_give_events_or_frame_errors(data):
    _assert_events_or_frame_error(data)


def _mutate(data: st.DataObject, whole: bytes) -> bytes:
    """``whole`` with a few bytes replaced, inserted or removed, or cut and spliced with itself."""
    out = bytearray(whole)
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, max(0, len(out) - 1)))
        how = data.draw(st.sampled_from(["replace", "insert", "delete", "splice"]))
        if how == "replace" and out:
            out[at] = data.draw(st.integers(0, 255))
        elif how == "insert":
            out[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif how == "delete":
            del out[at:at + data.draw(st.integers(1, 8))]
        else:
            out = out[:at] + out[data.draw(st.integers(0, max(0, len(out) - 1))):]
    return bytes(out)


@SETTINGS
@given(st.data())
def test_mutated_synthetic_frames_give_events_or_frame_errors(data):
    _assert_events_or_frame_error(_mutate(data, data.draw(st.sampled_from(SYNTHETIC))))


# --------------------------------------------------------------------------- the captured window
@pytest.mark.shared
@SETTINGS
@given(st.data())
def test_mutated_real_frames_give_events_or_frame_errors(data):
    frames = relay_frames()
    _assert_events_or_frame_error(_mutate(data, frames[data.draw(st.integers(0, len(frames) - 1))]))


@pytest.mark.shared
def test_every_truncation_of_real_frames_is_a_frame_error():
    frames = relay_frames()
    kinds = [libipld.decode_dag_cbor_multi(f)[0]["t"] for f in frames]
    with_images = [f for f in frames if any(image_rows(e) for e in parse_firehose(f))]
    chosen = with_images + [frames[kinds.index("#identity")], frames[kinds.index("#account")], frames[0]]
    assert len(chosen) == 5
    for whole in chosen:
        for cut in range(len(whole)):
            with pytest.raises(FrameError):
                parse_firehose(whole[:cut])


def _without_time(rows: list[dict]) -> list[dict]:
    """Image rows less ``time_us``: the firehose's is the relay's clock, Jetstream's its own."""
    return [{key: value for key, value in row.items() if key != "time_us"} for row in rows]


@pytest.mark.shared
def test_the_firehose_gives_the_posts_jetstream_gives_of_the_same_window():
    relay = [event for f in relay_frames() for event in parse_firehose(f)]
    jetstream = [parse_jetstream(line) for line in JETSTREAM.read_text(encoding="utf-8").splitlines() if line]
    assert len(relay) == len(jetstream) == 152

    def posts(events: list[Event]) -> dict[tuple, Event]:
        kept = {(e.did, e.operation, e.rkey, e.cid): e for e in events if e.kind == "commit" and e.collection == POST}
        assert len(kept) == sum(e.kind == "commit" and e.collection == POST for e in events)
        return kept

    ours, theirs = posts(relay), posts(jetstream)
    assert set(ours) == set(theirs)
    assert Counter(op for _, op, _, _ in ours) == {"create": 17, "delete": 1}
    for key, event in ours.items():
        assert event.record == theirs[key].record, key
        assert _without_time(image_rows(event)) == _without_time(image_rows(theirs[key])), key
    assert sum(bool(image_rows(e)) for e in ours.values()) == 2
    # every op of every collection, and the account events, agree too
    assert Counter((e.kind, e.did, e.operation, e.collection, e.rkey, e.cid) for e in relay) == \
        Counter((e.kind, e.did, e.operation, e.collection, e.rkey, e.cid) for e in jetstream)
    assert Counter(e.kind for e in relay) == {"commit": 150, "identity": 1, "account": 1}


@pytest.mark.shared
def test_positions_are_seqs_and_times_the_relays():
    frames = relay_frames()
    first = parse_firehose(frames[0])
    assert [(e.position, e.time_us) for e in first] == [(31527015322, iso_to_us("2026-07-04T14:38:07.517Z"))]
    seqs = [e.position for f in frames for e in parse_firehose(f)]
    assert seqs[0] == 31527015322 and seqs[-1] == 31527015471 and seqs == sorted(seqs)
