"""A local Bluesky event-stream replay server and image CDN on 127.0.0.1, for crawl tests and benchmarks.

:class:`ReplayServer` replays a list of events over WebSocket the way Bluesky's services stream them::

    /subscribe                                      Jetstream v1 JSON (protocol "v1"; cursor: time_us, from the
                                                    first event with time_us >= cursor; wantedCollections and
                                                    wantedDids filter commits, "prefix.*" allowed)
    /xrpc/network.bsky.jetstream.subscribeEvents    Jetstream's xrpc.v1.json frames (protocol "xrpc"; cursor: seq,
                                                    inclusive, or a unix-µs timestamp when >= 1e15; kinds,
                                                    collections and dids filter)
    /xrpc/com.atproto.sync.subscribeRepos           the relay firehose's DAG-CBOR frames (protocol "firehose";
                                                    cursor: the frames whose seq > cursor)

Without a cursor a replay starts at its first event (the live services start at their tip). Other paths get
HTTP 404, a cursor that is not an integer HTTP 400. The faults a crawler must live through are options:
``drop_every`` (the transport is shut after every N frames of a connection, no close frame), ``garbage_every``
(random bytes / text that is not JSON / JSON of the wrong shape, in turn, after every N events),
``duplicate_on_reconnect`` (a connection with a cursor first gets again the events just before it),
``info_frames`` (sent first on every connection), ``error_after`` (a ``ConsumerTooSlow`` error frame, then a
close, on the first connection), ``rate`` (frames per second), ``refuse_first`` (HTTP 503 handshakes) and
``close_at_end`` (else the connection idles like the live tip). :func:`synthetic_events` makes realistic
``app.bsky.feed.post`` events, deterministic per seed (:class:`SyntheticStream` makes event i from the seed and i
alone, so a replay of a million events needs no memory).

:class:`ImageServer` is the CDN: ``/img/feed_thumbnail/plain/<did>/<cid>@jpeg`` (64×64) and
``/img/feed_fullsize/plain/<did>/<cid>@jpeg`` (256×256) answer a JPEG of random blocks seeded by the CID (distinct
CIDs are far apart in pHash), anything else 404.

Both are context managers (they stop, and their threads end, with the block)::

    with ReplayServer(synthetic_events(500), drop_every=100, close_at_end=True) as server, ImageServer() as cdn:
        crawl(server.url, cdn=cdn.url)
        server.requests[-1]["cursor"], server.connections, server.sent, cdn.hits

or run ``python tests/blueskyserver.py --events N --seed S [--protocol v1|xrpc] [--rate R] [--drop-every K]
[--images]`` (or ``--jsonl FILE``, or ``--protocol firehose --relay-frames FILE.zst``, to replay captures) to serve
in a process of its own: it prints the WebSocket URL on the first line of stdout (the image server's on the second
with ``--images``) and serves until it is terminated (SIGTERM/SIGINT); synthetic events are made as they are sent
(about 60,000 a second of one core), so a million of them take no memory. Nothing here listens beyond 127.0.0.1;
an idle connection is closed after ``IDLE_LIMIT_S``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime as _dt
import functools
import hashlib
import io
import json
import logging
import random
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

V1_PATH = "/subscribe"
XRPC_PATH = "/xrpc/network.bsky.jetstream.subscribeEvents"
FIREHOSE_PATH = "/xrpc/com.atproto.sync.subscribeRepos"
PATHS = {"v1": V1_PATH, "xrpc": XRPC_PATH, "firehose": FIREHOSE_PATH}
XRPC_TYPE = "network.bsky.jetstream.subscribeEvents"
XRPC_KINDS = ("commit", "identity", "account", "sync")
POST = "app.bsky.feed.post"
IDLE_LIMIT_S = 3600.0       # a connection idling at the end of its replay is closed after this long
DUPLICATE_SCAN = 1_000_000  # how far back duplicate_on_reconnect looks for events the filter lets through

_LOG = logging.getLogger("blueskyserver")
_LOG.addHandler(logging.NullHandler())
_LOG.propagate = False


# --------------------------------------------------------------------------- identifiers
_S32 = "234567abcdefghijklmnopqrstuvwxyz"  # atproto's sortable base32 (TIDs)
_M64 = (1 << 64) - 1


_B32 = "abcdefghijklmnopqrstuvwxyz234567"
# base64's 64 symbols onto base32's 32 (each twice): a hash spelt in base32 at C speed (base64.b32encode is slow)
_TO_B32 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                          (_B32 * 2).encode())


def _b32_chars(key: str, count: int) -> str:
    """``count`` (<= 80) base32 characters, a hash of ``key``."""
    digest = hashlib.sha512(key.encode()).digest()
    return base64.b64encode(digest)[:count].translate(_TO_B32).decode("ascii")


@functools.lru_cache(maxsize=1 << 16)
def did_plc(key: str) -> str:
    """``did:plc:`` + 24 base32 characters, from ``key``."""
    return "did:plc:" + _b32_chars(key, 24)


def _cid(prefix: str, key: str) -> str:
    # CIDv1 + codec + sha2-256 + 32 bytes = 36 bytes = 58 base32 characters: the first 6 spell the 4 header bytes
    # but 2 bits, the 7th holds those 2 (zero) bits and 3 of the digest, the last 3 digest bits and 2 zero bits
    chars = _b32_chars(key, 52)
    return (f"b{prefix}{_B32[ord(chars[0]) % 8]}{chars[1:51]}"
            f"{_B32[(_B32.index(chars[51]) & 0b11100)]}")


def blob_cid(key: str) -> str:
    """A valid CIDv1 (raw, sha2-256) in base32, ``bafkrei…`` (59 characters), from ``key``."""
    return _cid("afkrei", key)


def record_cid(key: str) -> str:
    """A valid CIDv1 (dag-cbor, sha2-256) in base32, ``bafyrei…`` (59 characters), from ``key``."""
    return _cid("afyrei", key)


_S32_PAIRS = [a + b for a in _S32 for b in _S32]


def tid(time_us: int, clock: int = 0) -> str:
    """An atproto TID: 13 sortable-base32 characters of ``time_us << 10 | clock``."""
    v = ((time_us & ((1 << 53) - 1)) << 10) | (clock & 1023)
    p = _S32_PAIRS
    return (_S32[v >> 60] + p[(v >> 50) & 1023] + p[(v >> 40) & 1023] + p[(v >> 30) & 1023]
            + p[(v >> 20) & 1023] + p[(v >> 10) & 1023] + p[v & 1023])


def _mix(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


@functools.lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def iso_ms(time_us: int) -> str:
    """``2026-07-04T14:38:08.999Z`` (milliseconds, as clients write ``createdAt``)."""
    return f"{_iso_seconds(time_us // 1_000_000)}.{time_us // 1000 % 1000:03d}Z"


def iso_us(time_us: int) -> str:
    """``2026-07-04T14:38:08.999123Z`` (microseconds, as Jetstream writes ``time``)."""
    return f"{_iso_seconds(time_us // 1_000_000)}.{time_us % 1_000_000:06d}Z"


def _iso_to_us(text: Any) -> int | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return round(moment.timestamp() * 1_000_000)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- synthetic posts
_WORDS = {
    "en": ("the a my our this that today tonight morning evening sunset sunrise city street light rain snow coffee "
           "walk garden river lake mountain beach forest cat dog bird friends family home work weekend trip little "
           "big old new quiet happy sad tired lovely beautiful strange finally again still never always just "
           "really so very love hate miss need want found made saw took painted drew cooked baked tried "
           "photo picture sketch painting view colors shadows clouds sky flowers tree window train bridge market "
           "night fog storm summer winter spring autumn festival concert game match team art books museum").split(),
    "fr": ("le la les un une mon ma notre ce cette aujourd'hui soir matin coucher soleil ville rue lumière pluie "
           "neige café balade jardin rivière lac montagne plage forêt chat chien oiseau amis famille maison "
           "travail week-end voyage petit grand vieux nouveau calme heureux triste fatigué magnifique enfin "
           "encore toujours vraiment très photo dessin peinture vue couleurs ombres nuages ciel fleurs arbre "
           "fenêtre train pont marché nuit brouillard orage été hiver printemps automne musée").split(),
    "de": ("der die das ein eine mein unser heute abend morgen sonnenuntergang stadt straße licht regen schnee "
           "kaffee spaziergang garten fluss see berg strand wald katze hund vogel freunde familie zuhause arbeit "
           "wochenende reise klein groß alt neu ruhig glücklich traurig müde wunderschön endlich wieder immer "
           "wirklich sehr foto zeichnung gemälde aussicht farben schatten wolken himmel blumen baum fenster zug "
           "brücke markt nacht nebel gewitter sommer winter frühling herbst museum").split(),
    "ja": ("今日 の 夕焼け が とても きれい でした 猫 犬 散歩 朝 夜 雨 雪 空 雲 花 桜 海 山 川 街 駅 電車 写真 "
           "絵 描きました 撮りました 久しぶり に 友達 と カフェ で コーヒー 美味しい 楽しい 嬉しい 疲れた 週末 旅行 "
           "お祭り 紅葉 新しい 作品 です ね よ ！ 。 、").split(),
    "pt": ("o a os um uma meu minha nosso hoje noite manhã pôr do sol cidade rua luz chuva café passeio jardim "
           "rio lago montanha praia floresta gato cachorro pássaro amigos família casa trabalho fim de semana "
           "viagem pequeno grande velho novo calmo feliz triste cansado lindo finalmente sempre muito foto "
           "desenho pintura vista cores sombras nuvens céu flores árvore janela trem ponte feira verão inverno "
           "primavera outono museu").split(),
}
_TAGS = ("art", "photography", "sketch", "cats", "dogs", "nature", "sunset", "travel", "food", "illustration",
         "oc", "fanart", "landscape", "streetphotography", "bluesky", "birds", "flowers", "painting")
_EMOJI = ("😍", "🔥", "✨", "🙂", "😂", "💦", "🌅", "📷", "🎨", "❤️", "🐈", "🌸")
_LANG_CHOICES = ((["en"], 30), (["en-US"], 10), (["fr"], 9), (["de"], 9), (["ja"], 12), (["pt-BR"], 10),
                 (["en", "fr"], 3), (["de", "en"], 3), (["ja", "en"], 2), (None, 6))
_ADULT = ("porn", "porn", "porn", "sexual", "nudity", "graphic-media")
_N_AUTHORS = 20_000
_N_BOTS = 3
_UPDATE_SHARE = 0.004
_BOT_SHARE = 0.06
_DELETE_WINDOW = 50_000    # a delete refers to a post created at most this many events earlier
_FIELD = re.compile(r"@@([A-Z][0-9]?)@@")


class SyntheticStream:
    """``n`` synthetic Jetstream ``app.bsky.feed.post`` events; event ``i`` is made from ``(seed, i)`` alone.

    ``event(i)`` is the event as a dict (Jetstream v1's shape, or subscribeEvents' flat ``#commit`` with
    ``seq = i + 1`` for protocol "xrpc"), ``payload(i)`` its compact JSON. ``time_us`` is ``start_us + i * step_us``.
    About ``image_share`` of the events are creates of posts with 1-4 images (a fifth of them quoting a post:
    ``app.bsky.embed.recordWithMedia``), ``delete_share`` deletes of a post created earlier in the stream, a few
    updates of one; the rest are posts without images (some with a link card whose thumbnail is not a post image).
    Replies, several languages, adult self-labels, empty and long texts, and three spam-bot-like authors who post
    ~2% of the events each.

    So that a server makes tens of thousands of events a second, a post's record is rendered from a template (its
    text, languages, embeds, labels, reply) with the post's own ``createdAt`` and blob CIDs: post ``j`` has a template
    of its own for ``j < TEMPLATES``, later posts reuse one of those (every CID, DID, rkey and time stays distinct).
    """

    TEMPLATES = 8192

    def __init__(self, n: int, *, seed: int = 0, start_us: int = 1_783_175_888_000_000, step_us: int = 1_000,
                 image_share: float = 0.3, delete_share: float = 0.02, protocol: str = "v1"):
        if protocol not in ("v1", "xrpc"):
            raise ValueError(f"synthetic events are Jetstream's: protocol v1 or xrpc, not {protocol!r}")
        if step_us < 1:
            raise ValueError("step_us must be at least 1 (time_us strictly increases)")
        self.n, self.seed, self.start_us, self.step_us, self.protocol = n, seed, start_us, step_us, protocol
        self.delete_share = max(0.0, min(1.0, delete_share))
        self.update_share = min(_UPDATE_SHARE, 1.0 - self.delete_share)
        creates = 1.0 - self.delete_share - self.update_share
        self.bot_share = _BOT_SHARE if image_share > 0 else 0.0  # the bots' posts all have images
        wanted = image_share / creates - self.bot_share if creates > 0 else 0.0
        self.image_given_create = max(0.0, min(1.0, wanted / (1.0 - self.bot_share)))
        self._key = _mix(seed * 0x5851F42D4C957F2D + 0x14057B7EF767814F)
        self._bots = [did_plc(f"{seed}/bot/{k}") for k in range(_N_BOTS)]
        self._langs = [choice for choice, weight in _LANG_CHOICES for _ in range(weight)]
        self._templates: dict[tuple[bool, int], tuple[list[str], list[str]]] = {}
        if protocol == "xrpc":
            self._head = '{"$type":"' + XRPC_TYPE + '#commit","seq":'
        else:
            self._head = '{"did":"'

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self.event(i % self.n)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self.event(i) for i in range(self.n))

    # -- the cheap per-index facts (no record made): what a delete or update of post j needs
    def _hash(self, i: int, salt: int = 0) -> int:
        return _mix((self._key + i * 0x9E3779B97F4A7C15 + salt * 0x632BE59BD9B4E019) & _M64)

    def _facts(self, j: int) -> tuple[str, bool, str, int, int, int, int]:
        """Of index ``j``: (base operation, bot?, author, createdAt µs, rkey clock, rev lag, template pick)."""
        h1 = self._hash(j)
        h2 = _mix(h1)
        u = (h1 & 0xFFFFFFFF) / 2**32
        op = "delete" if u < self.delete_share else "update" if u < self.delete_share + self.update_share else "create"
        bot = ((h1 >> 32) & 0xFFFF) / 65536 < self.bot_share
        if bot:
            author = self._bots[(h1 >> 48) % _N_BOTS]
        else:  # skewed: some post often, most rarely
            author = did_plc(f"{self.seed}/author/{int((((h2 >> 32) & 0xFFFFF) / 2**20) ** 2 * _N_AUTHORS)}")
        created = self.start_us + j * self.step_us - 30_000 - (h2 & 0x3FFFFF)  # 30 ms to ~4.2 s before seen
        return op, bot, author, created, (h2 >> 22) & 1023, (h1 >> 48) & 0xFFFF, (h2 >> 52)

    def time_us(self, i: int) -> int:
        return self.start_us + i * self.step_us

    def _base_op(self, i: int) -> str:
        u = (self._hash(i) & 0xFFFFFFFF) / 2**32
        if u < self.delete_share:
            return "delete"
        if u < self.delete_share + self.update_share:
            return "update"
        return "create"

    def _target(self, i: int) -> int | None:
        """The earlier create that the delete or update at ``i`` is of (None: there is none to find)."""
        window = min(i, _DELETE_WINDOW)
        for attempt in range(16):
            if window <= 0:
                return None
            j = i - 1 - self._hash(i, 100 + attempt) % window
            if self._base_op(j) == "create":
                return j
        return None

    def operation(self, i: int) -> tuple[str, int]:
        """``(operation, j)``: event ``i`` creates post ``j == i``, or deletes or updates the post of event j < i."""
        op = self._base_op(i)
        if op != "create":
            j = self._target(i)
            if j is not None:
                return op, j
        return "create", i

    def did(self, i: int) -> str:
        """The author of event ``i`` (a delete's or update's is the post's author)."""
        return self._facts(self.operation(i)[1])[2]

    def rkey(self, j: int) -> str:
        """The record key of post ``j`` (a TID of its ``createdAt``)."""
        facts = self._facts(j)
        return tid(facts[3], facts[4])

    # -- records
    def _template(self, j: int, bot: bool, pick: int) -> tuple[list[str], list[str]]:
        t = j if j < self.TEMPLATES else pick % (64 if bot else self.TEMPLATES)
        template = self._templates.get((bot, t))
        if template is None:
            template = self._templates[(bot, t)] = self._make_template(bot, t)
        return template

    def _make_template(self, bot: bool, t: int) -> tuple[list[str], list[str]]:
        """Post ``t``'s record as JSON with ``@@C@@`` (createdAt), ``@@B<k>@@`` (image k's blob CID) and ``@@T@@``
        (a link card's thumbnail CID) where each post has its own; as (literal chunks, field names) in turn."""
        rng = random.Random(self._hash(t, 4) ^ bot)
        images = bot or rng.random() < self.image_given_create
        if bot:
            langs: list[str] | None = ["en"]
            text = f"🔥 New drop #{t % 997} — follow for more, link in bio! #art #commission"
            tags: list[str] = ["art", "commission"]
        else:
            langs = rng.choice(self._langs)
            text, tags = self._text(rng, langs, images)
        record: dict[str, Any] = {"$type": POST, "createdAt": "@@C@@"}
        if images:
            count = rng.choices((1, 2, 3, 4), weights=(60, 20, 12, 8))[0]
            media = {"$type": "app.bsky.embed.images", "images": [self._image(rng, k) for k in range(count)]}
            if not bot and rng.random() < 0.2:
                record["embed"] = {"$type": "app.bsky.embed.recordWithMedia", "media": media,
                                   "record": {"$type": "app.bsky.embed.record", "record": self._strong_ref(rng)}}
            else:
                record["embed"] = media
        else:
            r = rng.random()
            if r < 0.25:
                record["embed"] = {"$type": "app.bsky.embed.external", "external": {
                    "description": " ".join(rng.choices(_WORDS["en"], k=rng.randint(4, 14))).capitalize(),
                    "thumb": {"$type": "blob", "ref": {"$link": "@@T@@"}, "mimeType": "image/jpeg",
                              "size": rng.randint(20_000, 300_000)},
                    "title": " ".join(rng.choices(_WORDS["en"], k=rng.randint(3, 9))).title(),
                    "uri": f"https://news.example.com/{rng.randint(2020, 2026)}/{rng.getrandbits(40):x}"}}
            elif r < 0.32:
                record["embed"] = {"$type": "app.bsky.embed.record", "record": self._strong_ref(rng)}
        if tags:
            record["facets"] = self._facets(text, tags)
        if not bot and rng.random() < 0.05:
            record["labels"] = {"$type": "com.atproto.label.defs#selfLabels",
                                "values": [{"val": rng.choice(_ADULT)}]}
        if langs is not None:
            record["langs"] = list(langs)
        if not bot and rng.random() < 0.25:
            root = self._strong_ref(rng)
            record["reply"] = {"parent": self._strong_ref(rng) if rng.random() < 0.5 else root, "root": root}
        record["text"] = text
        parts = _FIELD.split(_json(record).decode())
        return parts[0::2], parts[1::2]

    def _text(self, rng: random.Random, langs: list[str] | None, images: bool) -> tuple[str, list[str]]:
        primary = (langs or ["en"])[0].split("-")[0]
        words = _WORDS.get(primary, _WORDS["en"])
        r = rng.random()
        if r < (0.18 if images else 0.04):
            return "", []
        length = rng.randint(1, 5) if r < 0.4 else rng.randint(6, 22) if r < 0.85 else rng.randint(23, 50)
        picked = rng.choices(words, k=length)
        if primary == "ja":
            text = "".join(picked)
        else:
            text = " ".join(picked)
            text = text[:1].upper() + text[1:] + rng.choice((".", "!", "", "…", "?"))
        if rng.random() < 0.3:
            text += " " + rng.choice(_EMOJI)
        tags: list[str] = []
        if rng.random() < 0.3:
            tags = rng.sample(_TAGS, rng.randint(1, 3))
            text += "\n\n" + " ".join(f"#{t}" for t in tags)
        return text, tags

    @staticmethod
    def _facets(text: str, tags: list[str]) -> list[dict[str, Any]]:
        data = text.encode()
        facets, start = [], 0
        for tag in tags:
            needle = f"#{tag}".encode()
            at = data.find(needle, start)
            if at < 0:
                continue
            facets.append({"features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}],
                           "index": {"byteEnd": at + len(needle), "byteStart": at}})
            start = at + len(needle)
        return facets

    @staticmethod
    def _image(rng: random.Random, k: int) -> dict[str, Any]:
        width = rng.choice((800, 1000, 1080, 1200, 1600, 2000, 3024, 4000))
        height = max(200, int(width * rng.choice((0.5625, 0.75, 1.0, 1.25, 1.333, 0.66))))
        alt = "" if rng.random() < 0.5 else " ".join(rng.choices(_WORDS["en"], k=rng.randint(3, 16))).capitalize()
        mime = "image/png" if rng.random() < 0.08 else "image/jpeg"
        return {"alt": alt, "aspectRatio": {"height": height, "width": width},
                "image": {"$type": "blob", "ref": {"$link": f"@@B{k}@@"}, "mimeType": mime,
                          "size": rng.randint(40_000, 1_990_000)}}

    def _strong_ref(self, rng: random.Random) -> dict[str, str]:
        other = did_plc(f"{self.seed}/author/{rng.randrange(_N_AUTHORS)}")
        key = tid(self.start_us - rng.randrange(1, 30 * 86_400_000_000), rng.randrange(1024))
        return {"cid": record_cid(f"{other}/{key}"), "uri": f"at://{other}/{POST}/{key}"}

    def _record_json(self, j: int, facts: tuple[str, bool, str, int, int, int, int]) -> str:
        literals, fields = self._template(j, facts[1], facts[6])
        out = [literals[0]]
        for name, literal in zip(fields, literals[1:]):
            if name == "C":
                out.append(iso_ms(facts[3]))
            elif name == "T":
                out.append(blob_cid(f"{self.seed}/thumb/{j}"))
            else:
                out.append(blob_cid(f"{self.seed}/{j}/{name[1:]}"))
            out.append(literal)
        return "".join(out)

    def record(self, j: int) -> dict[str, Any]:
        """The ``app.bsky.feed.post`` record of the post created at event ``j``."""
        return json.loads(self._record_json(j, self._facts(j)))

    # -- events
    def payload(self, i: int) -> bytes:
        """Event ``i`` as compact JSON."""
        facts = self._facts(i)
        op, j = facts[0], i
        if op != "create":
            target = self._target(i)
            if target is None:
                op = "create"
            else:
                j = target
                rev_lag = facts[5]
                facts = self._facts(j)
        else:
            rev_lag = facts[5]
        time_us = self.start_us + i * self.step_us
        rev = tid(time_us - 1_000 - rev_lag, rev_lag & 1023)
        tail = f'"rev":"{rev}","operation":"{op}","collection":"{POST}","rkey":"{tid(facts[3], facts[4])}"'
        if op != "delete":
            record = self._record_json(j, facts)
            if op == "update":
                edited = json.loads(record)
                edited["text"] = edited.get("text", "") + " (edited)"
                record = _json(edited).decode()
            tail += f',"record":{record},"cid":"{record_cid(f"{self.seed}/{i}/record")}"'
        if self.protocol == "xrpc":
            return f'{self._head}{i + 1},"did":"{facts[2]}","time":"{iso_us(time_us)}",{tail}}}'.encode()
        return f'{self._head}{facts[2]}","time_us":{time_us},"kind":"commit","commit":{{{tail}}}}}'.encode()

    def event(self, i: int) -> dict[str, Any]:
        """Event ``i`` as a dict."""
        return json.loads(self.payload(i))

    def line(self, i: int) -> str:
        return self.payload(i).decode()


def synthetic_events(n: int, *, seed: int = 0, start_us: int = 1_783_175_888_000_000, step_us: int = 1_000,
                     image_share: float = 0.3, delete_share: float = 0.02, protocol: str = "v1") -> list[dict]:
    """``n`` realistic Jetstream ``app.bsky.feed.post`` events, deterministic per ``seed`` (see
    :class:`SyntheticStream`): Jetstream v1's shape, or subscribeEvents' (``seq = i + 1``) for protocol "xrpc"."""
    stream = SyntheticStream(n, seed=seed, start_us=start_us, step_us=step_us, image_share=image_share,
                             delete_share=delete_share, protocol=protocol)
    return [stream.event(i) for i in range(n)]


# --------------------------------------------------------------------------- firehose frames
def firehose_frame(header: dict[str, Any], body: dict[str, Any]) -> bytes:
    """A relay firehose frame: DAG-CBOR header then body (``{"op": 1, "t": "#info"}``, ``{"op": -1}`` ...)."""
    import libipld

    return libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body)


def read_relay_frames(path: str) -> list[bytes]:
    """The frames of a capture like relay-frames.bin.zst (zstd; each frame after its 4-byte little-endian length)."""
    import zstandard

    with open(path, "rb") as handle:
        data = zstandard.ZstdDecompressor().stream_reader(handle).read()
    frames, offset = [], 0
    while offset + 4 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "little")
        frames.append(data[offset + 4:offset + 4 + size])
        offset += 4 + size
    return frames


# --------------------------------------------------------------------------- what a replay sends
class _Frames:
    """A list of events as frames, with what seeking a cursor and filtering need, made once."""

    def __init__(self, events: Sequence[Any], protocol: str):
        self.protocol = protocol
        self.payloads: list[bytes] = []
        self.text: list[bool] = []
        self.positions: list[int | None] = []
        self.times: list[int | None] = []
        self.kinds: list[str | None] = []
        self.collections: list[str | None] = []
        self.dids: list[str | None] = []
        for event in events:
            if isinstance(event, dict):
                payload, text, obj = _json(event), True, event
            elif isinstance(event, str):
                payload, text, obj = event.rstrip("\r\n").encode(), True, None
            elif isinstance(event, (bytes, bytearray, memoryview)):
                payload, text, obj = bytes(event), False, None
            else:
                raise TypeError(f"an event is a dict, a str or bytes, not {type(event).__name__}")
            self.payloads.append(payload)
            self.text.append(text)
            self._describe(payload, obj)

    def _describe(self, payload: bytes, obj: Any) -> None:
        position = time_us = kind = collection = did = None
        try:
            if self.protocol == "firehose":
                import libipld

                header, body = libipld.decode_dag_cbor_multi(payload)[:2]
                kind = str(header.get("t", "")).rpartition("#")[2] or None
                position = body.get("seq")
                did = body.get("repo") or body.get("did")
                time_us = _iso_to_us(body.get("time"))
            else:
                if obj is None:
                    obj = json.loads(payload)
                if self.protocol == "v1":
                    kind, did, position = obj.get("kind"), obj.get("did"), obj.get("time_us")
                    time_us = position
                    commit = obj.get("commit")
                    collection = commit.get("collection") if isinstance(commit, dict) else None
                else:
                    body = obj.get("body") if isinstance(obj.get("body"), dict) else obj
                    kind = str(obj.get("$type") or obj.get("t") or "").rpartition("#")[2] or None
                    position, did, collection = body.get("seq"), body.get("did"), body.get("collection")
                    time_us = _iso_to_us(body.get("time"))
        except Exception:  # noqa: BLE001 - a deliberately broken event in the list: sent as it is, never sought
            pass
        self.positions.append(position if isinstance(position, int) and not isinstance(position, bool) else None)
        self.times.append(time_us if isinstance(time_us, int) else None)
        self.kinds.append(kind if isinstance(kind, str) else None)
        self.collections.append(collection if isinstance(collection, str) else None)
        self.dids.append(did if isinstance(did, str) else None)

    def __len__(self) -> int:
        return len(self.payloads)

    def frame(self, i: int) -> tuple[bytes, bool]:
        return self.payloads[i], self.text[i]

    def kind(self, i: int) -> str | None:
        return self.kinds[i]

    def collection(self, i: int) -> str | None:
        return self.collections[i]

    def did(self, i: int) -> str | None:
        return self.dids[i]

    def position(self, i: int) -> int | None:
        return self.positions[i]

    def seek(self, cursor: int, *, by_time: bool = False, after: bool = False) -> int:
        """The first index whose position (or time) is >= ``cursor`` (> with ``after``); len if none."""
        values = self.times if by_time else self.positions
        for i, value in enumerate(values):
            if value is not None and (value > cursor if after else value >= cursor):
                return i
        return len(values)


class _SyntheticFrames:
    """A :class:`SyntheticStream` as frames: nothing is kept, the cursor seeks by arithmetic."""

    def __init__(self, stream: SyntheticStream):
        self.stream = stream
        self.protocol = stream.protocol

    def __len__(self) -> int:
        return self.stream.n

    def frame(self, i: int) -> tuple[bytes, bool]:
        return self.stream.payload(i), True

    def kind(self, i: int) -> str:
        return "commit"

    def collection(self, i: int) -> str:
        return POST

    def did(self, i: int) -> str:
        return self.stream.did(i)

    def position(self, i: int) -> int:
        return i + 1 if self.protocol == "xrpc" else self.stream.time_us(i)

    def seek(self, cursor: int, *, by_time: bool = False, after: bool = False) -> int:
        s = self.stream
        if self.protocol == "xrpc" and not by_time:
            index = cursor - 1 + (1 if after else 0)
        else:
            index = -(-(cursor + (1 if after else 0) - s.start_us) // s.step_us)
        return max(0, min(s.n, index))


def _matches(value: str | None, patterns: list[str]) -> bool:
    if value is None:
        return False
    return any(value == p or (p.endswith(".*") and value.startswith(p[:-1])) for p in patterns)


def _values(query: dict[str, list[str]], name: str) -> list[str]:
    return [v for raw in query.get(name, []) for v in raw.split(",") if v]


# --------------------------------------------------------------------------- the WebSocket server
class _Stop(Exception):
    """The connection is over (dropped, errored, closed, the server stopping)."""


class ReplayServer:
    """A replay of ``events`` over WebSocket on 127.0.0.1 at a free port; a context manager.

    ``events``: dicts (sent as compact JSON text), str lines (v1 and xrpc: sent as they are) or bytes (sent as binary
    frames; the firehose's DAG-CBOR frames), or a :class:`SyntheticStream` (made lazily, frame by frame). ``url`` is
    the stream's address; ``requests`` the query parameters of every handshake, refused ones included (a repeated
    parameter's values joined with ","); ``connections`` the WebSocket connections opened; ``sent`` the frames sent
    in total (info, garbage, duplicate and error frames included); ``events_sent`` the event frames alone;
    ``refused`` the handshakes answered 503; ``dropped`` the connections shut by ``drop_every``.

    Counting: ``drop_every`` and ``error_after`` count every frame sent on the connection; ``garbage_every`` counts
    the event frames sent by the server in all. ``duplicate_on_reconnect`` applies to every handshake that has a
    cursor. An ``error_after`` error frame is ``{"error": "ConsumerTooSlow", "message": ...}`` as JSON text, or
    for the firehose a DAG-CBOR ``{"op": -1}`` header and that body, followed by a close (code 1008).
    """

    def __init__(self, events: Sequence[Any] | SyntheticStream, *, protocol: str = "v1",
                 drop_every: int | None = None, garbage_every: int | None = None, duplicate_on_reconnect: int = 0,
                 info_frames: list | None = None, error_after: int | None = None, rate: float | None = None,
                 close_at_end: bool = False, refuse_first: int = 0, compression: str | None = None,
                 seed: int = 0):
        if protocol not in PATHS:
            raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PATHS)}")
        for name, value in (("drop_every", drop_every), ("garbage_every", garbage_every),
                            ("error_after", error_after)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None)")
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None)")
        if isinstance(events, SyntheticStream):
            if events.protocol != protocol:
                raise ValueError(f"a {events.protocol} stream served as {protocol}")
            self._frames: _Frames | _SyntheticFrames = _SyntheticFrames(events)
        else:
            self._frames = _Frames(events, protocol)
        self.protocol = protocol
        self.drop_every, self.garbage_every, self.error_after = drop_every, garbage_every, error_after
        self.duplicate_on_reconnect = max(0, duplicate_on_reconnect)
        self.info_frames = list(info_frames or [])
        self.rate, self.close_at_end, self.refuse_first = rate, close_at_end, refuse_first
        self.compression = compression
        self.requests: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.connections = 0
        self.sent = 0
        self.events_sent = 0
        self.garbage_sent = 0
        self.refused = 0
        self.dropped = 0
        self._handshakes = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._active: set[Any] = set()
        self._server: Any = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # -- addresses
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{PATHS[self.protocol]}"

    # -- life
    def start(self) -> ReplayServer:
        from websockets.sync.server import serve

        self._server = serve(self._handler, "127.0.0.1", 0, compression=self.compression,
                             process_request=self._process_request, select_subprotocol=self._subprotocol,
                             max_size=1 << 20, logger=_LOG, server_header="blueskyserver")
        self._port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="bluesky-replay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        end = time.monotonic() + 0.25
        while time.monotonic() < end:  # handlers leave at their next frame
            with self._lock:
                if not self._active:
                    break
            time.sleep(0.01)
        with self._lock:
            stuck = list(self._active)
        for ws in stuck:  # blocked sending to a client that stopped reading
            _shut(ws)
        closer = threading.Thread(target=self._server.shutdown, daemon=True)
        closer.start()
        closer.join(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handshake
    @staticmethod
    def _subprotocol(connection: Any, offered: Sequence[str]) -> str | None:
        return "xrpc.v1.json" if "xrpc.v1.json" in offered else None

    def _process_request(self, connection: Any, request: Any) -> Any:
        parts = urlsplit(request.path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        params: dict[str, str] = {}
        for key, value in query:
            params[key] = f"{params[key]},{value}" if key in params else value
        with self._lock:
            self.requests.append(params)
            self.paths.append(parts.path)
        if parts.path != PATHS[self.protocol]:
            return connection.respond(404, "blueskyserver: no such stream\n")
        with self._lock:
            self._handshakes += 1
            if self._handshakes <= self.refuse_first:
                self.refused += 1
                return connection.respond(503, "blueskyserver: try again later\n")
        cursor = params.get("cursor")
        if cursor is not None:
            try:
                int(cursor)
            except ValueError:
                return connection.respond(400, '{"error":"InvalidRequest","message":"cursor is not an integer"}')
        if self.protocol == "xrpc":
            bad = [k for k in params.get("kinds", "").split(",") if k and k not in XRPC_KINDS]
            if bad:
                return connection.respond(400, f'{{"error":"InvalidRequest","message":"unknown kind {bad[0]}"}}')
        return None

    # -- a connection
    def _plan(self, query: dict[str, list[str]]) -> Iterator[int]:
        """The indices of the events this connection is sent, duplicates first."""
        frames = self._frames
        cursor_text = (query.get("cursor") or [None])[-1]
        cursor = int(cursor_text) if cursor_text not in (None, "") else None
        if self.protocol == "v1":
            collections, dids, kinds = _values(query, "wantedCollections"), _values(query, "wantedDids"), []
        elif self.protocol == "xrpc":
            collections, dids, kinds = (_values(query, "collections"), _values(query, "dids"),
                                        _values(query, "kinds"))
        else:
            collections, dids, kinds = [], [], []
        by_time = self.protocol == "xrpc" and cursor is not None and cursor >= 10**15
        after = self.protocol == "firehose"

        filtering = bool(collections or dids or kinds)

        def selected(i: int) -> bool:
            """What the filters let through, as the real services filter."""
            if not filtering:
                return True
            kind = frames.kind(i)
            if kind is None:
                return True  # not an event: a deliberately odd entry goes out as it is
            if kinds and kind not in kinds and kind != "info":
                return False
            if dids and kind != "info" and not _matches(frames.did(i), dids):
                return False
            return not (collections and kind == "commit" and not _matches(frames.collection(i), collections))

        def wanted(i: int) -> bool:
            if after and cursor is not None:  # the firehose: seq > cursor
                position = frames.position(i)
                if position is not None and position <= cursor:
                    return False
            return selected(i)

        start = 0 if cursor is None else frames.seek(cursor, by_time=by_time, after=after)
        if cursor is not None and self.duplicate_on_reconnect:
            before: list[int] = []
            i = start - 1
            while i >= 0 and len(before) < self.duplicate_on_reconnect and start - i <= DUPLICATE_SCAN:
                if frames.position(i) is not None and selected(i):
                    before.append(i)
                i -= 1
            yield from reversed(before)
        for i in range(start, len(frames)):
            if wanted(i):
                yield i

    def _handler(self, ws: Any) -> None:
        parsed = parse_qsl(urlsplit(ws.request.path).query, keep_blank_values=True)
        query: dict[str, list[str]] = {}
        for key, value in parsed:
            query.setdefault(key, []).append(value)
        with self._lock:
            self.connections += 1
            first = self.connections == 1
            self._active.add(ws)
        conn = _Connection(self, ws, first)
        try:
            for frame in self.info_frames:
                if isinstance(frame, (bytes, bytearray)):
                    conn.send(bytes(frame), text=False)
                else:
                    conn.send(frame.encode() if isinstance(frame, str) else _json(frame), text=True)
            for i in self._plan(query):
                payload, text = self._frames.frame(i)
                conn.send(payload, text=text, event=True)
            conn.flush()
            with self._lock:
                self._active.discard(ws)
            if self.close_at_end:
                ws.close()
                return
            end = time.monotonic() + IDLE_LIMIT_S
            while not self._stopping.is_set() and time.monotonic() < end:
                try:
                    ws.recv(timeout=0.2)  # what a client says (Jetstream's options updates) is not acted on
                except TimeoutError:
                    continue
        except _Stop:
            pass
        except Exception:  # noqa: BLE001 - a client that hung up (ConnectionClosed, OSError) ends its connection
            pass
        finally:
            with self._lock:
                self._active.discard(ws)

    def _garbage(self) -> tuple[bytes, bool]:
        with self._lock:
            turn = self.garbage_sent
            self.garbage_sent += 1
            noise = bytes(self._rng.getrandbits(8) for _ in range(self._rng.randint(8, 64)))
        kind = turn % 3
        if kind == 0:  # random bytes, never UTF-8 (0xff) so never JSON
            return b"\xff" + noise, False
        if self.protocol == "firehose":
            if kind == 1:  # a header without its body
                return firehose_frame({"op": 1, "t": "#commit"}, {"seq": "x"})[:12], False
            return firehose_frame({"op": 1, "t": "#commit"}, {"ops": [], "note": "no seq, repo or blocks"}), False
        if kind == 1:
            texts = ('{"did":"did:plc:', "<html><body><h1>502 Bad Gateway</h1></body></html>", "not json at all",
                     '{"kind":"commit","time_us":17831758')
            return texts[(turn // 3) % len(texts)].encode(), True
        shapes = ('[1,2,3]', '"a string"', '{"kind":"commit","time_us":"soon"}', '{"kind":"mystery","time_us":1}',
                  '{"did":"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa","time_us":1,"kind":"commit","commit":"a string"}',
                  '{"$type":"network.bsky.jetstream.subscribeEvents#commit","seq":"NaN"}')
        return shapes[(turn // 3) % len(shapes)].encode(), True

    def _error_frame(self) -> tuple[bytes, bool]:
        body = {"error": "ConsumerTooSlow", "message": "The consumer is too slow and was disconnected"}
        if self.protocol == "firehose":
            return firehose_frame({"op": -1}, body), False
        return _json(body), True


def _shut(ws: Any) -> None:
    """End the connection's transport at once: no close frame (what was already sent still arrives)."""
    try:
        ws.socket.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _frame(payload: bytes, text: bool) -> bytes:
    """A whole unmasked server frame (FIN, text or binary), as RFC 6455 spells it."""
    size = len(payload)
    head = 0x81 if text else 0x82
    if size < 126:
        return bytes((head, size)) + payload
    if size < 65536:
        return bytes((head, 126)) + size.to_bytes(2, "big") + payload
    return bytes((head, 127)) + size.to_bytes(8, "big") + payload


class _Connection:
    """One connection's frame count, pacing and faults.

    Frames are written in batches (one ``sendall`` for up to ``BATCH`` frames: a system call per frame would cap
    the rate), under the connection's own lock so they never interleave with its pings or its close; each batch
    goes out before a fault acts, before a pause of ``rate`` and at the end, so every count stays exact.
    """

    BATCH = 64
    BATCH_BYTES = 256 * 1024

    def __init__(self, server: ReplayServer, ws: Any, first: bool):
        from websockets.protocol import State

        self.server, self.ws, self.first = server, ws, first
        self.count = 0
        self.t0 = time.monotonic()
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.open_state = State.OPEN
        # the fast path writes frames itself: only without extensions (permessage-deflate) and with the sync
        # connection's lock and socket at hand; otherwise every frame goes through ws.send
        self.fast = (not ws.protocol.extensions and hasattr(ws, "protocol_mutex") and hasattr(ws, "socket"))

    def send(self, payload: bytes, *, text: bool, event: bool = False) -> None:
        server = self.server
        if server._stopping.is_set():
            raise _Stop
        if server.rate:
            ahead = self.count / server.rate - (time.monotonic() - self.t0)
            if ahead > 0.001:
                self.flush()
                time.sleep(ahead)
        if self.fast:
            frame = _frame(payload, text)
            self.buffer.append(frame)
            self.buffered += len(frame)
            if len(self.buffer) >= self.BATCH or self.buffered >= self.BATCH_BYTES:
                self.flush()
        else:
            self.ws.send(payload, text=text)
        self.count += 1
        with server._lock:
            server.sent += 1
            if event:
                server.events_sent += 1
                garbage = server.garbage_every and server.events_sent % server.garbage_every == 0
            else:
                garbage = False
        self._faults()
        if garbage:
            data, is_text = server._garbage()
            self.send(data, text=is_text)

    def flush(self) -> None:
        if not self.buffer:
            return
        data = b"".join(self.buffer)
        self.buffer.clear()
        self.buffered = 0
        ws = self.ws
        with ws.protocol_mutex:
            if ws.protocol.state is not self.open_state:
                raise _Stop  # the client closed (or is closing) the connection
            ws.socket.sendall(data)

    def _faults(self) -> None:
        server = self.server
        if self.first and server.error_after and self.count == server.error_after:
            self.flush()
            data, is_text = server._error_frame()
            self.ws.send(data, text=is_text)
            with server._lock:
                server.sent += 1
            self.ws.close(1008, "ConsumerTooSlow")
            raise _Stop
        if server.drop_every and self.count % server.drop_every == 0:
            self.flush()
            with server._lock:
                server.dropped += 1
            _shut(self.ws)
            raise _Stop


# --------------------------------------------------------------------------- the image CDN
def block_jpeg(cid: str, side: int) -> bytes:
    """A ``side``×``side`` JPEG of 8×8 random blocks seeded by ``cid``: the same bytes for the same CID and size,
    and images of distinct CIDs far apart in pHash (random luminance per block, a random tint)."""
    from PIL import Image

    seed = hashlib.shake_256(cid.encode()).digest(8 * 8 + 3)
    tint = seed[64:67]
    pixels = bytearray()
    for value in seed[:64]:
        luma = value / 255
        pixels += bytes(int(min(255, 30 + luma * 200 + (t - 128) * 0.2)) for t in tint)
    image = Image.frombytes("RGB", (8, 8), bytes(pixels)).resize((side, side), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


class _ImageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _ImageHTTPServer

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, head: bool) -> None:
        server = self.server
        with server.lock:
            server.hits += 1
            server.paths[self.path] += 1
        parts = urlsplit(self.path).path.split("/")
        # ["", "img", "feed_thumbnail", "plain", did, "cid@jpeg"]
        body, status = b"blueskyserver: no such image\n", 404
        if (len(parts) == 6 and parts[1] == "img" and parts[2] in server.sizes and parts[3] == "plain"
                and parts[4].startswith("did:") and parts[5].endswith("@jpeg")):
            cid = parts[5][: -len("@jpeg")]
            if 20 <= len(cid) <= 200 and cid[0] == "b" and all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in cid):
                body, status = server.image(cid, server.sizes[parts[2]]), 200
        self.send_response(status)
        self.send_header("Content-Type", "image/jpeg" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if status == 200:
            self.send_header("Cache-Control", "public, max-age=604800")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)


class _ImageHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: object, client_address: object) -> None:  # clients that hang up are expected
        pass

    def image(self, cid: str, side: int) -> bytes:
        key = (cid, side)
        with self.lock:
            data = self.cache.get(key)
            if data is not None:
                self.cache.move_to_end(key)
                return data
        data = block_jpeg(cid, side)
        with self.lock:
            self.cache[key] = data
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return data


class ImageServer:
    """Bluesky's image CDN for a crawl on 127.0.0.1 at a free port; a context manager.

    ``url`` is the crawler's ``--cdn`` base (``http://127.0.0.1:PORT/img``); ``hits`` counts every request,
    ``paths`` the requests per path. Images are cached per CID and size (at most ``cache_size``).
    """

    def __init__(self, *, thumbnail: int = 64, fullsize: int = 256, cache_size: int = 4096):
        self._httpd = _ImageHTTPServer(("127.0.0.1", 0), _ImageHandler)
        httpd = self._httpd
        httpd.lock = threading.Lock()
        httpd.hits = 0
        httpd.paths = collections.Counter()
        httpd.sizes = {"feed_thumbnail": thumbnail, "feed_fullsize": fullsize}
        httpd.cache = collections.OrderedDict()
        httpd.cache_size = cache_size
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/img"

    @property
    def hits(self) -> int:
        return self._httpd.hits

    @property
    def paths(self) -> collections.Counter:
        return self._httpd.paths

    def start(self) -> ImageServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="bluesky-cdn", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> ImageServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- script mode
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a Bluesky replay (and an image CDN) until terminated.")
    parser.add_argument("--events", type=int, default=10_000, help="synthetic events (made lazily)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--protocol", default="v1", choices=["v1", "xrpc", "firehose"])
    parser.add_argument("--jsonl", help="replay this file's lines (v1 or xrpc) instead of synthetic events")
    parser.add_argument("--relay-frames", help="replay a capture like relay-frames.bin.zst (protocol firehose)")
    parser.add_argument("--start-us", type=int, default=1_783_175_888_000_000)
    parser.add_argument("--step-us", type=int, default=1_000)
    parser.add_argument("--image-share", type=float, default=0.3)
    parser.add_argument("--delete-share", type=float, default=0.02)
    parser.add_argument("--rate", type=float, default=None, help="frames per second (default: as fast as possible)")
    parser.add_argument("--drop-every", type=int, default=None)
    parser.add_argument("--garbage-every", type=int, default=None)
    parser.add_argument("--refuse-first", type=int, default=0)
    parser.add_argument("--close-at-end", action="store_true")
    parser.add_argument("--images", action="store_true", help="also serve the image CDN (its URL on line 2)")
    args = parser.parse_args(argv)
    if args.protocol == "firehose" or args.relay_frames:
        if not args.relay_frames or args.protocol != "firehose":
            parser.error("the firehose replays --relay-frames, and --relay-frames needs --protocol firehose")
        events: Any = read_relay_frames(args.relay_frames)
    elif args.jsonl:
        with open(args.jsonl, encoding="utf-8") as handle:
            events = [line for line in handle if line.strip()]
    else:
        events = SyntheticStream(args.events, seed=args.seed, start_us=args.start_us, step_us=args.step_us,
                                 image_share=args.image_share, delete_share=args.delete_share,
                                 protocol=args.protocol)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    server = ReplayServer(events, protocol=args.protocol, rate=args.rate, drop_every=args.drop_every,
                          garbage_every=args.garbage_every, refuse_first=args.refuse_first,
                          close_at_end=args.close_at_end).start()
    cdn = ImageServer().start() if args.images else None
    print(server.url, flush=True)
    if cdn is not None:
        print(cdn.url, flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        if cdn is not None:
            cdn.stop()
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
