"""Shared test fixtures. Tests that need the real data in ../shared/data skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("VISENT_PROGRESS", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist's workers start with COLUMNS=80, which rich's consoles would keep from import on: the CLI tests
    # give their own width, as they do in one process
    os.environ.pop("COLUMNS", None)
# Ray Data's usage reporting (an actor and a poll thread in the driver) keeps working in the background: after the
# Ray tests' ray.shutdown() such a thread touching Ray ends the whole test process with exit status 1
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

SHARED_DATA = Path(os.environ.get("VISENT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MVSA = SHARED_DATA / "mvsa-single"
SEMEVAL = SHARED_DATA / "semeval2017-task4a" / "train"

needs_mvsa = pytest.mark.skipif(not (MVSA / "data").is_dir(), reason=f"real MVSA data not found at {MVSA}")
needs_semeval = pytest.mark.skipif(not SEMEVAL.is_dir(), reason=f"SemEval data not found at {SEMEVAL}")


@pytest.fixture(scope="session")
def _shared_onnx_exports(tmp_path_factory) -> Path:
    """One folder of ONNX exports for the tests of this process (see ``_isolated_cache``)."""
    return tmp_path_factory.mktemp("visent-onnx-exports")


@pytest.fixture(autouse=True)
def _isolated_cache(request, tmp_path_factory, monkeypatch):
    """Every test gets its own cache so no test reads another's results (features, teachers' outputs, models).
    Its ``onnx/`` folder, the ONNX exports of the networks (a function of their weights alone, named by a digest
    of them; an export and its int8 quantisation take seconds, which every test that teaches or embeds would pay
    again), is shared by the tests of a process, unless the test is marked ``own_onnx_exports`` (the tests of the
    exports and of the cache themselves)."""
    root = tmp_path_factory.mktemp("visent-cache")
    if request.node.get_closest_marker("own_onnx_exports") is None:
        (root / "onnx").symlink_to(request.getfixturevalue("_shared_onnx_exports"), target_is_directory=True)
    monkeypatch.setenv("VISENT_CACHE", str(root))


@pytest.fixture(scope="module")
def lite0():
    """EfficientNet-Lite0 with its packaged weights, on the CPU."""
    from visent.embed import load_backbone

    return load_backbone("efficientnet-lite0", device="cpu")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """16 photo-like JPEGs (gradients, a disc, noise) of varied sizes: int8 calibration needs natural statistics."""
    import numpy as np
    from PIL import Image

    directory = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(16):
        w, h = int(rng.integers(200, 400)), int(rng.integers(200, 400))
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        base = rng.uniform(0, 255, 3)
        slope = rng.uniform(-1, 1, (3, 2))
        array = np.stack([base[c] + slope[c, 0] * x + slope[c, 1] * y for c in range(3)], axis=-1)
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 120)
        array[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
        array += rng.normal(0, 8, array.shape)
        path = directory / f"photo{i}.jpg"
        Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


RAY_MODULES = ("test_ray", "test_ray_cluster")  # one Ray cluster at a time on the machine


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups into the tests' ids
def pytest_collection_modifyitems(config, items):
    """The suite runs in two processes (pytest-xdist, ``-n 2 --dist loadgroup`` in pyproject.toml): a module's tests
    go to one worker, so its module fixtures are made once, and the two Ray modules to the same worker. The Ray
    modules are the longest group (a cluster of two nodes, then a local one): they go first, so that the other
    worker does the rest meanwhile rather than wait at the end."""
    for item in items:
        module = item.module.__name__
        item.add_marker(pytest.mark.xdist_group("ray" if module in RAY_MODULES else module))
    items.sort(key=lambda item: item.module.__name__ not in RAY_MODULES)  # stable: the order within each stays
