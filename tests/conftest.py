"""Shared test fixtures. Tests that need the real data in ../shared/data skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("VISENT_PROGRESS", "0")

SHARED_DATA = Path(os.environ.get("VISENT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MVSA = SHARED_DATA / "mvsa-single"
SEMEVAL = SHARED_DATA / "semeval2017-task4a" / "train"

needs_mvsa = pytest.mark.skipif(not (MVSA / "data").is_dir(), reason=f"real MVSA data not found at {MVSA}")
needs_semeval = pytest.mark.skipif(not SEMEVAL.is_dir(), reason=f"SemEval data not found at {SEMEVAL}")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own feature cache so no test reads another's results."""
    monkeypatch.setenv("VISENT_CACHE", str(tmp_path_factory.mktemp("visent-cache")))
