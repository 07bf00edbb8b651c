"""The relay firehose (``com.atproto.sync.subscribeRepos``) as a :class:`~visent.crawl.stream.Source`.

A frame is two DAG-CBOR objects, a header ``{op, t}`` and a body; a ``#commit`` body carries its records in
``blocks``, a CAR file. :mod:`libipld` (the Rust DAG-CBOR and CAR codec the ``atproto`` SDK is built on) reads the
frame and the CAR (importing it takes a millisecond); the SDK's own models are not used: importing them takes
0.7 s, validating a frame with them costs nine times what reading it does, and they require fields the lexicon
marks deprecated (``rebase``, ``tooBig``).

The records are handed on in the atproto JSON data model, as Jetstream sends them (CID links as
``{"$link": cid}``, bytes as ``{"$bytes": base64}``, so a blob is ``{"$type": "blob", "ref": {"$link": cid},
"mimeType": ..., "size": ...}``). libipld decodes a link and a byte string alike, as ``bytes``, and encodes back as
a link every byte string that parses as a CID; a record is therefore read that way and handed on only if encoding
it again gives the block the commit names (its sha-256 is the op's CID), which also proves the block is the record.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import libipld

# events' own checks and constructors, so that a post reads the same from every wire
from visent.crawl.events import (DID, POST, RKEY, Event, FrameError, commit_event, iso_to_us, need_int, need_str,
                                 notice_event)
from visent.crawl.stream import Source, with_query

FIREHOSE_HOSTS = ("wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos",)
DAG_CBOR = 0x71   # the multicodec of a record block
SHA2_256 = 0x12   # the multihash of a record block's CID
_KINDS = {"#identity": "identity", "#account": "account", "#sync": "sync"}
_ACTIONS = frozenset({"create", "update", "delete"})


def firehose(endpoints: tuple[str, ...] = FIREHOSE_HOSTS) -> Source:
    """A relay's firehose: every repository's events as DAG-CBOR frames (cursor: ``seq``, the last event handled;
    the relay sends those after it). Nothing is filtered server-side: the crawl keeps the posts itself."""
    return Source("firehose", tuple(endpoints), parse_firehose,
                  lambda e, c: with_query(e, [("cursor", c)]) if c is not None else e,
                  lambda position: position)


def parse_firehose(frame: str | bytes) -> list[Event]:
    """The events of one firehose frame.

    A ``#commit`` gives one ``commit`` event per op (``position`` = ``seq``, ``time_us`` = the frame's ``time``).
    Only ``app.bsky.feed.post`` creates and updates carry their ``record``: other collections' ops come with
    ``record`` None, and a commit without a post record to read is never unpacked, which is most of the stream's
    cost saved. A post create or update whose record cannot be handed on exactly is left out, the commit's other
    ops kept: its block is missing (``tooBig`` commits carry none), is not a map, or does not hash to the op's CID.
    ``#identity``, ``#account`` and ``#sync`` give an event of that kind, ``#info`` an ``info`` event
    (``name``/``message``, e.g. ``OutdatedCursor``), an error frame (header ``op`` -1) an ``error`` event
    (``ConsumerTooSlow``, ``FutureCursor``). Raises :class:`FrameError` for anything else: not two DAG-CBOR objects,
    an unknown message type, a field missing or of the wrong type, a DID, path, rkey or CID that is malformed, a
    ``blocks`` that is not a CAR file when a post record is to be read.
    """
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise FrameError("a text frame, not DAG-CBOR")
    try:
        parts = libipld.decode_dag_cbor_multi(bytes(frame))
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"not DAG-CBOR ({_reason(exc)})") from None
    if len(parts) != 2:
        raise FrameError(f"{len(parts)} DAG-CBOR objects, not a header and a body")
    header, body = parts
    if not isinstance(header, dict) or not isinstance(body, dict):
        raise FrameError("a header or body that is not a map")
    op = header.get("op")
    if op == -1:
        if not isinstance(body.get("error"), str):
            raise FrameError("an error frame without its error")
        return [notice_event("error", body)]
    if op != 1:
        raise FrameError(f"unknown frame op {str(op)[:20]!r}")
    kind = header.get("t")
    if kind == "#commit":
        return _commit_events(body)
    if kind == "#info":
        if not isinstance(body.get("name"), str):
            raise FrameError("an #info without its name")
        return [notice_event("info", body)]
    if kind in _KINDS:
        return [Event(_KINDS[kind], did=need_str(body.get("did"), "did", DID),
                      position=need_int(body.get("seq"), "seq"), time_us=iso_to_us(body.get("time")))]
    raise FrameError(f"unknown message type {str(kind)[:60]!r}")


def _commit_events(body: dict[str, Any]) -> list[Event]:
    """The events of a ``#commit`` body, one per op."""
    seq = need_int(body.get("seq"), "seq")
    did = need_str(body.get("repo"), "repo", DID)
    time_us = iso_to_us(body.get("time"))
    ops = body.get("ops")
    if not isinstance(ops, list):
        raise FrameError("a commit without its ops")
    blocks: dict[bytes, Any] | None = None
    events = []
    for op in ops:
        if not isinstance(op, dict):
            raise FrameError("an op that is not a map")
        action, path, raw = op.get("action"), op.get("path"), op.get("cid")
        if action not in _ACTIONS:
            raise FrameError(f"unknown op action {str(action)[:20]!r}")
        collection, _, rkey = need_str(path, "op.path").partition("/")
        if not collection:
            raise FrameError("op.path is missing or malformed")
        cid = ""
        if action != "delete":
            if not isinstance(raw, bytes):
                raise FrameError(f"a {action} without its CID")
            try:
                cid = libipld.encode_cid(raw)
            except ValueError:
                raise FrameError("op.cid is malformed") from None
        if collection != POST:
            events.append(Event("commit", did=did, position=seq, time_us=time_us, operation=action,
                                collection=collection, rkey=need_str(rkey, "op.path", RKEY), cid=cid))
            continue
        record = None
        if action != "delete":
            if blocks is None:
                blocks = {} if body.get("tooBig") is True else _car_blocks(body.get("blocks"))
            record = _record(blocks.get(raw), raw)
            if record is None:
                continue
        events.append(commit_event({"operation": action, "collection": collection, "rkey": rkey, "record": record,
                               "cid": cid}, did=did, position=seq, time_us=time_us))
    return events


def _car_blocks(car: Any) -> dict[bytes, Any]:
    """The blocks of a commit's CAR file, by the binary form of their CID."""
    if not isinstance(car, bytes):
        raise FrameError("a commit without its blocks")
    try:
        return libipld.decode_car(car)[1]
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"blocks: not a CAR file ({_reason(exc)})") from None


def _record(block: Any, cid: bytes) -> dict[str, Any] | None:
    """The record in ``block`` in the JSON data model, or None unless ``block`` is a map that hashes to ``cid`` (and
    is not nested too deep to convert)."""
    if not isinstance(block, dict):
        return None
    named = libipld.decode_cid(cid)
    if named["codec"] != DAG_CBOR or named["hash"]["code"] != SHA2_256:
        return None
    try:
        if hashlib.sha256(libipld.encode_dag_cbor(block)).digest() != named["hash"]["digest"]:
            return None
        return _json(block)
    except (ValueError, RecursionError):
        return None


def _json(value: Any) -> Any:
    """A decoded DAG-CBOR value in the atproto JSON data model: ``bytes`` that are a CID as ``{"$link": cid}``,
    other ``bytes`` as ``{"$bytes": base64}`` (standard alphabet, unpadded)."""
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json(item) for item in value]
    if isinstance(value, bytes):
        try:
            return {"$link": libipld.encode_cid(value)}
        except ValueError:
            return {"$bytes": base64.b64encode(value).decode("ascii").rstrip("=")}
    return value


def _reason(exc: BaseException) -> str:
    """libipld's message without its ``Failed to decode DAG-CBOR.`` preamble, cut short."""
    return str(exc).rpartition(". ")[2][:120] or type(exc).__name__
