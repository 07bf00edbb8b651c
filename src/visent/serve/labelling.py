"""The labelling mode of ``visent serve``: the images of a pool a person should label next, one after another,
with each label saved on the server as it is given.

:class:`Labelling` holds one session: the picks of :func:`visent.label.suggest` for the pool (computed once, in a
thread of its own, while the model's lock is held: /predict and /explain wait meanwhile), which of them are labelled
or skipped, and the labels file. The labels file is a CSV of ``path,label`` as ``visent adapt --labels`` reads it
(:class:`LabelsFile`); after each label it is written again whole, atomically (a temporary file beside it,
flushed and fsynced, then renamed over it), so it always holds each image once, with its latest label, and a server
stopped at any moment leaves either the file before the label or the file after it. Rows the file held already (an
earlier session's labels, or the empty rows of ``visent label suggest``'s CSV) are kept as they were.

The images already labelled in the labels file are left out of the picks (by content, as ``suggest`` does), so a
restarted server asks nothing twice; ``n`` is the number of images of the pool to have labelled in all, earlier
sessions included. A skipped image is not written to the labels file and is not offered again while the server
runs; a restarted server may offer it again.
"""

from __future__ import annotations

import csv
import logging
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from visent.core.errors import UsageError
from visent.core.labels import CLASSES, normalise_label

log = logging.getLogger("visent.serve")

SKIP = "skip"
DEFAULT_LABEL_N = 100
HEADER = ["path", "label"]


class LabelsFile:
    """A CSV of ``path,label`` rows that visent writes one label at a time: :meth:`set` replaces the label of an
    image it holds (matched by resolved path) or adds a row, then writes the whole file atomically. Rows it
    already held, a header with more columns and empty labels are kept as they were."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.suffix.lower() == ".json":
            raise UsageError(f"{self.path}: the labels file of visent serve is a CSV of path,label; give a .csv file "
                             "(Label Studio's exports are read by `visent adapt --labels`, not written here)")
        self.header: list[str] | None = list(HEADER)
        self.rows: list[list[str]] = []
        self.path_col, self.label_col = 0, 1
        if self.path.is_file():
            with self.path.open(newline="", encoding="utf-8-sig") as handle:
                rows = [r for r in csv.reader(handle) if r and any(cell.strip() for cell in r)]
            if rows and normalise_label(rows[0][-1]) is None:  # a header row, as visent.core.labels reads it
                self.header = rows[0]
                names = [c.strip().lower() for c in self.header]
                self.path_col = names.index("path") if "path" in names else 0
                self.label_col = names.index("label") if "label" in names else len(names) - 1
                rows = rows[1:]
            elif rows:
                self.header = None
            self.rows = rows
        elif self.path.exists():
            raise UsageError(f"{self.path} is not a file: give the labels file as a path to a .csv file")
        self.folder = self.path.parent.resolve()
        self.where: dict[str, int] = {}
        for index, row in enumerate(self.rows):
            if len(row) > self.path_col:
                self.where.setdefault(self._key(row[self.path_col]), index)

    def _key(self, shown: str) -> str:
        path = Path(shown.strip())
        path = path if path.is_absolute() else self.folder / path
        try:
            return str(path.resolve())
        except OSError:
            return str(path.absolute())

    def shown(self, image: str | Path) -> str:
        """How ``image`` is written: relative to the CSV's folder when under it (as ``visent adapt`` reads it),
        else in full."""
        path = Path(image).resolve()
        return (path.relative_to(self.folder) if path.is_relative_to(self.folder) else path).as_posix()

    def set(self, image: str | Path, label: str) -> None:
        """Give ``image`` the label ``label`` (a class name) and write the file."""
        before = [list(row) for row in self.rows], dict(self.where)
        try:
            self._set(image, label)
            self.write()
        except BaseException:
            self.rows, self.where = before  # the file holds what it held: so does this
            raise

    def _set(self, image: str | Path, label: str) -> None:
        shown = self.shown(image)
        key = self._key(shown)
        index = self.where.get(key)
        if index is None:
            width = max(len(self.header) if self.header else 2, self.path_col + 1, self.label_col + 1)
            row = [""] * width
            row[self.path_col] = shown
            self.rows.append(row)
            index = self.where[key] = len(self.rows) - 1
        row = self.rows[index]
        row.extend([""] * (self.label_col + 1 - len(row)))
        row[self.label_col] = label

    def write(self) -> None:
        from visent.core.store import atomic_open

        with atomic_open(self.path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if self.header is not None:
                writer.writerow(self.header)
            writer.writerows(self.rows)


class Labelling:
    """One labelling session of a served model over ``pool`` (a folder, an ``@list.txt``, a dataset directory or
    a list of these, as :func:`visent.label.suggest` takes it), writing ``labels_file``. :meth:`start` computes
    the picks in a thread, holding ``lock`` (the model's) while the pool is scored."""

    def __init__(self, model: Any, pool: Any, labels_file: str | Path, *, strategy: str = "uncertainty",
                 n: int = DEFAULT_LABEL_N, seed: int = 0, lock: threading.Lock | None = None):
        from visent.label.suggest import STRATEGIES, pool_items

        if int(n) < 1:
            raise UsageError(f"label_n must be at least 1 (got {n})")
        STRATEGIES.create(strategy)  # an unknown strategy fails here, listing the known ones
        items, _ = pool_items(pool)
        if not any(problem is None for _, problem in items):
            problems = "; ".join(f"{path}: {problem}" for path, problem in items[:3]) or "nothing in it"
            raise UsageError(f"the label pool holds no image to label ({problems}): give a folder of images, an "
                             "@list.txt or a visent dataset directory")
        self.model, self.pool, self.strategy, self.n, self.seed = model, pool, strategy, int(n), int(seed)
        self.file = LabelsFile(labels_file)
        self.lock = lock or threading.Lock()
        self.state = threading.Lock()  # guards the session and the labels file
        self.ready = threading.Event()
        self.error: str | None = None
        self.rows: list[Any] = []  # visent.label.suggest.Suggestion, best first
        self.earlier = 0  # images of the pool labelled before this session began
        self.given: dict[int, str] = {}  # rank -> label given in this session
        self.skipped: set[int] = set()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Compute the picks in a thread of its own (once)."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._prepare, name="visent-label-suggest", daemon=True)
            self.thread.start()

    def _prepare(self) -> None:
        from visent.label.suggest import suggest

        labelled = [self.file.path] if self.file.path.is_file() else []
        try:
            with self.lock:
                picks = suggest(self.model, self.pool, self.n, strategy=self.strategy, seed=self.seed,
                                labelled=labelled)
            self.earlier = min(len(picks.excluded), self.n)
            self.rows = picks.rows[:self.n - self.earlier]
            log.info("visent serve: %d images to label from a pool of %d (%d labelled before, %d unreadable)",
                     len(self.rows), picks.pool, len(picks.excluded), len(picks.skipped))
        except Exception as error:  # shown to the person on the page, and in the server's log
            log.exception("visent serve: the images to label could not be chosen")
            self.error = f"the images to label could not be chosen: {error}"
        finally:
            self.ready.set()

    # ------------------------------------------------------------------------------------------------ state
    def row(self, rank: int) -> Any | None:
        return self.rows[rank - 1] if 1 <= rank <= len(self.rows) else None

    def progress(self) -> dict[str, Any]:
        """Where the session stands: the next image to label (or none) and the running count."""
        with self.state:
            upcoming = next((r for r in self.rows if r.rank not in self.given and r.rank not in self.skipped), None)
            counts = {"labelled": self.earlier + len(self.given), "total": self.earlier + len(self.rows),
                      "earlier": self.earlier, "skipped": len(self.skipped),
                      "left": sum(1 for r in self.rows if r.rank not in self.given and r.rank not in self.skipped),
                      "labels_file": str(self.file.path), "strategy": self.strategy}
        if upcoming is None:
            return {"status": "done", "image": None, **counts}
        return {"status": "ready", "image": describe(upcoming), **counts}

    def give(self, rank: int, label: str) -> str:
        """Record ``label`` (a class name, or ``skip``) for the image of ``rank``; a class label is written to the
        labels file before this returns. How the file names the image."""
        row = self.row(rank)
        if row is None:
            raise LookupError(rank)
        with self.state:
            if label == SKIP:
                if rank not in self.given:  # a label already given stays: a skip never unsays it
                    self.skipped.add(rank)
                return self.file.shown(row.path)
            self.file.set(row.path, label)
            self.given[rank] = label
            self.skipped.discard(rank)
            return self.file.shown(row.path)


def describe(row: Any) -> dict[str, Any]:
    """What the page shows of a pick: its rank, where to fetch its bytes, its name and the student's view."""
    return {"rank": row.rank, "url": f"label/image/{row.rank}", "name": Path(row.path).name,
            "predicted": row.predicted, "probabilities": dict(zip(CLASSES, row.probabilities)),
            "why": row.why}


def media_type(path: str | Path) -> str:
    """The image's MIME type, from its content (the pool's images were read when they were scored)."""
    try:
        with Image.open(path) as image:
            return Image.MIME.get(image.format or "", "application/octet-stream")
    except (OSError, SyntaxError, ValueError):  # a file changed since it was scored: served as bytes
        return "application/octet-stream"
