"""``visent crawl bluesky``: image posts from Bluesky's public network into a crawl directory, for days on end.

The crawl subscribes to a :class:`~visent.crawl.stream.Source` (Jetstream by default, the relay firehose with
``source="firehose"``), keeps the posts that carry images and pass the :class:`~visent.crawl.events.PostFilter`,
and writes them with :class:`~visent.crawl.shards.CrawlWriter`: rotating shards, each committed with the stream
position after it. A crawler killed at any moment and started again with the same command resumes from that
position; what it had written is recognised and dropped, so the crawl equals an undisturbed one. Deletions of
posts already written become tombstones. Memory holds one shard's rows, the authors of the hour and 8 bytes per
post written.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

from visent.core.errors import UsageError
from visent.core.registry import Registry
from visent.crawl.events import DEFAULT_CDN, IMAGE_SIZES, POST, Event, FrameError, PostFilter, image_rows, us_to_iso
from visent.crawl.shards import FORMAT, CrawlWriter, check_options, is_crawl, read_info
from visent.crawl.stream import Connection, Reconnect, Source, frames, jetstream, parse_frame

SOURCES: Registry[Source] = Registry("source")
SOURCES.register("jetstream", "Bluesky's Jetstream: every post as JSON (default; v1 /subscribe or subscribeEvents)")(
    lambda endpoints=None: jetstream(tuple(endpoints)) if endpoints else jetstream())


@SOURCES.register("firehose", "the relay firehose (com.atproto.sync.subscribeRepos): DAG-CBOR commits, libipld")
def _firehose(endpoints: list[str] | None = None) -> Source:
    from visent.crawl.firehose import firehose

    return firehose(tuple(endpoints)) if endpoints else firehose()


def parse_duration(text: str | float | None) -> float | None:
    """``"72h"``, ``"30m"``, ``"45s"``, ``"2d"``, ``"1h30m"`` or a number of seconds → seconds."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*"
                             r"(?:(\d+(?:\.\d+)?)s?)?\s*", text)
        if not parts or not any(parts.groups()):
            raise UsageError(f"duration {text!r} is not one; write it like 72h, 30m, 1h30m, 2d or 45s")
        d, h, m, s = (float(g) if g else 0.0 for g in parts.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    if seconds <= 0:
        raise UsageError("duration must be more than 0")
    return seconds


class _Crawl:
    """The state of one crawl run: the writer, the filter, the counts, the stream position."""

    def __init__(self, writer: CrawlWriter, post_filter: PostFilter, source: Source, *, cdn: str, size: str,
                 target: int | None):
        self.writer = writer
        self.filter = post_filter
        self.source = source
        self.cdn, self.size, self.target = cdn, size, target
        cursor = writer.cursor
        totals = cursor.get("totals") or {}
        self.position: int | None = cursor.get("position")
        self.posts = int(totals.get("posts", 0))
        self.images = int(totals.get("images", 0))
        self.tombstones = int(totals.get("tombstones", 0))
        self.first_us: int | None = cursor.get("first_us")
        self.last_us: int | None = cursor.get("last_us")
        self.filter.restore(cursor.get("filter") or {})
        self.counts: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()
        self.notices: collections.Counter[str] = collections.Counter()
        self.gaps: list[str] = []
        self.last_malformed = ""

    def resume_cursor(self) -> int | None:
        return None if self.position is None else self.source.resume(int(self.position))

    def done(self) -> bool:
        return self.target is not None and self.posts >= self.target

    def handle(self, event: Event) -> None:
        """Take one event into the crawl (or count why not)."""
        self.counts["events"] += 1
        if event.kind == "error":
            self.notices[event.name or "error"] += 1
            raise Reconnect(f"{event.name}: {event.message}".strip(": "))
        if event.kind == "info":
            self.notices[event.name or "info"] += 1
            if event.name == "OutdatedCursor":
                self.gaps.append(f"the server resumed later than the cursor asked ({event.message or 'no detail'})")
            return
        if event.time_us is not None:
            self.first_us = event.time_us if self.first_us is None else min(self.first_us, event.time_us)
            self.last_us = event.time_us if self.last_us is None else max(self.last_us, event.time_us)
        if event.kind == "commit" and event.collection == POST:
            self._post(event)
        if event.position is not None:
            self.position = event.position if self.position is None else max(self.position, event.position)

    def _post(self, event: Event) -> None:
        uri = event.uri
        if event.operation == "delete":
            outcome = self.writer.delete(uri, event.time_us)
            self.counts[f"delete_{outcome}"] += 1
            if outcome == "tombstoned":
                self.tombstones += 1
            return
        if event.operation != "create":
            self.counts["updates"] += 1
            return
        self.counts["posts_seen"] += 1
        if self.writer.has_post(uri):
            self.counts["replayed"] += 1
            return
        reason = self.filter.reason(event)
        rows = image_rows(event, cdn=self.cdn, size=self.size) if reason is None else []
        if reason is None and not rows:
            reason = "malformed image reference"
        if reason is not None:
            self.dropped[reason] += 1
            return
        self.filter.count(event)
        self.writer.add_post(uri, rows)
        self.posts += 1
        self.images += len(rows)

    def commit(self) -> bool:
        extra = {"totals": {"posts": self.posts, "images": self.images, "tombstones": self.tombstones},
                 "filter": self.filter.state(), "first_us": self.first_us, "last_us": self.last_us,
                 "time": us_to_iso(self.last_us)}
        return self.writer.commit(self.position, extra)


class _Interrupts:
    """Ctrl-C and SIGTERM stop the crawl as KeyboardInterrupt, but never inside :meth:`held`: a post is written
    and counted whole, so the rows committed on the way out are the rows the cursor's totals count. Installed
    only in the main thread (where Python delivers signals); elsewhere it holds nothing back."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.active = threading.current_thread() is threading.main_thread()
        self.holding = False
        self.pending = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "_Interrupts":
        if self.active:
            self.previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: object) -> None:
        if self.holding:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self):
        """Signals that arrive inside are acted on at its end."""
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
            if self.pending:
                self.pending = False
                raise KeyboardInterrupt


def crawl_bluesky(out: str | Path, *, source: str = "jetstream", endpoints: list[str] | None = None,
                  posts: int | None = None, duration: str | float | None = None, langs: frozenset[str] = frozenset(),
                  replies: bool = True, per_author_hour: int = 20, min_words: int = 3, cdn: str = DEFAULT_CDN,
                  image_size: str = "thumbnail", keep_labelled: bool = False, shard_rows: int = 5_000,
                  shard_seconds: float = 60.0, cursor: int | None = None, idle_timeout: float = 60.0,
                  backoff: float = 0.5, max_backoff: float = 60.0,
                  on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Crawl image posts from Bluesky into the crawl directory ``out`` until ``posts`` posts are kept (counting
    what an earlier run of the same crawl kept), ``duration`` has passed (seconds or ``"72h"``), or Ctrl-C/SIGTERM;
    returns the counts. Running the same command on the same folder resumes the crawl from its cursor.

    ``langs`` keeps posts in these languages (primary subtags of the post's ``langs``); ``replies`` False leaves
    replies out; ``min_words`` leaves out posts with fewer words; ``per_author_hour`` caps the posts kept from one
    author per hour (0: no cap); posts with an adult self-label are left out unless ``keep_labelled``. Images are
    named by their ``cdn`` address at ``image_size`` ("thumbnail" or "fullsize"). A shard is committed every
    ``shard_rows`` rows or ``shard_seconds`` seconds. ``cursor`` starts a new crawl at that stream position (a
    resumed crawl uses its own). ``on_progress`` is called about twice a second with the running counts.
    """
    if image_size not in IMAGE_SIZES:
        raise UsageError(f"image size {image_size!r} is not one; choose one of: {', '.join(IMAGE_SIZES)}")
    if posts is not None and posts < 1:
        raise UsageError("posts must be >= 1")
    if shard_rows < 1 or shard_seconds <= 0 or per_author_hour < 0 or min_words < 0 or idle_timeout <= 0:
        raise UsageError("shard rows, shard seconds and the idle timeout must be > 0; per-author cap and minimum "
                         "words >= 0")
    seconds = parse_duration(duration)
    try:
        stream = SOURCES.create(source, endpoints=endpoints)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} is a file; crawl into a folder")
    if root.is_dir() and any(root.iterdir()) and not is_crawl(root):
        raise UsageError(f"{root} is a folder that is not a visent crawl; crawl into a new or empty folder")
    post_filter = PostFilter(langs=frozenset(langs), replies=replies, min_words=min_words,
                             per_author_hour=per_author_hour, keep_labelled=keep_labelled)
    options = {**post_filter.options(), "cdn": cdn, "image_size": image_size}
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    info = read_info(root) if is_crawl(root) else {"visent_crawl": FORMAT, "service": "bluesky", "started_at": now}
    check_options(root, info, options)
    if info.get("source", source) != source:
        raise UsageError(f"{root} was crawled from the {info['source']}; its cursor means nothing to the {source}: "
                         "continue it with the same --source, or crawl into a new folder")
    info.update({"source": source, "endpoints": list(stream.endpoints), "options": options, "updated_at": now})
    root.mkdir(parents=True, exist_ok=True)

    with CrawlWriter(root, info, shard_rows=shard_rows) as writer, _Interrupts() as interrupts:
        crawl = _Crawl(writer, post_filter, stream, cdn=cdn, size=image_size, target=posts)
        if crawl.position is None and cursor is not None:
            crawl.position = cursor
            start_cursor: int | None = cursor
        else:
            start_cursor = crawl.resume_cursor()
        connection = Connection()
        started = time.monotonic()
        deadline = None if seconds is None else started + seconds
        last_commit = last_report = started
        stopped_by = "posts" if crawl.done() else ""
        gen = frames(stream, lambda: start_cursor if crawl.position is None else crawl.resume_cursor(),
                     state=connection, idle_timeout=idle_timeout, backoff=backoff, max_backoff=max_backoff,
                     deadline=deadline)
        drop: Reconnect | None = None  # a server error frame: the connection is dropped and made again
        try:
            while not stopped_by:
                try:
                    frame = gen.throw(drop) if drop is not None else next(gen)
                except StopIteration:
                    stopped_by = "duration"
                    break
                drop = None
                try:
                    events = parse_frame(stream, frame)
                except FrameError as exc:
                    crawl.counts["malformed"] += 1
                    crawl.last_malformed = str(exc)
                    continue
                try:
                    with interrupts.held():  # a post half taken in would be committed uncounted
                        for event in events:
                            crawl.handle(event)
                except Reconnect as exc:
                    drop = exc
                    continue
                if crawl.done():
                    stopped_by = "posts"
                    break
                now_s = time.monotonic()
                if writer.full() or now_s - last_commit >= shard_seconds:
                    with interrupts.held():
                        crawl.commit()
                    last_commit = now_s
                if deadline is not None and now_s >= deadline:
                    stopped_by = "duration"
                if on_progress is not None and now_s - last_report >= 0.5:
                    last_report = now_s
                    on_progress(_counts(crawl, connection, now_s - started, writer))
        except KeyboardInterrupt:
            stopped_by = "interrupted"
        finally:
            interrupts.holding = True  # stopping already: a second Ctrl-C does not cut the last commit short
            crawl.commit()  # first: closing the connection may wait on the server
            gen.close()
            counts = _counts(crawl, connection, time.monotonic() - started, writer)
            counts["stopped_by"] = stopped_by or "interrupted"
            info.update({"first_event": us_to_iso(crawl.first_us), "last_event": us_to_iso(crawl.last_us),
                         "totals": {"posts": crawl.posts, "images": crawl.images, "tombstones": crawl.tombstones,
                                    "shards": writer.shard}})
            if crawl.gaps:
                info["gaps"] = (info.get("gaps") or []) + crawl.gaps[:100]
            writer.update_info(info)
    return counts


def _span(seconds: float) -> str:
    """A time span as people read it: 0.4 s, 12 s, 5.2 min, 3.1 h, 154 days."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _counts(crawl: _Crawl, connection: Connection, elapsed: float, writer: CrawlWriter) -> dict[str, Any]:
    c = crawl.counts
    lag = None if crawl.last_us is None else max(0.0, time.time() - crawl.last_us / 1e6)
    deleted = {k.removeprefix("delete_"): v for k, v in c.items() if k.startswith("delete_")}
    return {
        "events": c["events"],
        "posts_seen": c["posts_seen"],
        "posts": crawl.posts,
        "images": crawl.images,
        "dropped": dict(crawl.dropped.most_common()),
        "replayed": c["replayed"],
        "deleted": deleted,
        "tombstones": crawl.tombstones,
        "malformed": c["malformed"],
        "last_malformed": crawl.last_malformed,
        "reconnects": max(0, connection.connects - 1),
        "failures": dict(connection.failures),
        "notices": dict(crawl.notices),
        "shards": writer.shard,
        "cursor": crawl.position,
        "first_event": us_to_iso(crawl.first_us),
        "last_event": us_to_iso(crawl.last_us),
        "lag": None if lag is None else _span(lag),
        "events_per_s": round(c["events"] / elapsed, 1) if elapsed > 0 else None,
    }
