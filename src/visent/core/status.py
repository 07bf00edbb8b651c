"""What became of one image in a per-image pass (a backbone's features, a signal, a prediction).

Every pass over images gives one :class:`ImageStatus` per image: ``ok`` (computed now), ``cached`` (read from
the feature cache) or ``error`` with the reason and the file it concerns. Code reads the fields; users read
:attr:`ImageStatus.message` (``"<file>: <reason>"``), which is what prediction tables and CSVs show.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Sequence

from visent.core.errors import VisentError
from visent.core.images import ImageError

State = Literal["ok", "cached", "error"]
STATES: tuple[str, ...] = ("ok", "cached", "error")


@dataclass(frozen=True)
class ImageStatus:
    """``state`` is "ok", "cached" or "error"; an error has its ``reason`` and, where one was read, its ``file``."""

    state: State
    reason: str = ""
    file: str | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown image state {self.state!r}; one of: {', '.join(STATES)}")

    @classmethod
    def failure(cls, reason: str, file: str | Path | None = None) -> "ImageStatus":
        return cls("error", reason, None if file is None else str(file))

    @classmethod
    def from_exception(cls, file: str | Path | None, exc: BaseException) -> "ImageStatus":
        """The error ``exc`` raised for ``file``, on one line, the file's name taken out of the reason (it is in
        :attr:`file`): an image visent cannot use gives its fault in the words every part of visent uses
        (:class:`~visent.core.images.ImageError`'s ``reason``: ``not an image (HTML)``, ``empty file``, ...), another
        error visent words for users its message, anything else ``<Type>: <message>``."""
        if isinstance(exc, ImageError):
            return cls.failure(" ".join(exc.reason.split()) or exc.fault, file)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if file is not None:
            reason = reason.replace(f"'{file}'", "").replace(str(file), "")
        reason = reason.strip(" :") or type(exc).__name__
        return cls.failure(reason if isinstance(exc, VisentError) else f"{type(exc).__name__}: {reason}", file)

    @property
    def ok(self) -> bool:
        """The image gave its values (computed now or cached)."""
        return self.state != "error"

    @property
    def failed(self) -> bool:
        return self.state == "error"

    @property
    def message(self) -> str:
        """How the status reads to a user: ``"<file>: <reason>"`` (the reason alone without a file); "" when ok."""
        if self.ok:
            return ""
        return f"{self.file}: {self.reason}" if self.file is not None else self.reason

    def renamed(self, name: str) -> "ImageStatus":
        """The same status naming ``name`` as its file: an in-memory image's temporary file, or a worker's
        absolute path, must not show."""
        return replace(self, file=name) if self.file is not None else self

    def __str__(self) -> str:
        """``ok``, ``cached`` or ``error: <message>``, as logs and reports show a status."""
        return self.state if self.ok else f"error: {self.message}"


OK = ImageStatus("ok")
CACHED = ImageStatus("cached")


def first_error(status: Sequence[ImageStatus], extra: Sequence[ImageStatus]) -> list[ImageStatus]:
    """Per image: the status it had, unless that was fine and a further pass (another backbone, a signal)
    failed on it."""
    return [s if s.failed or e.ok else e for s, e in zip(status, extra)]


STATUS_COLUMNS = ("state", "reason", "file")


def status_columns(statuses: Sequence[ImageStatus]) -> dict[str, list[Any]]:
    """The statuses as columns ``state``, ``reason``, ``file`` (for tables shipped between workers)."""
    return {"state": [s.state for s in statuses], "reason": [s.reason for s in statuses],
            "file": [s.file for s in statuses]}


def statuses_from_columns(state: Sequence[str], reason: Sequence[str | None],
                          file: Sequence[str | None]) -> list[ImageStatus]:
    """The statuses of :func:`status_columns` back."""
    return [ImageStatus(s, r or "", f) for s, r, f in zip(state, reason, file)]  # type: ignore[arg-type]
