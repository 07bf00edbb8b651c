"""Ingesting a crawl directory written by ``visent crawl`` (layout: :mod:`visent.crawl.shards`).

:class:`CrawlSource` reads the committed shards of a crawl, one :class:`RawPost` per row, and leaves out every post
its author deleted (the crawl's tombstones): such a post never reaches the dataset. ``CrawlSource.left_out`` counts
the rows it left out.

A crawl grows: its shards are written whole, never changed, and committed in order. :func:`plan` compares a crawl
with what the dataset's last ingest of it recorded (the shards and tombstone files it read, their sizes and
SHA-256) and tells the ingest stage what to do:

- ``noop``: nothing new was committed;
- ``incremental``: read only the new shards and the new tombstone files; the rows of the earlier ingest go first
  into the stage's checkpoint (:meth:`Plan.prepare`), less the posts the new tombstones name, so that the
  checkpoint holds the whole table in the crawl's order, as a run from scratch would, and a run killed half way
  resumes from it (``work/ingest/crawl-plan.json`` says what it was built on);
- ``resume``: an incremental run that was interrupted, continued;
- ``full``: read everything (a first ingest, other options, or a crawl whose ingested shards changed or vanished:
  ``Plan.reason`` says which).

A tombstone names a post written before it (the crawler never tombstones a post it did not write, and never
writes a post twice), so the new rows of a crawl only need the new tombstones, and the old rows only the new
ones too: the old tombstones were honoured when they were read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from visent.core.store import Checkpoint, Dataset, atomic_write_json, file_sha256
from visent.crawl.shards import (post_uri, read_tombstones)
from visent.ingest.readers.bluesky_crawl import READER, CrawlSource, author, read_crawl
from visent.ingest.readers.records import RawPost

__all__ = ["READER", "CrawlSource", "Plan", "author", "file_record", "plan", "read_crawl"]
PLAN_FILE = "crawl-plan.json"
# the counts an ingest of a crawl adds, in this order (after the stage's own)
COUNTS = ("shards", "new_shards", "new_tombstone_files", "deleted_by_author", "newly_deleted", "authors",
          "full_reingest")
_RUN_COUNTS = ("newly_deleted", "full_reingest")  # what one run did: not repeated by a no-op
_SHARD_NUMBER = re.compile(r"-(\d{6,})\.jsonl$")


# --------------------------------------------------------------------------- what an ingest must do
def file_record(path: Path) -> dict[str, Any]:
    """Name, size, modification time and SHA-256 of a crawl file: how a later ingest tells it is unchanged."""
    stat = path.stat()
    return {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_sha256(path)}


def _changed(root: Path, record: dict[str, Any], committed: set[str]) -> str:
    """Why the recorded file is no longer the one ingested ("" when it is)."""
    name = str(record.get("name"))
    path = root / name
    if name not in committed or not path.is_file():
        return f"{name} is gone" if not path.exists() else f"{name} is no longer committed"
    stat = path.stat()
    if stat.st_size != record.get("size"):
        return f"{name} changed"
    if stat.st_mtime_ns != record.get("mtime_ns") and file_record(path)["sha256"] != record.get("sha256"):
        return f"{name} changed"
    return ""


def _number(name: str) -> int:
    match = _SHARD_NUMBER.search(name)
    return int(match.group(1)) if match else 0


@dataclass
class Plan:
    """What one ingest of a crawl does (see the module's docstring). ``read``: the shards it reads; ``honour``: the
    tombstone files whose posts it leaves out; ``base``: for ``incremental``/``resume``, what the dataset held
    before (``shards``, ``tombstones``: file records; ``deleted``: rows left out by then; ``rows``: rows kept)."""

    source: CrawlSource
    mode: str
    read: list[Path]
    honour: list[Path]
    base: dict[str, Any] | None = None
    reason: str = ""                 # why a full run reads everything again
    clear: bool = False              # whether the checkpoint left in work/ingest is stale
    counts: dict[str, Any] = field(default_factory=dict)  # a no-op's counts
    seen: dict[str, str] = field(default_factory=dict)    # ids of the rows kept from before -> their source

    def posts(self, ids: set[str] | None) -> Iterator[RawPost]:
        """The posts this run reads, in crawl order."""
        self.source.deleted = read_tombstones(self.honour)
        return self.source.posts(self.read, ids)

    def prepare(self, dataset: Dataset, checkpoint_dir: Path, schema: pa.Schema) -> None:
        """Ready the stage's checkpoint before the stage begins: clear what is stale, and for an incremental run
        write the rows of the earlier ingest as its first part, then the plan (the part is valid once the plan
        is written; until then a rerun plans again from the finished stage)."""
        if self.clear:
            Checkpoint(checkpoint_dir).clear()
        if self.mode == "incremental":
            old = dataset.read_table("posts")
            base = pa.table({name: old.column(name) if name in old.column_names else pa.nulls(old.num_rows, type)
                             for name, type in zip(schema.names, schema.types)}, schema=schema)
            Checkpoint(checkpoint_dir).write(base)
            assert self.base is not None
            self.base["rows"] = base.num_rows
            atomic_write_json(checkpoint_dir / PLAN_FILE, self.base)
        if self.mode in ("incremental", "resume") and self.base and self.base.get("rows"):
            part = pq.read_table(checkpoint_dir / "part-000000.parquet", columns=["post_id", "source"])
            self.seen = dict(zip(part.column("post_id").to_pylist(), part.column("source").to_pylist()))

    def finish(self, table: pa.Table, previous: pa.Table | None = None
               ) -> tuple[pa.Table, dict[str, Any], dict[str, Any], list[str]]:
        """``(table, counts, record, images)``: the stage's checkpoint table less the posts deleted since its rows
        were read, the crawl's counts, what the manifest records of the crawl, and the image files of the posts
        left out (of ``table``, and of ``previous``, the posts table a full run replaces), to remove unless a row
        kept has the same image."""
        ids = table.column("post_id").to_pylist()
        gone = [post_uri(i) in self.source.deleted for i in ids]
        base = self.base if self.mode != "full" and self.base else {}
        newly = sum(gone[:int(base.get("rows", 0))])
        images = [f for f, g in zip(table.column("image_file").to_pylist(), gone) if g and f]
        if previous is not None and self.mode == "full":
            images += [f for i, f in zip(previous.column("post_id").to_pylist(),
                                         previous.column("image_file").to_pylist())
                       if f and isinstance(i, str) and post_uri(i) in self.source.deleted]
        if any(gone):
            table = table.filter(pa.array([not g for g in gone], type=pa.bool_()))
        deleted = self.source.left_out + (int(base.get("deleted", 0)) + newly if base else 0)
        authors = len({a for a in map(author, table.column("post_id").to_pylist()) if a})
        counts: dict[str, Any] = {"shards": len(self.source.shards), "new_shards": len(self.read),
                                  "new_tombstone_files": len(self.honour), "deleted_by_author": deleted}
        if self.mode != "full":
            counts["newly_deleted"] = newly
        counts["authors"] = authors
        if self.reason:
            counts["full_reingest"] = self.reason
        before = {r["name"]: r for r in (self.base or {}).get("shards", []) + (self.base or {}).get("tombstones", [])}
        record = {
            **self.source.summary(),
            "posts": len({post_uri(i) for i in table.column("post_id").to_pylist() if i.startswith("at://")}),
            "authors": authors,
            "deleted_by_author": deleted,
            "shards": [before.get(p.name) or file_record(p) for p in self.source.shards],
            "tombstones": [before.get(p.name) or file_record(p) for p in self.source.tombstones],
            "read": {"shards": [_brief(p) for p in self.read], "tombstones": [_brief(p) for p in self.honour]},
        }
        return table, counts, record, images


def _brief(path: Path) -> dict[str, Any]:
    return {"name": path.name, "size": path.stat().st_size}


def plan(out: str | Path, source: Path, params: dict[str, Any], stage: str, *, limit: int | None) -> Plan:
    """What an ingest of the crawl at ``source`` into the dataset at ``out`` with ``params`` must do."""
    crawl = CrawlSource(source)
    full = Plan(crawl, "full", crawl.shards, crawl.tombstones)
    if not (Path(out) / "manifest.json").exists():
        return full
    dataset = Dataset(out)
    info = dataset.stage_info(stage)
    if info is None or not _same(info.get("params"), params):
        return full  # begin_stage starts over
    work = dataset.root / "work" / stage
    if info.get("status") == "done":
        if not dataset.has_table("posts") or not dataset.stage_done(stage, info.get("params")):  # damaged: it says so
            return Plan(crawl, "full", crawl.shards, crawl.tombstones, clear=True)
        recorded = info.get("crawl") or {}
        if not isinstance(recorded.get("shards"), list) or not isinstance(recorded.get("tombstones"), list):
            return Plan(crawl, "full", crawl.shards, crawl.tombstones, clear=True,
                        reason="the last ingest recorded no crawl files")
        mode = "incremental"
        base = {"shards": recorded["shards"], "tombstones": recorded["tombstones"],
                "deleted": int((info.get("counts") or {}).get("deleted_by_author", 0))}
    elif (work / PLAN_FILE).is_file():
        mode = "resume"
        try:
            base = json.loads((work / PLAN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            base = None
        if not isinstance(base, dict) or (base.get("rows") and Checkpoint(work).damage(work / "part-000000.parquet")):
            return Plan(crawl, "full", crawl.shards, crawl.tombstones, clear=True,
                        reason="the checkpoint of an interrupted ingest is damaged")
    else:
        return full  # an interrupted full run: resume it
    reason = _damage(crawl, base)
    if reason:
        return Plan(crawl, "full", crawl.shards, crawl.tombstones, clear=True,
                    reason=f"{reason} since the last ingest: read again from the start")
    names = {r["name"] for r in base["shards"] + base["tombstones"]}
    new_shards = [p for p in crawl.shards if p.name not in names]
    new_tombstones = [p for p in crawl.tombstones if p.name not in names]
    if mode == "incremental" and not new_shards and not new_tombstones:
        counts = {**(info.get("counts") or {}), "new_shards": 0, "new_tombstone_files": 0}
        for key in _RUN_COUNTS:
            counts.pop(key, None)
        return Plan(crawl, "noop", [], [], counts=counts)
    if limit is not None:
        return Plan(crawl, "full", crawl.shards, crawl.tombstones, clear=mode == "incremental",
                    reason="the crawl grew and a limit is set: the first posts are taken again")
    return Plan(crawl, mode, new_shards, new_tombstones, base=base, clear=mode == "incremental")


def _damage(crawl: CrawlSource, base: dict[str, Any]) -> str:
    """Why the files an earlier ingest read no longer are what it read ("" when they are)."""
    if not isinstance(base.get("shards"), list) or not isinstance(base.get("tombstones"), list):
        return "the record of the files ingested is damaged"
    for records, files in ((base["shards"], crawl.shards), (base["tombstones"], crawl.tombstones)):
        committed = {p.name for p in files}
        for record in records:
            problem = _changed(crawl.root, record, committed) if isinstance(record, dict) else "a damaged record"
            if problem:
                return problem
    last = max((_number(str(r["name"])) for r in base["shards"]), default=0)
    recorded = {r["name"] for r in base["shards"]}
    inserted = [p.name for p in crawl.shards if p.name not in recorded and _number(p.name) <= last]
    return f"{inserted[0]} appeared among the shards ingested" if inserted else ""


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def without_images(dataset: Dataset, files: Iterable[str], table: pa.Table) -> int:
    """Remove the image files ``files`` (of posts left out) that no row of ``table`` has; returns how many."""
    kept = set(pc.unique(table.column("image_file")).to_pylist()) if table.num_rows else set()
    removed = 0
    for rel in dict.fromkeys(files):
        if rel in kept or not rel.startswith("images/"):
            continue
        path = dataset.image_path(rel)
        if path.is_file():
            path.unlink()
            removed += 1
    return removed
