"""The benchmark scripts stay runnable and use visent as a user would: each answers ``--help``, and none imports
a private name of visent (a module or a name starting with ``_``), so a refactoring inside visent that keeps the
public names never breaks them."""

from __future__ import annotations

import ast
import os
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(path for path in BENCHMARKS.glob("*.py") if "__main__" in path.read_text(encoding="utf-8"))


def test_every_benchmark_is_found():
    names = {path.stem for path in SCRIPTS}
    assert {"mvsa_zero_label", "throughput", "predict_speed", "teacher", "scale", "few_labels"} <= names
    assert "record" not in names  # a helper, not a benchmark


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.stem for path in SCRIPTS])
def test_help_runs(script, capsys, monkeypatch):
    """``python benchmarks/NAME.py --help`` exits 0 with its usage, run in this process (the imports are paid
    once for every script) with sys.argv, sys.path and the environment as the script would see them, and
    put back afterwards."""
    saved_path, saved_environ = list(sys.path), dict(os.environ)
    before = set(sys.modules)
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    sys.path[:0] = [str(BENCHMARKS)]
    try:
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.path[:] = saved_path
        os.environ.clear()
        os.environ.update(saved_environ)
        for name in set(sys.modules) - before:  # the benchmarks' own modules (record, student_ablation, ...)
            if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(BENCHMARKS)):
                del sys.modules[name]
    out = capsys.readouterr().out
    assert exit_.value.code in (0, None), out
    assert out.startswith("usage:"), out[:500]
    assert "--results" in out, f"{script.name}: no --results option (benchmarks save their rows for the docs)"


def private_names(source: str) -> list[str]:
    """Every private name of visent a script imports or reaches through what it imported from visent."""
    tree = ast.parse(source)
    found, bound = [], set()

    def private(parts) -> list[str]:
        return [part for part in parts if part.startswith("_") and not (part.startswith("__") and part.endswith("__"))]

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "visent":
            for alias in node.names:
                if private([*node.module.split("."), alias.name]):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                bound.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "visent":
                    if private(alias.name.split(".")):
                        found.append(f"line {node.lineno}: import {alias.name}")
                    bound.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private([node.attr]):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("script", sorted(BENCHMARKS.glob("*.py")), ids=lambda path: path.stem)
def test_benchmarks_import_only_public_names_of_visent(script):
    assert private_names(script.read_text(encoding="utf-8")) == [], script.name


def test_the_private_name_check_catches_each_form():
    source = ("from visent._hidden import x\nfrom visent.core.images import _NEXT_MARKER\nimport visent._impl\n"
              "from visent.core import images\nimages._NEXT_MARKER.search(b'')\nfrom visent.train import select_C\n"
              "import numpy as np\nnp._private\n")
    found = private_names(source)
    assert len(found) == 4, found
    assert not any("select_C" in line or "np._private" in line for line in found)
