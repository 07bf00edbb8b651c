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
state behind. A write that fails for want of space (or of permission) raises a
:class:`~visent.core.errors.WriteError` naming the file, the space it needs and the space left.

What is written is checked when it is read: the manifest records the size, row count and SHA-256 of each table
(``tables``), a checkpoint part has them beside it (``part-*.parquet.json``). A finished stage whose table is
damaged runs again when asked to (it says so); a stage that reads the damaged table of another stops with a
:class:`DamagedTable` naming the file and the command that writes it again; a damaged checkpoint part is dropped
(with a warning) and its rows are computed again. A table of a dataset written before the manifest recorded them
is checked for a readable footer only. A stage writes while it holds the dataset's writer lock (:meth:`Dataset.writing`, an OS lock on
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
import warnings
from pathlib import Path
from typing import IO, Any, Callable, Iterator, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from visent.core.errors import VisentError, write_error

STAGES: tuple[str, ...] = ("ingest", "teach", "clean")
FORMAT_VERSION = 1
STAGE_TABLES: dict[str, tuple[str, ...]] = {"ingest": ("posts", "human_labels"), "teach": ("teach",),
                                            "clean": ("clean",)}  # the tables each stage writes


WRITER_LOCK = ".writer.lock"  # in a dataset directory: held by the process writing it (Dataset.writing)
_WRITING: dict[str, list[Any]] = {}  # resolved dataset root -> [lock file, depth], for this process's own writers


class DatasetError(VisentError):
    """A dataset directory is missing, damaged or in the wrong state for the asked stage."""


class DamagedTable(DatasetError, ValueError):
    """A table of a dataset is not the one its stage wrote (truncated, altered, unreadable): the message names the
    file and the command that writes it again. Also a ``ValueError``, as the reader's error was."""


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; finished files get the usual permissions.
FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def _atomic_target(path: Path, needed: int | None = None) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed (``path``
    stays as it was). A write that fails for want of space or permission raises a
    :class:`~visent.core.errors.WriteError` naming ``path`` (``needed``: the bytes it takes, when known)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        error = write_error(exc, path, needed)
        if error is None or error is exc:
            raise
        raise error from exc


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; it replaces ``path`` only when the block succeeds."""
    with _atomic_target(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with _atomic_target(path, len(data)) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_table(path: Path, table: pa.Table) -> None:
    with _atomic_target(path, table.nbytes) as tmp:  # the in-memory size: more than the file takes
        pq.write_table(table, tmp, compression="zstd")


def file_record(path: str | os.PathLike[str], rows: int) -> dict[str, Any]:
    """What is recorded of a table file just written, to know it again when it is read: size, rows, SHA-256."""
    return {"size": os.stat(path).st_size, "rows": int(rows), "sha256": file_sha256(path)}


def table_damage(path: str | os.PathLike[str], record: dict[str, Any] | None) -> str:
    """Why the Parquet file at ``path`` is not the one ``record`` (:func:`file_record`) describes ("" when it is);
    without a record, why its footer cannot be read. A missing file is damaged too."""
    try:
        size = os.stat(path).st_size
        if isinstance(record, dict) and isinstance(record.get("size"), int) and size != record["size"]:
            return f"{size:,} bytes where {record['size']:,} were written"
        rows = pq.read_metadata(path).num_rows
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError, pa.ArrowException) as exc:
        return f"unreadable: {_brief(exc)}"
    if not isinstance(record, dict):
        return ""
    if isinstance(record.get("rows"), int) and rows != record["rows"]:
        return f"{rows:,} rows where {record['rows']:,} were written"
    if isinstance(record.get("sha256"), str) and file_sha256(path) != record["sha256"]:
        return "its SHA-256 is not that of the file written"
    return ""


def _brief(exc: BaseException) -> str:
    """An exception's message on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _stamp(path: Path) -> tuple[str, int, int, int] | None:
    """What identifies one state of a file (a file verified in this state need not be verified again)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino


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

    Each part has its :func:`file_record` beside it (``part-000000.parquet.json``). A part that is not the one
    written is dropped with a warning naming it, and so are the parts after it (the rows stay in the order the
    stage made them): :meth:`done_keys` leaves their keys out, so the stage computes their rows again.
    """

    def __init__(self, directory: Path, key: str = "post_id"):
        self.directory = Path(directory)
        self.key = key
        self.directory.mkdir(parents=True, exist_ok=True)
        self._verified: set[tuple[str, int, int, int]] = set()

    def _parts(self) -> list[Path]:
        return sorted(self.directory.glob("part-*.parquet"))

    @staticmethod
    def _record_path(part: Path) -> Path:
        return part.with_name(part.name + ".json")

    def damage(self, part: Path) -> str:
        """Why ``part`` is not the part written ("" when it is; a part written before parts had records is checked
        for a readable footer)."""
        stamp = _stamp(part)
        if stamp is not None and stamp in self._verified:
            return ""
        try:
            record = json.loads(self._record_path(part).read_text(encoding="utf-8"))
        except FileNotFoundError:
            record = None
        except (OSError, ValueError):
            return "its record beside it is unreadable"
        problem = table_damage(part, record)
        if not problem and stamp is not None:
            self._verified.add(stamp)
        return problem

    def _check(self) -> list[Path]:
        """The parts that are intact, in order; a damaged one and those after it are removed, with a warning."""
        parts = self._parts()
        for n, part in enumerate(parts):
            problem = self.damage(part)
            if problem:
                dropped = parts[n:]
                for gone in dropped:
                    with contextlib.suppress(OSError):
                        gone.unlink()
                    with contextlib.suppress(OSError):
                        self._record_path(gone).unlink()
                later = f" and the {len(dropped) - 1} written after it" if len(dropped) > 1 else ""
                warnings.warn(f"{part}: damaged checkpoint part ({problem}); dropped{later}, their rows are "
                              "computed again", stacklevel=3)
                return parts[:n]
        return parts

    def done_keys(self) -> set[str]:
        keys: set[str] = set()
        for part in self._check():
            keys.update(pq.read_table(part, columns=[self.key]).column(self.key).to_pylist())
        return keys

    def write(self, rows: pa.Table | list[dict[str, Any]], schema: pa.Schema | None = None) -> None:
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=schema)
        if table.num_rows == 0:
            return
        parts = self._parts()
        index = int(parts[-1].name[5:-8]) + 1 if parts else 0
        part = self.directory / f"part-{index:06d}.parquet"
        self._record_path(part).unlink(missing_ok=True)
        atomic_write_table(part, table)
        atomic_write_json(self._record_path(part), file_record(part, table.num_rows))
        stamp = _stamp(part)
        if stamp is not None:
            self._verified.add(stamp)

    def read(self, schema: pa.Schema | None = None) -> pa.Table:
        """The rows of the parts. A part damaged since :meth:`done_keys` looked is dropped and the stage stops: run
        again, it computes the part's rows again."""
        every = self._parts()
        intact = self._check()
        if len(intact) < len(every):
            raise DatasetError(f"{every[len(intact)]}: a checkpoint part was damaged while the stage ran; it is "
                               "dropped: run the command again, it computes its rows again")
        parts = [pq.read_table(p) for p in intact]
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
        self._manifest = self._load_manifest()
        self._verified: set[tuple[str, int, int, int]] = set()  # table files found intact, in the state found

    def _load_manifest(self) -> dict[str, Any]:
        """The manifest, read and checked: one that cannot be read is refused (the stages it records, and so the
        tables, cannot be trusted)."""
        path = self.root / "manifest.json"
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(manifest, dict):
                raise ValueError(f"a JSON {type(manifest).__name__}, not an object")
        except (UnicodeDecodeError, ValueError) as exc:
            raise DatasetError(f"{path} is damaged ({_brief(exc)}): the stages it records, and so the dataset's "
                               f"tables, cannot be trusted; move {self.root} aside and build the dataset again from "
                               f"its source (`visent ingest SOURCE --out {self.root}`)") from None
        if manifest.get("visent_dataset") != FORMAT_VERSION:
            raise DatasetError(f"{path}: unsupported dataset format {manifest.get('visent_dataset')!r}")
        if not isinstance(manifest.get("stages"), dict) or not isinstance(manifest.get("tables", {}), dict) \
                or not all(isinstance(info, dict) for info in manifest["stages"].values()):
            raise DatasetError(f"{path} is damaged (its stages are not a record of stages): the dataset's tables "
                               f"cannot be trusted; move {self.root} aside and build the dataset again from its "
                               f"source (`visent ingest SOURCE --out {self.root}`)")
        return manifest

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
            self._manifest = self._load_manifest()
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
        """True when ``stage`` finished with these parameters (so running it again is a no-op).

        With ``params`` (a stage asking whether it has anything to do), a damaged table of the stage makes it False,
        with a warning that says so: the stage runs again."""
        info = self.stage_info(stage)
        if not info or info.get("status") != "done":
            return False
        if params is None:
            return True
        if _canonical(info.get("params", {})) != _canonical(params):
            return False
        for name in STAGE_TABLES.get(stage, ()):
            problem = self.table_damage(name)
            if problem:
                warnings.warn(f"{self.table_path(name)} is damaged ({problem}): {stage} runs again", stacklevel=2)
                return False
        return True

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
        """Stop with one line unless ``stage`` finished (its tables are checked as they are read:
        :meth:`read_table`)."""
        if self.stage_done(stage):
            return
        # every stage up to this one that has not finished, in order, each with its command on this dataset
        missing = [name for name in (STAGES[:STAGES.index(stage) + 1] if stage in STAGES else (stage,))
                   if not self.stage_done(name)]
        commands = ", then ".join(f"`{self.rebuild_command(name)}`" for name in missing)
        source = ((self.stage_info("ingest") or {}).get("params") or {}).get("source") or "SOURCE"
        stages = " and ".join(f"'{name}'" for name in missing)
        raise DatasetError(f"{self.root}: stage '{stage}' has not finished ({stages} to run); run {commands} first "
                           f"(or `visent build {source} --out MODEL`, which runs every stage and trains)")

    def rebuild_command(self, stage: str) -> str:
        """The command that runs ``stage`` again over this dataset, as far as the manifest tells."""
        params = (self.stage_info(stage) or {}).get("params") or {}
        if stage == "ingest":
            return f"visent ingest {params.get('source') or 'SOURCE'} --out {self.root}"
        if stage == "teach" and params.get("teacher") not in (None, "default"):
            return f"visent teach {self.root} --teacher {params['teacher']}"
        return f"visent {stage} {self.root}"

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
        """Write the table ``name`` and record its size, rows and SHA-256 in the manifest (the record is taken out
        while the file is replaced: a table without one is checked for a readable footer only)."""
        if not isinstance(table, pa.Table):
            table = pa.Table.from_pylist(table, schema=schema)
        records = self._manifest.setdefault("tables", {})
        if records.pop(name, None) is not None:
            self._save_manifest()
        path = self.table_path(name)
        atomic_write_table(path, table)
        records[name] = file_record(path, table.num_rows)
        self._save_manifest()
        stamp = _stamp(path)
        if stamp is not None:
            self._verified.add(stamp)

    def table_damage(self, name: str) -> str:
        """Why the table ``name`` is not the one its stage wrote ("" when it is, or when there is no such file)."""
        path = self.table_path(name)
        stamp = _stamp(path)
        if stamp is None or stamp in self._verified:
            return ""
        problem = table_damage(path, self._manifest.get("tables", {}).get(name))
        if not problem:
            self._verified.add(stamp)
        return problem

    def intact(self, name: str) -> bool:
        """Whether the table ``name`` exists and is the one its stage wrote."""
        return self.has_table(name) and not self.table_damage(name)

    def _check_table(self, name: str) -> None:
        problem = self.table_damage(name)
        if problem:
            raise DamagedTable(self._damaged(name, problem))

    def _damaged(self, name: str, problem: str) -> str:
        stage = next((stage for stage, names in STAGE_TABLES.items() if name in names), None)
        options = " (with the options of its last run)" if stage in ("ingest", "clean") else ""
        again = f"run `{self.rebuild_command(stage)}`{options} to write it again" if stage else "write it again"
        return f"{self.table_path(name)} is damaged ({problem}); {again}"

    def read_table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """The table ``name`` (those ``columns``), checked against what its stage wrote: a damaged one raises
        :class:`DamagedTable`."""
        path = self.table_path(name)
        if not path.exists():
            raise DatasetError(f"{path} is missing; run the stage that writes '{name}' first")
        self._check_table(name)
        try:
            return pq.read_table(path, columns=columns)
        except (OSError, ValueError, pa.ArrowException) as exc:
            if isinstance(exc, VisentError) or getattr(exc, "errno", None) is not None:
                raise  # the system's error (no permission, ...), not the file's
            try:
                names = set(pq.read_schema(path).names)
            except (OSError, ValueError, pa.ArrowException):
                names = None
            if columns and names is not None and not set(columns) <= names:
                raise  # a column the table does not have
            raise DamagedTable(self._damaged(name, f"unreadable: {_brief(exc)}")) from None

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
