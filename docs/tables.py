"""Fill the docs' result and performance tables from the files the benchmarks write (``benchmarks/results/``).

A table in README.md or a page under docs/ is a pair of markers naming a results file::

    <!-- results: mvsa_zero_label -->
    ...the table and its caption, generated...
    <!-- /results -->

``python docs/tables.py`` rewrites what lies between each pair from ``benchmarks/results/<name>.json``: its table
(``table.columns`` and ``table.rows``, cells as the benchmark printed them; without one, its ``rows``), then a
caption naming the command, the commit, the CPU and the date that made it. ``--check`` changes nothing and exits
with status 1 when a file is out of date or names a results file that does not exist (the tests run it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKERS = re.compile(r"(?P<open><!-- results: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(?P<close><!-- /results -->)", re.S)


def pages(root: Path = ROOT) -> list[Path]:
    """The files whose tables are generated: README.md and every Markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def load(name: str, results: Path = RESULTS) -> dict:
    path = results / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: no such results "
                                "file (a benchmark writes it with --results NAME)")
    return json.loads(path.read_text(encoding="utf-8"))


def cell(value: Any) -> str:
    """A raw row's value as a table shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return str(value)


def table_of(record: dict) -> tuple[list[str], list[list[str]]]:
    """The columns and the cells of a results file's table: its ``table``, else its ``rows`` as they are."""
    if "table" in record:
        return list(record["table"]["columns"]), [list(row) for row in record["table"]["rows"]]
    rows = record.get("rows") or []
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns, [[cell(row.get(key)) for key in columns] for row in rows]


def caption(record: dict) -> str:
    """Command, commit, CPU and date of a results file, in one line."""
    commit = record.get("commit") or "unknown"
    words = [f"`{record['command']}`", f"commit `{commit[:7]}`" + (" with uncommitted changes" if record.get("dirty")
                                                                      else ""), record["cpu"]]
    words += [record["accelerator"]] if record.get("accelerator") else []
    words.append(record["date"])
    if record.get("recorded_from"):
        words.append(f"transcribed from {record['recorded_from']} at that commit, not re-run")
    text = " · ".join(words) + (f" ({record['note']})" if record.get("note") else "")
    return f"*{escape_outside_code(text)}*"


def escape_outside_code(text: str) -> str:
    """Escape ``*`` and ``_`` outside backticks, so a caption's words stay in one italic run."""
    parts = text.split("`")
    return "`".join(part if i % 2 else part.replace("*", "\\*").replace("_", "\\_") for i, part in enumerate(parts))


def escape_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(record: dict) -> str:
    """The Markdown between a pair of markers: the table, a blank line, the caption."""
    columns, rows = table_of(record)
    def line(cells: list[str]) -> str:
        return "|" + "|".join(f" {escape_cell(c)} " if c else " " for c in cells) + "|"

    lines = [line(columns), "|" + "---|" * len(columns)] + [line(row) for row in rows]
    return "\n".join(lines) + "\n\n" + caption(record) + "\n"


def fill(text: str, results: Path = RESULTS) -> str:
    """``text`` with every pair of markers filled from its results file."""
    return MARKERS.sub(lambda m: m["open"] + "\n" + render(load(m["name"], results)) + "\n" + m["close"], text)


def parse(body: str) -> tuple[list[str], list[list[str]], str]:
    """Columns, cells and caption of a generated block (what the tests compare with the results file)."""
    lines = [line for line in body.strip().splitlines()]
    table = [line for line in lines if line.startswith("|")]
    rest = " ".join(line for line in lines if line.strip() and not line.startswith("|"))

    def cells(line: str) -> list[str]:
        inner = line.strip()[1:-1]
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]

    return cells(table[0]), [cells(line) for line in table[2:]], rest


def blocks(text: str) -> list[tuple[str, str]]:
    """(name, generated body) of every pair of markers in ``text``."""
    return [(m["name"], m["body"]) for m in MARKERS.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    args = parser.parse_args(argv)
    stale = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        try:
            filled = fill(text)
        except FileNotFoundError as error:
            print(f"{page.relative_to(ROOT)}: {error}", file=sys.stderr)
            return 1
        if filled != text:
            stale.append(page.relative_to(ROOT))
            if not args.check:
                page.write_text(filled, encoding="utf-8")
    if args.check and stale:
        print("out of date (run python docs/tables.py): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    print(("tables filled: " if stale else "tables up to date") + ", ".join(map(str, stale)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
