"""Benchmark results as files: every figure in visent's docs names the command, commit and CPU that made it.

A benchmark calls :func:`save_results` with its rows (and, for the docs, the table it prints); the file
``benchmarks/results/<name>.json`` then holds::

    name, rows, table ({"columns": [...], "rows": [[...], ...]}, optional), summary (optional),
    command (the exact command line), commit (``git rev-parse HEAD``), dirty (uncommitted changes in the tree),
    cpu (``visent.core.machine.cpu_model()`` and the core count), date (UTC, YYYY-MM-DD)

``python docs/tables.py`` renders the docs' result and performance tables from these files, each captioned with
its command, commit, CPU and date. Files carrying ``recorded_from`` hold figures measured before the benchmarks
wrote files: transcribed from the README of the commit that introduced them, not re-run.

Every benchmark takes ``--results NAME`` (``--results ''`` saves nothing); :func:`add_results_argument` adds it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from visent.core.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def add_results_argument(parser: argparse.ArgumentParser, default: str) -> None:
    """``--results NAME``: where :func:`save_results` writes (``benchmarks/results/NAME.json``)."""
    parser.add_argument("--results", metavar="NAME", default=default,
                        help=f"save the rows as benchmarks/results/NAME.json, with the command, commit, CPU and date "
                             f"(default: {default}; '' saves nothing); the docs' tables are made from these files")


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, the script's path relative to the repository when it lies inside it."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve() if argv else None
    if script is not None and script.is_relative_to(ROOT):
        argv[0] = str(script.relative_to(ROOT))
    return shlex.join(["python", *argv])


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line, commit (and whether the tree had uncommitted changes), CPU and date of this run."""
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"command": command_line(argv), "commit": git("rev-parse", "HEAD"),
            "dirty": bool(status) if status is not None else None,
            "cpu": f"{cpu_model()}, {os.cpu_count()} cores",
            "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat()}


def save_results(name: str | None, rows: list, *, columns: list[str] | None = None,
                 table: list[list[Any]] | None = None, summary: Any = None, argv: list[str] | None = None,
                 **extra: Any) -> Path | None:
    """Write ``benchmarks/results/<name>.json``: ``rows`` as the benchmark made them, the docs' table (``columns``
    and ``table``, cells as printed) when given, and the run's provenance. ``name`` empty: nothing is written."""
    if not name:
        return None
    if (columns is None) != (table is None):
        raise ValueError("columns and table go together")
    record: dict[str, Any] = {"name": name, **provenance(argv)}
    if columns is not None:
        record["table"] = {"columns": [str(c) for c in columns], "rows": [[str(cell) for cell in row] for row in table]}
    if summary is not None:
        record["summary"] = summary
    record.update(extra)
    record["rows"] = rows
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=str, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"results: {path.relative_to(ROOT)} (commit {(record['commit'] or 'unknown')[:12]}"
          f"{', uncommitted changes' if record['dirty'] else ''})", flush=True)
    return path
