"""The dataset store: a directory of Parquet tables plus content-addressed image files.

Layout of a dataset directory::

    manifest.json            stages run, their parameters, counts and status
    posts.parquet            ingest: one row per post (id, text, image hash, source, status, reason)
    human_labels.parquet     labels found in the source; read by ``evaluate`` only, never by training
    teach.parquet            teacher probabilities per post
    clean.parquet            keep/drop decision and reason per post
    images/ab/<sha256>.<ext> image files named by the SHA-256 of their bytes
    work/<stage>/part-*.parquet   checkpoints of an unfinished stage (resume from here)

Every write goes to a temporary file in the same directory and is moved into place with
``os.replace``, so a reader never sees half a file and an interrupted run leaves the last good
state behind. A stage writes while it holds the dataset's writer lock (:meth:`Dataset.writing`, an OS lock on
``.writer.lock``): a second process that would write the same dataset is refused at once, naming the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterator, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from visent.core.errors import VisentError

STAGES: tuple[str, ...] = ("ingest", "teach", "clean")
FORMAT_VERSION = 1


WRITER_LOCK = ".writer.lock"  # in a dataset directory: held by the process writing it (Dataset.writing)
_WRITING: dict[str, list[Any]] = {}  # resolved dataset root -> [lock file, depth], for this process's own writers


class DatasetError(VisentError):
    """A dataset directory is missing, damaged or in the wrong state for the asked stage."""


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; finished files get the usual permissions.
FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; it replaces ``path`` only when the block succeeds."""
    with _atomic_target(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with _atomic_target(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_table(path: Path, table: pa.Table) -> None:
    with _atomic_target(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Checkpoint:
    """Resumable output of one stage: rows are appended in parts, keyed by a column.

    A stage asks :meth:`done_keys` for the keys finished by an earlier, interrupted run, writes
    each new batch with :meth:`write` (one atomic part file per batch), reads the parts back with
    :meth:`read` to write the stage's table, and the dataset clears them when the stage finishes.
    """

    def __init__(self, directory: Path, key: str = "post_id"):
        self.directory = Path(directory)
        self.key = key
        self.directory.mkdir(parents=True, exist_ok=True)

    def _parts(self) -> list[Path]:
        return sorted(self.directory.glob("part-*.parquet"))

    def done_keys(self) -> set[str]:
        keys: set[str] = set()
        for part in self._parts():
            keys.update(pq.read_table(part, columns=[self.key]).column(self.key).to_pylist())
        return keys

    def write(self, rows: pa.Table | list[dict[str, Any]], schema: pa.Schema | None = None) -> None:
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=schema)
        if table.num_rows == 0:
            return
        index = len(self._parts())
        atomic_write_table(self.directory / f"part-{index:06d}.parquet", table)

    def read(self, schema: pa.Schema | None = None) -> pa.Table:
        parts = [pq.read_table(p) for p in self._parts()]
        if not parts:
            if schema is None:
                raise DatasetError(f"checkpoint {self.directory} has no rows and no schema was given")
            return schema.empty_table()
        table = pa.concat_tables(parts, promote_options="default")
        return table.cast(schema) if schema is not None else table

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class Dataset:
    """A visent dataset directory. Open with ``Dataset(path)``; ``create=True`` makes a new one."""

    @classmethod
    def of(cls, dataset: "Dataset | str | os.PathLike[str]") -> "Dataset":
        """``dataset`` itself when it is a Dataset, else the dataset at that path."""
        return dataset if isinstance(dataset, Dataset) else cls(dataset)

    def __init__(self, root: str | os.PathLike[str], *, create: bool = False):
        self.root = Path(root)
        manifest = self.root / "manifest.json"
        if not manifest.exists():
            if not create:
                raise DatasetError(
                    f"{self.root} is not a visent dataset (no manifest.json); "
                    "create one with `visent ingest SOURCE --out DIR`"
                )
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(manifest, {"visent_dataset": FORMAT_VERSION, "stages": {}})
        self._manifest = json.loads(manifest.read_text(encoding="utf-8"))
        if self._manifest.get("visent_dataset") != FORMAT_VERSION:
            raise DatasetError(f"{manifest}: unsupported dataset format {self._manifest.get('visent_dataset')!r}")

    # ----------------------------------------------------------------- manifest and stages
    @property
    def manifest(self) -> dict[str, Any]:
        return self._manifest

    @contextlib.contextmanager
    def writing(self, stage: str) -> Iterator["Dataset"]:
        """Hold the dataset's writer lock while ``stage`` writes: an OS lock (``flock``) on ``.writer.lock`` in the
        dataset, released when the block ends or the process ends, however it ends. A second process that asks for
        it is refused at once with a :class:`DatasetBusy` naming the command and process that hold it (two writers
        of one dataset would mix their tables). The same process may nest it (``build`` runs the stages in a row).
        On entry the manifest is read again: it is the holder's now."""
        key = str(self.root.resolve())
        if key in _WRITING:
            _WRITING[key][1] += 1
            try:
                yield self
            finally:
                _WRITING[key][1] -= 1
            return
        try:
            handle = open(self.root / WRITER_LOCK, "a+", encoding="utf-8")
        except OSError as exc:
            raise DatasetError(f"{self.root / WRITER_LOCK}: cannot open the dataset's writer lock ({exc.strerror}); "
                               "the dataset directory must be writable") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if not isinstance(exc, BlockingIOError):  # no locks on this filesystem, not another writer
                handle.close()
                raise DatasetError(f"{self.root}: cannot lock the dataset for writing ({exc.strerror}); put it on a "
                                   "filesystem with file locks") from None
            handle.seek(0)
            holder = _holder(handle.read())
            handle.close()
            raise DatasetBusy(f"{self.root}: {holder} is writing this dataset; wait for it to finish (or stop it), "
                              f"then run `visent {stage}` again") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "command": _command(), "stage": stage,
                                     "since": _now()}) + "\n")
            handle.flush()
            _WRITING[key] = [handle, 1]
            self._manifest = json.loads((self.root / "manifest.json").read_text(encoding="utf-8"))
            yield self
        finally:
            _WRITING.pop(key, None)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def _save_manifest(self) -> None:
        atomic_write_json(self.root / "manifest.json", self._manifest)

    def stage_info(self, stage: str) -> dict[str, Any] | None:
        return self._manifest["stages"].get(stage)

    def stage_done(self, stage: str, params: dict[str, Any] | None = None) -> bool:
        """True when ``stage`` finished with these parameters (so running it again is a no-op)."""
        info = self.stage_info(stage)
        if not info or info.get("status") != "done":
            return False
        return params is None or _canonical(info.get("params", {})) == _canonical(params)

    def begin_stage(self, stage: str, params: dict[str, Any]) -> Checkpoint:
        """Start (or resume) ``stage``. Returns its checkpoint.

        A run with other parameters than the recorded ones starts over, and the later stages,
        which were built on the old output, are marked stale.
        """
        info = self.stage_info(stage)
        checkpoint = Checkpoint(self.root / "work" / stage)
        if info is not None and _canonical(info.get("params", {})) != _canonical(params):
            checkpoint.clear()
            checkpoint = Checkpoint(self.root / "work" / stage)
        self._manifest["stages"][stage] = {
            "status": "running",
            "params": params,
            "started_at": _now(),
        }
        self._invalidate_after(stage)
        self._save_manifest()
        return checkpoint

    def finish_stage(self, stage: str, params: dict[str, Any], counts: dict[str, Any], **record: Any) -> None:
        """Mark ``stage`` done with its parameters and counts; ``record`` adds what later stages read from it
        (e.g. the teach stage's ``thresholds``) without being a parameter of this stage."""
        self._manifest["stages"][stage] = {
            "status": "done",
            "params": params,
            "counts": counts,
            **record,
            "started_at": (self.stage_info(stage) or {}).get("started_at", _now()),
            "finished_at": _now(),
        }
        self._save_manifest()
        Checkpoint(self.root / "work" / stage).clear()

    def record_stage(self, stage: str, **record: Any) -> None:
        """Add ``record`` to a finished stage's entry (what :meth:`finish_stage` would have recorded), leaving its
        parameters, counts and times as they are."""
        info = self.stage_info(stage)
        if not info or info.get("status") != "done":
            raise DatasetError(f"{self.root}: stage '{stage}' has not finished; nothing to record")
        info.update(record)
        self._save_manifest()

    def require_stage(self, stage: str) -> None:
        if not self.stage_done(stage):
            hint = {"ingest": "visent ingest SOURCE --out DIR", "teach": "visent teach DIR",
                    "clean": "visent clean DIR"}.get(stage, f"visent {stage} DIR")
            raise DatasetError(f"{self.root}: stage '{stage}' has not finished; run `{hint}` first")

    def _invalidate_after(self, stage: str) -> None:
        if stage not in STAGES:
            return
        for later in STAGES[STAGES.index(stage) + 1:]:
            info = self._manifest["stages"].get(later)
            if info is not None:
                info["status"] = "stale"

    # ----------------------------------------------------------------- tables
    def table_path(self, name: str) -> Path:
        return self.root / f"{name}.parquet"

    def has_table(self, name: str) -> bool:
        return self.table_path(name).exists()

    def write_table(self, name: str, table: pa.Table | list[dict[str, Any]], schema: pa.Schema | None = None) -> None:
        if not isinstance(table, pa.Table):
            table = pa.Table.from_pylist(table, schema=schema)
        atomic_write_table(self.table_path(name), table)

    def read_table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        path = self.table_path(name)
        if not path.exists():
            raise DatasetError(f"{path} is missing; run the stage that writes '{name}' first")
        return pq.read_table(path, columns=columns)

    def posts(self) -> pa.Table:
        """Posts joined with the teacher and cleaning outputs that exist so far (no human labels)."""
        table = self.read_table("posts")
        for name in ("teach", "clean"):
            if self.has_table(name) and self.stage_done(name):
                other = self.read_table(name)
                table = table.join(other, keys="post_id", join_type="left outer", use_threads=False)
        return table

    # ----------------------------------------------------------------- images
    def put_image(self, data: bytes, ext: str) -> tuple[str, str]:
        """Store image bytes under their SHA-256; returns (sha256, path relative to the root)."""
        digest = sha256_bytes(data)
        ext = ext.lower().lstrip(".") or "bin"
        rel = f"images/{digest[:2]}/{digest}.{ext}"
        path = self.root / rel
        if not path.exists():
            atomic_write_bytes(path, data)
        return digest, rel

    def image_path(self, rel: str) -> Path:
        return self.root / rel


class DatasetBusy(DatasetError):
    """Another process holds the dataset's writer lock."""


_Stage = TypeVar("_Stage", bound=Callable[..., Any])


def writes(stage: str) -> Callable[[_Stage], _Stage]:
    """Run the decorated stage (its first argument: the dataset, a :class:`Dataset` or its path) holding the
    dataset's writer lock (:meth:`Dataset.writing`); a path that is not a dataset goes to the stage as it is, which
    says why."""
    def wrap(func: _Stage) -> _Stage:
        @functools.wraps(func)
        def run(dataset: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                ds = Dataset.of(dataset)
            except DatasetError:
                return func(dataset, *args, **kwargs)
            with ds.writing(stage):
                return func(ds, *args, **kwargs)
        return run  # type: ignore[return-value]
    return wrap


def _command() -> str:
    """This process's command line, as a user would recognise it (``visent teach runs/ds``)."""
    args = list(sys.argv)
    if args and Path(args[0]).name in ("__main__.py", "visent"):
        args[0] = "visent"
    return " ".join(args) or "python"


def _holder(record: str) -> str:
    """Who holds a writer lock, from what the holder wrote in the lock file."""
    try:
        info = json.loads(record.strip().splitlines()[-1])
        return f"`{info['command']}` (process {info['pid']}, {info['stage']} since {info['since']})"
    except (ValueError, KeyError, IndexError, TypeError):
        return "another process"


def _canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
