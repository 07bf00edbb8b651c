"""docs/extending.md's examples, run as written there: a reader, a benchmark and a backbone family, each added as
one module at run time and used through visent's normal entry points (ingest, load_benchmark, load_backbone)."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

import visent.evaluate.benchmarks as benchmarks_package
import visent.ingest.readers as readers_package
from visent.core.registry import import_modules
from visent.evaluate.benchmarks import BENCHMARKS, BenchmarkError, detect_kind, load_benchmark
from visent.ingest import READERS, detect_format, ingest

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def example(name: str) -> str:
    """The Python block of docs/extending.md marked ``<!-- extending-test: name -->``."""
    match = re.search(rf"<!-- extending-test: {name} -->\n```python\n(.*?)\n```", DOC.read_text(), re.DOTALL)
    assert match, f"docs/extending.md has no {name} example"
    return match.group(1) + "\n"


def add_module(package, name: str, code: str, folder: Path, monkeypatch) -> None:
    """``code`` as the module ``name`` of ``package``, in a folder of the package's path: imported as the package
    imports its modules (visent.core.registry.import_modules), the way a file added to the package is."""
    folder.mkdir()
    (folder / f"{name}.py").write_text(code)
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
    import_modules(package.__name__, [str(folder)])


@pytest.fixture
def forget():
    """Unregisters what a test registered, and forgets the modules it imported, when the test ends."""
    added: list[tuple[object, str, tuple[str, ...]]] = []
    yield lambda registry, name, *modules: added.append((registry, name, modules))
    for registry, name, modules in added:
        registry.unregister(name)
        for module in modules:
            sys.modules.pop(module, None)
            parent, _, child = module.rpartition(".")
            if parent in sys.modules and hasattr(sys.modules[parent], child):
                delattr(sys.modules[parent], child)


def photo(path: Path, colour: tuple[int, int, int]) -> None:
    Image.new("RGB", (32, 32), colour).save(path)


def test_a_reader_is_one_module(tmp_path, monkeypatch, forget):
    forget(READERS, "photolog", "visent.ingest.readers.photolog")
    assert "photolog" not in READERS
    add_module(readers_package, "photolog", example("reader"), tmp_path / "added", monkeypatch)
    assert "photolog" in READERS and "photolog" in READERS.describe()

    crawl = tmp_path / "crawl"
    crawl.mkdir()
    photo(crawl / "sun.png", (250, 200, 40))
    photo(crawl / "rain.png", (40, 40, 90))
    (crawl / "log.plog").write_text("1\tsun.png\twhat a day\n2\train.png\tgrey again\n\nnot a post\n")
    assert detect_format(crawl / "log.plog") == "photolog"
    assert detect_format(crawl) == "folder"  # the other readers' detection is as it was

    counts = ingest(crawl / "log.plog", tmp_path / "ds", workers=1)
    assert counts["posts"] == 3
    import pyarrow.parquet as pq

    rows = {row["post_id"]: row for row in pq.read_table(tmp_path / "ds" / "posts.parquet").to_pylist()}
    assert rows["1"]["text"] == "what a day" and rows["1"]["ingest_status"] == "ok" and rows["1"]["image_file"]
    assert rows["2"]["ingest_status"] == "ok" and rows["1"]["image_sha256"] != rows["2"]["image_sha256"]
    assert rows["log.plog:4"]["ingest_status"] == "error" and "expected <id>" in rows["log.plog:4"]["ingest_reason"]


def test_a_benchmark_is_one_module(tmp_path, monkeypatch, forget):
    forget(BENCHMARKS, "json-labels", "visent.evaluate.benchmarks.json_labels")
    add_module(benchmarks_package, "json_labels", example("benchmark"), tmp_path / "added", monkeypatch)
    assert "json-labels" in BENCHMARKS.describe()

    folder = tmp_path / "photos"
    folder.mkdir()
    for name, colour in (("a.png", (250, 200, 40)), ("b.png", (40, 40, 90)), ("c.png", (90, 90, 90))):
        photo(folder / name, colour)
    (folder / "labels.json").write_text(json.dumps({"a.png": "positive", "b.png": "neg", "c.png": "?",
                                                    "gone.png": "neutral"}))
    assert detect_kind(folder) == "json-labels"
    for spec in (f"json-labels={folder}", str(folder)):
        bench = load_benchmark(spec)
        assert bench.kind == "json-labels" and bench.labels == ["positive", "negative"]
        assert [Path(p).name for p in bench.paths] == ["a.png", "b.png"]
        assert len(bench.skipped) == 2 and not bench.folds and not bench.subsets
    with pytest.raises(BenchmarkError, match="json-labels benchmark is a folder"):
        load_benchmark(f"json-labels={folder / 'labels.json'}")


def test_a_backbone_family_is_one_registration(tmp_path, monkeypatch, forget):
    torch = pytest.importorskip("torch")
    from visent.embed.backbones import BACKBONES, check_backbone, families, load_backbone
    from visent.embed.spec import BackboneError

    forget(BACKBONES, "python", "python_family", "tiny_nets")
    (tmp_path / "python_family.py").write_text(example("backbone"))
    (tmp_path / "tiny_nets.py").write_text("import torch\n\n\ndef small_cnn():\n    return torch.nn.Sequential("
                                           "torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), "
                                           "torch.nn.Flatten())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("python_family")
    assert families() == ["torchvision", "timm", "python"]

    from tiny_nets import small_cnn

    torch.save(small_cnn().state_dict(), tmp_path / "small_cnn.pt")
    assert check_backbone("python:tiny_nets.small_cnn") == "python:tiny_nets.small_cnn"
    with pytest.raises(BackboneError, match="name the architecture: 'python:<arch>'"):
        check_backbone("python")
    with pytest.raises(BackboneError, match="torchvision, timm and python as 'family:<arch>'"):
        check_backbone("nothing")
    with pytest.raises(BackboneError, match="has one architecture"):
        check_backbone("efficientnet-lite0:tiny")
    with pytest.raises(BackboneError, match="no function 'nothing'"):
        load_backbone("python:tiny_nets.nothing", weights=tmp_path / "small_cnn.pt", device="cpu")

    backbone = load_backbone("python:tiny_nets.small_cnn", weights=tmp_path / "small_cnn.pt", device="cpu")
    assert backbone.name == "python:tiny_nets.small_cnn" and backbone.dim == 8 and backbone.image_size == 224
    again = load_backbone("python", arch="tiny_nets.small_cnn", weights=tmp_path / "small_cnn.pt", device="cpu")
    assert again.key == backbone.key
    image = Image.new("RGB", (300, 200), (200, 120, 40))
    features = backbone.forward_features(backbone.preprocess(image)[None])
    assert tuple(features.shape) == (1, 8)
