"""A small named registry, used for readers, benchmarks, backbones and teachers (like open_clip's pretrained table).

An entry is one registration: its name, its factory and a one-line description, and, where the registry tells
sources apart (readers, benchmarks), its ``detect`` test and the ``order`` in which that test is tried, and any
facts of its own (``info``: a backbone family says that it takes an architecture). Adding an entry is adding
one registration, wherever it is written: the registry needs no other change.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from visent.core.errors import UnknownName

T = TypeVar("T")

# Where an entry's detection is tried when it names no order: after the specific ones visent registers (below
# this), before the catch-alls ("any folder", "any file"), which register at CATCH_ALL.
DEFAULT_ORDER = 100
CATCH_ALL = 1000


@dataclass(frozen=True)
class Details:
    """What a registration says besides its factory and description."""

    detect: Callable[..., bool] | None = None  # True when the source is of this entry's kind
    order: int = DEFAULT_ORDER  # detection tries the lowest first; ties in the order of registration
    info: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Factories by name. ``create`` with a name that is not registered raises ``error`` (an
    :class:`~visent.core.errors.UnknownName`, so a ``UsageError`` and a ``KeyError``) listing the valid names."""

    def __init__(self, kind: str, error: type[UnknownName] = UnknownName):
        self.kind = kind
        self.error = error
        self._entries: dict[str, tuple[Callable[..., T], str]] = {}
        self._details: dict[str, Details] = {}

    def register(self, name: str, description: str = "", *, detect: Callable[..., bool] | None = None,
                 order: int = DEFAULT_ORDER, **info: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Register the decorated factory as ``name``. ``detect`` (optional) tells whether a source is of this
        kind (:meth:`detect` tries the entries by ``order``); ``info`` is kept for :meth:`info`."""
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc_lines = (factory.__doc__ or "").strip().splitlines()
            self._entries[name] = (factory, description or (doc_lines[0] if doc_lines else ""))
            self._details[name] = Details(detect, order, dict(info))
            return factory

        return decorator

    def unregister(self, name: str) -> None:
        """Forget ``name`` (a test's or a plugin's own entry); unknown names are ignored."""
        self._entries.pop(name, None)
        self._details.pop(name, None)

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._entries))}")
        return self._entries[name][0](*args, **kwargs)

    def info(self, name: str) -> Mapping[str, Any]:
        """The facts ``name`` was registered with (empty for an unknown name)."""
        details = self._details.get(name)
        return details.info if details else {}

    def registered(self) -> list[str]:
        """The names in the order they were registered (iterating the registry sorts them)."""
        return list(self._entries)

    def detect(self, *args: Any, **kwargs: Any) -> str | None:
        """The first entry, by order, whose ``detect`` holds for the source given; None when none does."""
        ranked = sorted(((details.order, index, name) for index, (name, details) in enumerate(self._details.items())
                         if details.detect is not None and name in self._entries))
        for _, _, name in ranked:
            if self._details[name].detect(*args, **kwargs):  # type: ignore[misc]
                return name
        return None

    def describe(self) -> dict[str, str]:
        return {name: desc for name, (_, desc) in sorted(self._entries.items())}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))


def import_modules(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (its folders ``path``) whose name does not start with "_": a module that
    registers an entry when imported (a reader, a benchmark) is then registered by being in the folder."""
    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
