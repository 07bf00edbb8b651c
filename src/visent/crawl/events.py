"""Bluesky's events in one shape, and the rows a crawl keeps of an image post.

Every stream visent reads (Jetstream's v1 ``/subscribe`` JSON, Jetstream's ``subscribeEvents`` JSON frames, the
relay firehose's DAG-CBOR frames) is parsed into :class:`Event` records, so the crawl loop, its filters and its
shards never depend on the wire. A record is kept in the atproto JSON data model (blob references as
``{"$link": cid}``), as Jetstream sends it.

:func:`image_rows` turns one ``app.bsky.feed.post`` record into the crawl's rows, one per image, and
:class:`PostFilter` says why a post is left out (no image, language, reply, short text, adult self-label, the
author's hourly cap).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

POST = "app.bsky.feed.post"
IMAGES = "app.bsky.embed.images"
RECORD_WITH_MEDIA = "app.bsky.embed.recordWithMedia"
# the self-labels an author puts on adult content (com.atproto.label.defs, Bluesky's moderation docs)
ADULT_LABELS = frozenset({"porn", "sexual", "nudity", "graphic-media", "gore"})
DEFAULT_CDN = "https://cdn.bsky.app/img"
IMAGE_SIZES = ("thumbnail", "fullsize")
MAX_TEXT = 10_000  # a post's text is at most 3,000 bytes on Bluesky; longer is hostile and cut

DID = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]{1,2000}")
RKEY = re.compile(r"[A-Za-z0-9._:~-]{1,512}")
_CID = re.compile(r"b[a-z2-7]{20,200}")


class FrameError(ValueError):
    """A frame that is not an event of the stream (garbage, wrong shape); the crawl counts it and goes on."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a stream, whatever the wire.

    ``position`` is the stream's own cursor for this event (Jetstream v1: ``time_us``; ``subscribeEvents`` and the
    firehose: ``seq``); ``time_us`` is when the service saw it (microseconds since the epoch). ``kind`` is
    ``commit``, ``identity``, ``account``, ``sync``, ``info`` (an advisory notice: ``name``/``message``) or
    ``error`` (the server ends the stream: ``name``/``message``, e.g. ``ConsumerTooSlow``). Commits carry
    ``operation`` (create/update/delete), ``collection``, ``rkey``, and for creates and updates ``record`` (JSON
    data model) and ``cid``.
    """

    kind: str
    did: str = ""
    position: int | None = None
    time_us: int | None = None
    operation: str = ""
    collection: str = ""
    rkey: str = ""
    record: dict[str, Any] | None = None
    cid: str = ""
    name: str = ""
    message: str = ""

    @property
    def uri(self) -> str:
        """The record's ``at://`` URI."""
        return f"at://{self.did}/{self.collection}/{self.rkey}"


def iso_to_us(text: Any) -> int | None:
    """Microseconds since the epoch of an RFC 3339 datetime (``2026-07-04T14:38:07.517Z``), None if unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return round(moment.timestamp() * 1_000_000)


def us_to_iso(time_us: int | None) -> str | None:
    """The RFC 3339 UTC datetime (microseconds) of ``time_us``."""
    if time_us is None:
        return None
    moment = _dt.datetime.fromtimestamp(time_us / 1_000_000, tz=_dt.timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _object(frame: str | bytes) -> dict[str, Any]:
    try:
        obj = json.loads(frame)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FrameError(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise FrameError(f"a JSON {type(obj).__name__}, not an object")
    return obj


def need_int(value: Any, what: str) -> int:
    """``value`` if it is an integer, else a :class:`FrameError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameError(f"{what} is not an integer")
    return value


def need_str(value: Any, what: str, pattern: re.Pattern[str] | None = None) -> str:
    """``value`` if it is a string (matching ``pattern`` when given), else a :class:`FrameError` naming ``what``."""
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise FrameError(f"{what} is missing or malformed")
    return value


def commit_event(body: dict[str, Any], *, did: Any, position: int | None, time_us: int | None) -> Event:
    """The commit :class:`Event` of one record operation (``operation``, ``collection``, ``rkey``, ``record``,
    ``cid``), checked as every wire checks it."""
    operation = need_str(body.get("operation"), "commit.operation")
    record = body.get("record")
    if operation != "delete" and not isinstance(record, dict):
        raise FrameError(f"a {operation} without a record")
    cid = body.get("cid")
    return Event("commit", did=need_str(did, "did", DID), position=position, time_us=time_us, operation=operation,
                 collection=need_str(body.get("collection"), "commit.collection"),
                 rkey=need_str(body.get("rkey"), "commit.rkey", RKEY),
                 record=record if operation != "delete" else None, cid=cid if isinstance(cid, str) else "")


def notice_event(kind: str, body: dict[str, Any], *, position: int | None = None,
                 time_us: int | None = None) -> Event:
    """An ``info`` or ``error`` :class:`Event` from a body with ``name`` (or ``error``) and ``message``."""
    name, message = body.get("name", body.get("error", "")), body.get("message", "")
    return Event(kind, position=position, time_us=time_us, name=str(name)[:200], message=str(message)[:1000])


def parse_jetstream(frame: str | bytes) -> Event:
    """One frame of Jetstream's v1 ``/subscribe`` stream (JSON, cursor = ``time_us``).

    Besides the documented ``commit``/``identity``/``account`` events, an object with an ``error`` field (the
    event-stream convention for a server closing the stream) is an ``error`` event and one whose ``kind`` is
    ``info`` (or whose ``$type`` ends in ``#info``) an ``info`` event. Raises :class:`FrameError` otherwise."""
    obj = _object(frame)
    if "error" in obj:
        return notice_event("error", obj)
    kind = obj.get("kind")
    if kind == "info" or str(obj.get("$type", "")).endswith("#info"):
        return notice_event("info", obj.get("info") if isinstance(obj.get("info"), dict) else obj)
    time_us = need_int(obj.get("time_us"), "time_us")
    if kind == "commit":
        body = obj.get("commit")
        if not isinstance(body, dict):
            raise FrameError("a commit event without its commit")
        return commit_event(body, did=obj.get("did"), position=time_us, time_us=time_us)
    if kind in ("identity", "account"):
        return Event(kind, did=need_str(obj.get("did"), "did", DID), position=time_us, time_us=time_us)
    raise FrameError(f"unknown event kind {str(kind)[:40]!r}")


def parse_subscribe_events(frame: str | bytes) -> Event:
    """One frame of Jetstream's ``network.bsky.jetstream.subscribeEvents`` stream (the ``xrpc.v1.json``
    subprotocol, cursor = ``seq``): an object whose ``$type`` (or ``t``) names the message (``#commit``,
    ``#identity``, ``#account``, ``#sync``, ``#info``), its fields beside it or under ``body``; an ``error`` field
    (or ``op`` -1) is the server's error. Raises :class:`FrameError` otherwise."""
    obj = _object(frame)
    body = obj.get("body") if isinstance(obj.get("body"), dict) else obj
    if "error" in body or obj.get("op") == -1:
        return notice_event("error", body)
    kind = str(obj.get("$type") or obj.get("t") or "").rpartition("#")[2]
    if kind == "info":
        return notice_event("info", body)
    if kind not in ("commit", "identity", "account", "sync"):
        raise FrameError(f"unknown message type {str(obj.get('$type') or obj.get('t'))[:60]!r}")
    seq = need_int(body.get("seq"), "seq")
    time_us = iso_to_us(body.get("time"))
    if kind == "commit":
        return commit_event(body, did=body.get("did"), position=seq, time_us=time_us)
    return Event(kind, did=need_str(body.get("did"), "did", DID), position=seq, time_us=time_us)


# --------------------------------------------------------------------------- image posts
def _blob_cid(blob: Any) -> str | None:
    """The CID of a blob reference: ``{"$type": "blob", "ref": {"$link": cid}}``, or the legacy ``{"cid": cid}``."""
    if not isinstance(blob, dict):
        return None
    ref = blob.get("ref")
    cid = ref.get("$link") if isinstance(ref, dict) else blob.get("cid")
    return cid if isinstance(cid, str) and _CID.fullmatch(cid) else None


def post_images(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The images of a post record: ``app.bsky.embed.images``, or the media of ``app.bsky.embed.recordWithMedia``
    when they are images. Each entry as the record holds it (``image`` blob, ``alt``, ``aspectRatio``)."""
    embed = record.get("embed")
    if not isinstance(embed, dict):
        return []
    if embed.get("$type") == RECORD_WITH_MEDIA:
        embed = embed.get("media")
        if not isinstance(embed, dict):
            return []
    if embed.get("$type") != IMAGES or not isinstance(embed.get("images"), list):
        return []
    return [image for image in embed["images"] if isinstance(image, dict)]


def self_labels(record: dict[str, Any]) -> list[str]:
    """The self-labels (``com.atproto.label.defs#selfLabels``) a post carries."""
    labels = record.get("labels")
    values = labels.get("values") if isinstance(labels, dict) else None
    if not isinstance(values, list):
        return []
    return [str(v["val"])[:64] for v in values if isinstance(v, dict) and isinstance(v.get("val"), str)]


def post_langs(record: dict[str, Any]) -> list[str]:
    """The languages the post's author gave (BCP-47 tags, as written)."""
    langs = record.get("langs")
    if not isinstance(langs, list):
        return []
    return [lang[:35] for lang in langs if isinstance(lang, str) and lang][:3]


def primary_language(tag: str) -> str:
    """``en-US`` → ``en``: the primary subtag, lowercased."""
    return tag.split("-", 1)[0].strip().lower()


def image_url(cdn: str, did: str, cid: str, size: str = "thumbnail") -> str:
    """The CDN address of a post image: ``{cdn}/feed_thumbnail/plain/{did}/{cid}@jpeg`` (or ``feed_fullsize``)."""
    return f"{cdn.rstrip('/')}/feed_{size}/plain/{did}/{cid}@jpeg"


def post_text(record: dict[str, Any]) -> str:
    text = record.get("text")
    return text[:MAX_TEXT] if isinstance(text, str) else ""


def image_rows(event: Event, *, cdn: str = DEFAULT_CDN, size: str = "thumbnail") -> list[dict[str, Any]]:
    """The crawl rows of an image post, one per image (``id`` = ``at://<did>/app.bsky.feed.post/<rkey>#<k>``, k
    from 1); images whose blob reference is malformed are skipped. No rows for a post without images."""
    record = event.record or {}
    images = post_images(record)
    if not images:
        return []
    langs = post_langs(record)
    created = record.get("createdAt")
    base = {
        "text": post_text(record),
        "lang": primary_language(langs[0]) if langs else None,
        "langs": langs,
        "created_at": created if isinstance(created, str) else None,
        "author": event.did,
        "labels": self_labels(record),
        "reply": isinstance(record.get("reply"), dict),
        "time_us": event.time_us,
        "cid": event.cid or None,
    }
    rows = []
    for k, image in enumerate(images[:4], start=1):  # Bluesky allows 4
        cid = _blob_cid(image.get("image"))
        if cid is None:
            continue
        alt = image.get("alt")
        rows.append({"id": f"{event.uri}#{k}", **base, "image": image_url(cdn, event.did, cid, size),
                     "image_cid": cid, "alt": alt[:MAX_TEXT] if isinstance(alt, str) else ""})
    return rows


@dataclass
class PostFilter:
    """Which image posts a crawl keeps. :meth:`reason` says why a post is left out, or None to keep it; the per-author
    cap counts kept posts per author per hour of the stream's clock (``time_us``), so a replay gives the same crawl.
    """

    langs: frozenset[str] = frozenset()   # primary subtags; empty: every language (posts without one included)
    replies: bool = True
    min_words: int = 0
    per_author_hour: int = 0              # 0: no cap
    keep_labelled: bool = False
    hour: int | None = None               # the hour the counts below are of
    authors: dict[str, int] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """The filter as the crawl records it (a resumed crawl must use the same)."""
        return {"langs": sorted(self.langs), "replies": self.replies, "min_words": self.min_words,
                "per_author_hour": self.per_author_hour, "keep_labelled": self.keep_labelled}

    def reason(self, event: Event) -> str | None:
        record = event.record or {}
        if not post_images(record):
            return "no image"
        if self.langs and not any(primary_language(tag) in self.langs for tag in post_langs(record)):
            return "language"
        if not self.replies and isinstance(record.get("reply"), dict):
            return "reply"
        if self.min_words and len(post_text(record).split()) < self.min_words:
            return "short text"
        if not self.keep_labelled and ADULT_LABELS.intersection(self_labels(record)):
            return "adult self-label"
        if self.per_author_hour:
            self._roll(event.time_us)
            if self.authors.get(event.did, 0) >= self.per_author_hour:
                return "author's hourly cap"
        return None

    def count(self, event: Event) -> None:
        """Count a kept post against its author's cap."""
        if self.per_author_hour:
            self._roll(event.time_us)
            self.authors[event.did] = self.authors.get(event.did, 0) + 1

    def _roll(self, time_us: int | None) -> None:
        hour = (time_us or 0) // 3_600_000_000
        if hour != self.hour:
            if self.hour is None or hour > self.hour:  # a late event of the past hour keeps the current counts
                self.hour, self.authors = hour, {}

    def state(self) -> dict[str, Any]:
        return {"hour": self.hour, "authors": self.authors}

    def restore(self, state: dict[str, Any]) -> None:
        self.hour = state.get("hour")
        self.authors = {str(k): int(v) for k, v in (state.get("authors") or {}).items()}


def langs_option(text: str | Iterable[str] | None) -> frozenset[str]:
    """``"en,fr"`` (or a list of tags) → the primary subtags to keep."""
    if text is None:
        return frozenset()
    parts = text.split(",") if isinstance(text, str) else list(text)
    return frozenset(primary_language(p) for p in parts if p.strip())
