"""Progress display shared by every stage (rich progress bars on stderr)."""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class Advance(Protocol):
    def __call__(self, n: int = 1) -> None: ...


def _enabled() -> bool:
    return os.environ.get("VISENT_PROGRESS", "1") != "0"


@contextlib.contextmanager
def progress(description: str, total: int | None) -> Iterator[Advance]:
    """``with progress("teach", n) as advance: ... advance(k)`` shows a bar while work runs."""
    if not _enabled():
        yield lambda n=1: None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


@contextlib.contextmanager
def status(description: str) -> Iterator[Callable[[str], None]]:
    """``with status("crawl") as say: ... say("1,234 events/s")`` keeps one line of running figures on stderr, for
    work with no end known in advance."""
    if not _enabled():
        yield lambda text: None
        return
    with console.status(f"[bold]{description}[/]") as line:
        yield lambda text: line.update(f"[bold]{description}[/] {text}")
