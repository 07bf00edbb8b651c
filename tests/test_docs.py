"""The docs' result and performance tables are the benchmarks' results files, as ``docs/tables.py`` renders them:
every table between markers matches its ``benchmarks/results/<name>.json`` cell for cell, its caption names the
command, commit, CPU and date of the file, and every results file says where its figures come from."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def load_tables():
    spec = importlib.util.spec_from_file_location("visent_docs_tables", ROOT / "docs" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tables = load_tables()
FILES = sorted(RESULTS.glob("*.json"))
BLOCKS = [(page, name, body) for page in tables.pages() for name, body in tables.blocks(page.read_text("utf-8"))]


def test_the_tables_are_up_to_date(capsys):
    """`python docs/tables.py --check`: no page differs from what its results files render."""
    assert tables.main(["--check"]) == 0, capsys.readouterr().err


def test_the_readme_and_the_pages_carry_the_main_tables():
    named = {name for _, name, _ in BLOCKS}
    assert {"mvsa_zero_label", "throughput", "predict_speed", "teacher_semeval", "scale", "few_labels",
            "few_labels_strategies"} <= named
    readme = [name for page, name, _ in BLOCKS if page.name == "README.md"]
    assert readme == ["mvsa_zero_label"]  # one headline table; the rest lives in docs/


@pytest.mark.parametrize("page,name,body", BLOCKS, ids=[f"{p.relative_to(ROOT)}:{n}" for p, n, _ in BLOCKS])
def test_each_table_matches_its_results_file(page, name, body):
    record = json.loads((RESULTS / f"{name}.json").read_text("utf-8"))
    columns, rows, caption = tables.parse(body)
    want_columns, want_rows = tables.table_of(record)
    assert columns == want_columns
    assert rows == want_rows
    assert f"`{record['command']}`" in caption
    assert f"commit `{record['commit'][:7]}`" in caption
    assert record["cpu"] in caption.replace("\\_", "_").replace("\\*", "*")
    assert record["date"] in caption


def test_the_renderer_writes_what_the_parser_reads():
    record = {"command": "python benchmarks/x.py --a 'b|c'", "commit": "0" * 40, "dirty": True, "cpu": "Some CPU_X",
              "date": "2026-12-06", "table": {"columns": ["a", "b|c"], "rows": [["1", ""], ["**2 ± 0.1**", "x|y"]]}}
    columns, rows, caption = tables.parse(tables.render(record))
    assert (columns, rows) == (["a", "b|c"], [["1", ""], ["**2 ± 0.1**", "x|y"]])
    assert "with uncommitted changes" in caption and "Some CPU\\_X" in caption
    raw = {"command": "c", "commit": None, "cpu": "c", "date": "d", "rows": [{"n": 1000, "rate": 0.5}, {"n": 2}]}
    assert tables.table_of(raw) == (["n", "rate"], [["1,000", "0.5000"], ["2", ""]])


def test_a_marker_naming_no_results_file_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_benchmark"):
        tables.fill("<!-- results: no_such_benchmark -->\n<!-- /results -->\n", tmp_path)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_each_results_file_says_where_its_figures_come_from(path):
    record = json.loads(path.read_text("utf-8"))
    assert record["name"] == path.stem
    assert record["command"].startswith(("python benchmarks/", "visent ")), record["command"]
    assert re.fullmatch(r"[0-9a-f]{40}", record["commit"]), record["commit"]
    assert record["dirty"] in (True, False, None)
    assert record["cpu"] and re.fullmatch(r"\d{4}-\d{2}-\d{2}", record["date"])
    assert isinstance(record["rows"], list) and record["rows"]
    if "table" in record:
        assert all(len(row) == len(record["table"]["columns"]) for row in record["table"]["rows"])
    if record.get("recorded_from"):  # transcribed figures: the file they came from held them at that commit
        shown = subprocess.run(["git", "show", f"{record['commit']}:{record['recorded_from']}"], cwd=ROOT,
                               capture_output=True, text=True)
        if shown.returncode != 0:
            pytest.skip(f"commit {record['commit'][:7]} not in this clone")
        text = " ".join(shown.stdout.replace("**", "").split())
        cells = [" ".join(cell.replace("**", "").split()) for row in record["table"]["rows"] for cell in row]
        figures = [cell for cell in cells if re.match(r"[-+]?\d", cell)]  # the figures, not the rows' names
        assert figures and [cell for cell in figures if f"| {cell} |" not in text] == []


def test_the_strategy_table_is_its_summary():
    """The table of few_labels_strategies.json is what few_labels.py makes of the summary beside it."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from few_labels import strategy_table
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    record = json.loads((RESULTS / "few_labels_strategies.json").read_text("utf-8"))
    strategies = record["arguments"]["strategy"].split(",")
    sizes = [int(n) for n in record["arguments"]["sizes"].split(",") if n != "all"]
    columns, rows = strategy_table(record["summary"], strategies, sizes)
    assert record["table"] == {"columns": columns, "rows": rows}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


@pytest.mark.parametrize("name", ["README.md", "DEVELOPMENT.md"])
def test_the_links_of_the_files_outside_the_site_resolve(name):
    """README.md and DEVELOPMENT.md are read on the repository, not in the site (mkdocs checks the pages' links):
    every relative link names a file that exists, and every anchor a heading of it."""
    text = (ROOT / name).read_text("utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    broken = []
    for link in links:
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = link.partition("#")
        target = (ROOT / path) if path else ROOT / name
        if not target.exists():
            broken.append(link)
        elif anchor and target.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", target.read_text("utf-8"), flags=re.M)
            if anchor not in {github_anchor(h) for h in headings}:
                broken.append(link)
    assert broken == []
