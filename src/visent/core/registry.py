"""A small named registry, used for backbones and teachers (like open_clip's pretrained table)."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from visent.core.errors import UnknownName

T = TypeVar("T")


class Registry(Generic[T]):
    """Factories by name. ``create`` with a name that is not registered raises ``error`` (an
    :class:`~visent.core.errors.UnknownName`, so a ``UsageError`` and a ``KeyError``) listing the valid names."""

    def __init__(self, kind: str, error: type[UnknownName] = UnknownName):
        self.kind = kind
        self.error = error
        self._entries: dict[str, tuple[Callable[..., T], str]] = {}

    def register(self, name: str, description: str = "") -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc_lines = (factory.__doc__ or "").strip().splitlines()
            self._entries[name] = (factory, description or (doc_lines[0] if doc_lines else ""))
            return factory

        return decorator

    def create(self, name: str, **kwargs) -> T:
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._entries))}")
        return self._entries[name][0](**kwargs)

    def describe(self) -> dict[str, str]:
        return {name: desc for name, (_, desc) in sorted(self._entries.items())}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))
