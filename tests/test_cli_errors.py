"""Every command, given bad input, says what is wrong in one line and exits 1 (typer's 2 for a malformed command
line): no traceback. Every user-facing exception class derives from visent.core.errors.VisentError; anything
else (a bug) still reaches the user as a traceback."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from test_pipeline import make_crawl
from visent.cli import app
from visent.core.cache import CacheError
from visent.core.errors import InputError, PathNotFound, UnknownName, UsageError, VisentError
from visent.core.registry import Registry
from visent.core.store import DatasetError
from visent.embed.backbones import BackboneError
from visent.embed.onnx import RuntimeNotAvailable
from visent.engine import EngineError
from visent.evaluate import BenchmarkError
from visent.explain.cam import ExplainError
from visent.ingest.archives import ArchiveError
from visent.model import ModelError
from visent.serve import ServerError
from visent.signals.ocr import SignalNotAvailable
from visent.teach.base import TeacherError, TeacherNotFound, UnknownTeacher
from visent.train import TrainError

runner = CliRunner()


@pytest.fixture(scope="module")
def p(tmp_path_factory) -> SimpleNamespace:
    """A tiny crawl and three datasets of it: ingested only, taught (VADER), cleaned; a text file; a benchmark
    CSV; an evaluation JSON that is not one; a SemEval file of 36 labelled texts."""
    from visent.clean import clean
    from visent.ingest import ingest
    from visent.teach import teach

    root = tmp_path_factory.mktemp("cli-errors")
    crawl = make_crawl(root / "crawl", n_per_class=3)
    ingested, taught, cleaned = root / "ingested", root / "taught", root / "cleaned"
    for dataset in (ingested, taught, cleaned):
        ingest(crawl, dataset)
    for dataset in (taught, cleaned):
        teach(dataset, "vader")
    clean(cleaned, thresholds={"negative": 0.3, "neutral": 0.9, "positive": 0.3})
    texts = root / "texts.txt"
    texts.write_text("I love it\nI hate it\n", encoding="utf-8")
    benchmark = root / "benchmark.csv"
    benchmark.write_text("path,label\n0.jpg,positive\n", encoding="utf-8")
    evaluation = root / "evaluation.json"
    evaluation.write_text('{"binary": {}}', encoding="utf-8")
    labelled = root / "labelled"
    labelled.mkdir()
    rows = [(label, f"{text} {i}") for i in range(12)
            for label, text in (("positive", "I love it"), ("negative", "I hate it"), ("neutral", "It is Monday"))]
    (labelled / "train.tsv").write_text("".join(f"{i}\t{label}\t{text}\n" for i, (label, text) in enumerate(rows)),
                                        encoding="utf-8")
    return SimpleNamespace(root=root, crawl=crawl, image=crawl.parent / "0.jpg", ingested=ingested, taught=taught,
                           cleaned=cleaned, texts=texts, benchmark=benchmark, evaluation=evaluation,
                           labelled=labelled, nope=root / "nope")


def fails(args: list, *names: str, code: int = 1) -> str:
    """Run ``visent ARGS``; check the exit code, that no traceback shows, and that the output names ``names``."""
    result = runner.invoke(app, [str(a) for a in args])
    output = " ".join(result.output.split())  # the error panels of typer wrap long lines
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for name in names:
        assert name in output, (name, result.output)
    if code == 1:
        assert "error:" in output
    return output


# Each case: the command line (a function of the fixture's paths), what its message must name, the exit code.
CASES = {
    # ingest
    "ingest: missing source": (lambda p: ["ingest", p.nope, "--out", p.root / "x"], ["nope", "does not exist"], 1),
    "ingest: workers out of range": (lambda p: ["ingest", p.crawl, "--out", p.root / "x", "--workers", "0"],
                                     ["workers", ">= 1"], 1),
    "ingest: unknown engine": (lambda p: ["ingest", p.crawl, "--out", p.root / "x", "--engine", "nope"],
                               ["unknown engine 'nope'", "local"], 1),
    "ingest: malformed --limit": (lambda p: ["ingest", p.crawl, "--out", p.root / "x", "--limit", "many"],
                                  ["--limit"], 2),
    # teach
    "teach: missing dataset": (lambda p: ["teach", p.nope], ["nope", "not a visent dataset"], 1),
    "teach: folder that is not a dataset": (lambda p: ["teach", p.crawl.parent], ["crawl", "not a visent dataset"], 1),
    "teach: unknown teacher": (lambda p: ["teach", p.ingested, "--teacher", "nope"],
                               ["unknown teacher 'nope'", "vader"], 1),
    "teach: folder that is not a teacher": (lambda p: ["teach", p.ingested, "--teacher", p.crawl.parent],
                                            ["teacher.json not found", "visent teacher train"], 1),
    # clean
    "clean: teach has not run": (lambda p: ["clean", p.ingested], ["ingested", "'teach' has not finished"], 1),
    "clean: threshold out of range": (lambda p: ["clean", p.taught, "--neg-threshold", "1.5"],
                                      ["--neg-threshold"], 2),
    "clean: malformed threshold": (lambda p: ["clean", p.taught, "--pos-threshold", "high"], ["--pos-threshold"], 2),
    "clean: near-dup distance out of range": (lambda p: ["clean", p.taught, "--near-dup-distance", "99"],
                                              ["--near-dup-distance"], 2),
    # embed
    "embed: clean has not run": (lambda p: ["embed", p.taught], ["taught", "'clean' has not finished"], 1),
    "embed: unknown backbone": (lambda p: ["embed", p.cleaned, "--backbone", "nope"],
                                ["unknown backbone 'nope'", "efficientnet-lite0"], 1),
    "embed: backbone family without arch": (lambda p: ["embed", p.cleaned, "--backbone", "timm"],
                                            ["timm:<arch>"], 1),
    "embed: unknown runtime": (lambda p: ["embed", p.cleaned, "--backbone", "efficientnet-lite0", "--runtime", "nope"],
                               ["unknown runtime 'nope'", "onnx-int8"], 1),
    "embed: unknown tta": (lambda p: ["embed", p.cleaned, "--backbone", "efficientnet-lite0", "--tta", "nope"],
                           ["test-time augmentation 'nope'", "crops"], 1),
    "embed: unknown engine": (lambda p: ["embed", p.cleaned, "--engine", "nope"], ["unknown engine 'nope'"], 1),
    "embed: batch size out of range": (lambda p: ["embed", p.cleaned, "--batch-size", "0"], ["--batch-size"], 2),
    # train
    "train: missing dataset": (lambda p: ["train", p.nope, "--out", p.root / "m"], ["nope", "not a visent dataset"], 1),
    "train: clean has not run": (lambda p: ["train", p.taught, "--out", p.root / "m"],
                                 ["'clean' has not finished", "visent clean"], 1),
    "train: neither teach nor clean has run": (lambda p: ["train", p.ingested, "--out", p.root / "m"],
                                               ["'teach' and 'clean' to run", "run `visent teach",
                                                "ingested`, then `visent clean", "ingested` first", "visent build"], 1),
    "train: too few posts": (lambda p: ["train", p.cleaned, "--out", p.root / "m"], ["survived cleaning"], 1),
    "train: unknown backbone": (lambda p: ["train", p.cleaned, "--out", p.root / "m", "--backbone", "nope"],
                                ["unknown backbone 'nope'"], 1),
    "train: unknown backbone after +": (lambda p: ["train", p.cleaned, "--out", p.root / "m",
                                                   "--backbone", "efficientnet-lite0+nope"],
                                        ["unknown backbone 'nope'"], 1),
    "train: missing weights": (lambda p: ["train", p.cleaned, "--out", p.root / "m", "--weights", p.nope],
                               ["nope", "--weights"], 1),
    "train: unknown signal": (lambda p: ["train", p.cleaned, "--out", p.root / "m", "--signal", "sarcasm"],
                              ["unknown signal 'sarcasm'", "ocr"], 1),
    "train: unknown runtime": (lambda p: ["train", p.cleaned, "--out", p.root / "m", "--runtime", "tensorrt"],
                               ["unknown runtime 'tensorrt'"], 1),
    "train: unknown tta": (lambda p: ["train", p.cleaned, "--out", p.root / "m", "--tta", "mirror"],
                           ["test-time augmentation 'mirror'"], 1),
    "train: unknown target": (lambda p: ["train", p.cleaned, "--out", p.root / "m", "--target", "fuzzy"],
                              ["target", "'fuzzy'"], 1),
    "train: temperature out of range": (lambda p: ["train", p.cleaned, "--out", p.root / "m",
                                                   "--target-temperature", "0"], ["--target-temperature"], 2),
    # build: options are checked before any stage runs
    "build: missing source": (lambda p: ["build", p.nope, "--out", p.root / "b"], ["nope", "does not exist"], 1),
    "build: unknown teacher": (lambda p: ["build", p.crawl, "--out", p.root / "b", "--teacher", "nope"],
                               ["unknown teacher 'nope'"], 1),
    "build: unknown backbone": (lambda p: ["build", p.crawl, "--out", p.root / "b", "--backbone", "nope"],
                                ["unknown backbone 'nope'"], 1),
    "build: unknown signal": (lambda p: ["build", p.crawl, "--out", p.root / "b", "--signal", "nope"],
                              ["unknown signal 'nope'"], 1),
    "build: unknown tta": (lambda p: ["build", p.crawl, "--out", p.root / "b", "--tta", "nope"],
                           ["test-time augmentation 'nope'"], 1),
    "build: unknown runtime": (lambda p: ["build", p.crawl, "--out", p.root / "b", "--runtime", "nope"],
                               ["unknown runtime 'nope'"], 1),
    # predict
    "predict: missing model": (lambda p: ["predict", p.nope, p.image], ["nope", "no visent model"], 1),
    "predict: dataset given as the model": (lambda p: ["predict", p.cleaned, p.image],
                                            ["cleaned is a visent dataset, not a model",
                                             "cleaned --out MODEL`"], 1),
    "predict: unknown engine": (lambda p: ["predict", "default", p.image, "--engine", "nope"],
                                ["unknown engine 'nope'"], 1),
    "predict: batch size out of range": (lambda p: ["predict", "default", p.image, "--batch-size", "0"],
                                         ["--batch-size"], 2),
    "predict: a folder that does not exist": (lambda p: ["predict", "default", p.nope],
                                              ["nope: no such file or folder"], 1),
    "predict: no input that exists": (lambda p: ["predict", "default", p.nope, f"@{p.nope}"],
                                      ["nope: no such file or folder (nor does the other path given)"], 1),
    # explain
    "explain: missing model": (lambda p: ["explain", p.nope, p.image, "--out", p.root / "maps"],
                               ["nope", "no visent model"], 1),
    "explain: a missing image": (lambda p: ["explain", "default", p.nope, "--out", p.root / "maps"],
                                 ["nope: no such file or folder"], 1),
    "explain: unknown method": (lambda p: ["explain", "default", p.image, "--out", p.root / "maps", "--method", "x"],
                                ["--method: unknown method 'x'", "gradcam"], 1),
    # evaluate
    "evaluate: missing model": (lambda p: ["evaluate", p.nope, "--benchmark", p.benchmark],
                                ["nope", "no visent model"], 1),
    "evaluate: missing benchmark": (lambda p: ["evaluate", "default", "--benchmark", p.nope],
                                    ["nope", "benchmark not found"], 1),
    "evaluate: folder that is not a benchmark": (lambda p: ["evaluate", "default", "--benchmark", p.crawl.parent],
                                                 ["crawl", "labelResultAll.txt"], 1),
    "evaluate: a named benchmark of the wrong kind": (
        lambda p: ["evaluate", "default", "--benchmark", f"mvsa={p.benchmark}"], ["a mvsa benchmark is a folder"], 1),
    "evaluate: folds out of range": (lambda p: ["evaluate", "default", "--benchmark", p.benchmark, "--folds", "1"],
                                     ["--folds"], 2),
    # adapt
    "adapt: missing labels file": (lambda p: ["adapt", "default", "--labels", p.nope, "--out", p.root / "a"],
                                   ["nope", "labels file not found"], 1),
    "adapt: labels of no image that can be read": (
        lambda p: ["adapt", "default", "--labels", p.benchmark, "--out", p.root / "a"], ["no labelled image"], 1),
    "adapt: missing model": (lambda p: ["adapt", p.nope, "--labels", p.benchmark, "--out", p.root / "a"],
                             ["nope", "no visent model"], 1),
    # label suggest / export
    "label suggest: unknown strategy": (lambda p: ["label", "suggest", "default", p.crawl.parent, "--out",
                                                   p.root / "s.csv", "--strategy", "nope"],
                                        ["unknown suggestion strategy 'nope'", "random", "uncertainty"], 1),
    "label suggest: missing model": (lambda p: ["label", "suggest", p.nope, p.crawl.parent, "--out", p.root / "s.csv"],
                                     ["nope", "no visent model"], 1),
    "label suggest: n out of range": (lambda p: ["label", "suggest", "default", p.crawl.parent, "--out",
                                                 p.root / "s.csv", "--n", "0"], ["--n"], 2),
    "label export: two ways to name the images": (lambda p: ["label", "export", "default", p.image, "--out",
                                                             p.root / "t.json", "--url-prefix", "http://x/",
                                                             "--document-root", p.root], ["a URL prefix or a document root, not both"], 1),
    # report
    "report: missing target": (lambda p: ["report", p.nope, "--out", p.root / "r.html"],
                               ["nope", "neither a visent dataset"], 1),
    "report: missing model": (lambda p: ["report", p.cleaned, "--out", p.root / "r.html", "--model", p.nope],
                              ["nope", "no visent model"], 1),
    "report: benchmark without a model": (lambda p: ["report", p.cleaned, "--out", p.root / "r.html",
                                                     "--benchmark", p.benchmark], ["--benchmark needs a model"], 1),
    "report: benchmark and evaluation": (lambda p: ["report", p.cleaned, "--out", p.root / "r.html", "--benchmark",
                                                    p.benchmark, "--evaluation", p.evaluation], ["not both"], 1),
    "report: missing evaluation": (lambda p: ["report", p.cleaned, "--out", p.root / "r.html", "--evaluation", p.nope],
                                   ["nope", "--evaluation"], 1),
    "report: malformed evaluation": (lambda p: ["report", p.cleaned, "--out", p.root / "r.html",
                                                "--evaluation", p.evaluation], ["evaluation.json", "three_class"], 1),
    "report: top out of range": (lambda p: ["report", p.cleaned, "--out", p.root / "r.html", "--top", "-1"],
                                 ["--top"], 2),
    # export
    "export: teach has not run": (lambda p: ["export", p.ingested, "--out", p.root / "e.csv"],
                                  ["'teach' has not finished"], 1),
    "export: malformed split": (lambda p: ["export", p.cleaned, "--out", p.root / "e.csv", "--split", "most"],
                                ["split 'most'", "three numbers"], 1),
    "export: split that does not sum to 1": (lambda p: ["export", p.cleaned, "--out", p.root / "e.csv",
                                                        "--split", "0.5,0.5,0.5"], ["split '0.5,0.5,0.5'", "sum to 1"], 1),
    "export: unknown format": (lambda p: ["export", p.cleaned, "--out", p.root / "e.xlsx"],
                               ["e.xlsx", ".parquet or .csv"], 1),
    # serve (fails before it listens)
    "serve: missing model": (lambda p: ["serve", p.nope], ["nope", "no visent model"], 1),
    "serve: port out of range": (lambda p: ["serve", "default", "--port", "0"], ["--port"], 2),
    "serve: unknown labelling strategy": (lambda p: ["serve", "default", "--label-pool", p.crawl.parent,
                                                     "--label-strategy", "nope"],
                                          ["--label-strategy: unknown strategy 'nope'", "uncertainty"], 1),
    "serve: a label pool that does not exist": (lambda p: ["serve", "default", "--label-pool", p.nope],
                                                ["nope: no such file or folder"], 1),
    # teacher train / predict
    # crawl bluesky (each is refused before any connection is made)
    "crawl bluesky: out is a file": (lambda p: ["crawl", "bluesky", "--out", p.image, "--duration", "1s"],
                                     ["is a file", "crawl into a folder"], 1),
    "crawl bluesky: folder that is no crawl": (lambda p: ["crawl", "bluesky", "--out", p.root, "--duration", "1s"],
                                               ["not a visent crawl", "new or empty folder"], 1),
    "crawl bluesky: bad duration": (lambda p: ["crawl", "bluesky", "--out", p.root / "c", "--duration", "soon"],
                                    ["soon", "72h"], 1),
    "crawl bluesky: unknown source": (lambda p: ["crawl", "bluesky", "--out", p.root / "c", "--source", "nope"],
                                      ["unknown source 'nope'", "firehose", "jetstream"], 1),
    "crawl bluesky: unknown image size": (lambda p: ["crawl", "bluesky", "--out", p.root / "c", "--image-size",
                                                     "huge"], ["huge", "thumbnail", "fullsize"], 1),
    "crawl bluesky: mixed Jetstream wires": (lambda p: ["crawl", "bluesky", "--out", p.root / "c", "--endpoint",
                                                        "ws://127.0.0.1:9/subscribe", "--endpoint",
                                                        "ws://127.0.0.1:9/xrpc/network.bsky.jetstream.subscribeEvents"],
                                             ["cursors differ"], 1),
    "crawl bluesky: posts out of range": (lambda p: ["crawl", "bluesky", "--out", p.root / "c", "--posts", "0"],
                                          ["--posts"], 2),
    "teacher train: missing data": (lambda p: ["teacher", "train", "--data", p.nope, "--out", p.root / "t"],
                                    ["nope", "no such file or folder of labelled texts"], 1),
    "teacher train: folder without labelled texts": (lambda p: ["teacher", "train", "--data", p.crawl.parent,
                                                                "--out", p.root / "t"], ["no labelled files"], 1),
    "teacher train: unknown encoder": (lambda p: ["teacher", "train", "--data", p.labelled, "--out", p.root / "t",
                                                  "--encoder", "nope"], ["unknown text encoder 'nope'", "minilm"], 1),
    "teacher train: epochs out of range": (lambda p: ["teacher", "train", "--data", p.labelled, "--out", p.root / "t",
                                                      "--epochs", "0"], ["--epochs"], 2),
    "teacher predict: unknown teacher": (lambda p: ["teacher", "predict", "nope", p.texts],
                                         ["unknown teacher 'nope'", "default"], 1),
    "teacher predict: folder that is not a teacher": (lambda p: ["teacher", "predict", p.crawl.parent, p.texts],
                                                      ["teacher.json not found"], 1),
    "teacher predict: missing text file": (lambda p: ["teacher", "predict", "vader", p.nope],
                                           ["nope", "no such text file"], 1),
    # the listings take no argument
    "backbones: extra argument": (lambda p: ["backbones", "extra"], ["extra"], 2),
    "teachers: extra argument": (lambda p: ["teachers", "extra"], ["extra"], 2),
    "benchmarks: extra argument": (lambda p: ["benchmarks", "extra"], ["extra"], 2),
    "cache: extra argument": (lambda p: ["cache", "extra"], ["extra"], 2),
    "teacher: unknown subcommand": (lambda p: ["teacher", "fit"], ["fit"], 2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line(case, p):
    args, names, code = CASES[case]
    output = fails(args(p), *names, code=code)
    if code == 1:
        command = case.split(":")[0]
        assert f"error: {command}: " in output  # the line names the command that failed


def test_build_refuses_a_bad_training_option_before_any_stage_runs(p):
    out = p.root / "early"
    fails(["build", p.crawl, "--out", out, "--int8-calibration", "nope"], "unknown int8 calibration 'nope'", code=1)
    assert not out.with_name("early-dataset").exists()  # nothing ingested, taught or cleaned first


def test_every_command_is_driven_with_bad_input():
    group = typer.main.get_command(app)
    listed = {name for name in group.commands if name not in ("teacher", "crawl", "label")}  # type: ignore[attr-defined]
    for sub in ("teacher", "crawl", "label"):
        listed |= {f"{sub} {name}" for name in group.commands[sub].commands}  # type: ignore[attr-defined]
    driven = {case.split(":")[0] for case in CASES} | {"demo"}  # demo: test_demo_without_scikit_image_is_one_line
    assert listed <= driven, listed - driven


def test_a_missing_onnx_runtime_is_one_line(p, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails as if not installed
    fails(["embed", p.cleaned, "--backbone", "efficientnet-lite0", "--runtime", "onnx"],
          "pip install onnxruntime onnx")


def test_demo_without_scikit_image_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    fails(["demo"], "scikit-image", "visent[demo]")


@pytest.mark.parametrize("error", [SignalNotAvailable("the OCR signal needs RapidOCR: `pip install x`"),
                                   RuntimeNotAvailable("the onnx runtimes need onnxruntime"),
                                   BackboneError("backbone says no"), ServerError("server says no"),
                                   ExplainError("explain says no"), ArchiveError("archive says no"),
                                   UnknownName("unknown thing 'x'; choose one of: a, b")],
                         ids=lambda error: type(error).__name__)
def test_any_visent_error_from_a_command_is_one_line(p, monkeypatch, error):
    import visent.embed.dataset

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(visent.embed.dataset, "embed_dataset", refuse)
    output = fails(["embed", p.cleaned], f"error: embed: {error}")
    assert "KeyError" not in output and "\"" not in output  # a KeyError prints its message, not its repr


def test_a_bug_still_shows_its_traceback(p, monkeypatch):
    import visent.embed.dataset

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug in visent")

    monkeypatch.setattr(visent.embed.dataset, "embed_dataset", bug)
    result = runner.invoke(app, ["embed", str(p.cleaned)])
    assert result.exit_code == 1 and isinstance(result.exception, ZeroDivisionError)
    assert "error: embed" not in result.output


ERRORS = [DatasetError, ModelError, BackboneError, RuntimeNotAvailable, SignalNotAvailable, EngineError,
          BenchmarkError, TrainError, ExplainError, ArchiveError, ServerError, TeacherError, UsageError,
          TeacherNotFound, UnknownTeacher, UnknownName, InputError, PathNotFound, CacheError]


@pytest.mark.parametrize("error", ERRORS, ids=lambda error: error.__name__)
def test_every_user_facing_error_is_a_visent_error(error):
    assert issubclass(error, VisentError)


def test_errors_keep_their_builtin_base_for_existing_except_clauses():
    for error, builtin in [(ExplainError, ValueError), (ArchiveError, ValueError), (SignalNotAvailable, ImportError),
                           (ServerError, RuntimeError), (UsageError, ValueError), (UnknownName, KeyError),
                           (UnknownTeacher, KeyError), (TeacherNotFound, FileNotFoundError),
                           (TeacherError, ValueError), (PathNotFound, FileNotFoundError), (InputError, ValueError),
                           (RuntimeNotAvailable, BackboneError)]:
        assert issubclass(error, builtin), (error, builtin)


def test_registry_names_the_valid_choices():
    registry: Registry[int] = Registry("widget")
    registry.register("b")(lambda: 2)
    registry.register("a")(lambda: 1)
    assert registry.create("a") == 1
    with pytest.raises(UsageError) as raised:
        registry.create("c")
    assert isinstance(raised.value, KeyError)
    assert str(raised.value) == "unknown widget 'c'; choose one of: a, b"


def test_teacher_names_and_folders(tmp_path):
    from visent.teach import load_teacher

    with pytest.raises(UnknownTeacher, match=r"unknown teacher 'nope'; choose one of: default, vader"):
        load_teacher("nope")
    with pytest.raises(TeacherNotFound, match="teacher.json not found"):
        load_teacher(str(tmp_path))
    (tmp_path / "teacher.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(TeacherError, match="not valid JSON"):
        load_teacher(str(tmp_path))


def test_a_dataset_given_as_the_model_names_the_model_build_made_beside_it(tmp_path):
    import shutil

    from visent.model.student import packaged_model_dir

    shutil.copytree(packaged_model_dir(), tmp_path / "runs" / "mine")
    (tmp_path / "runs" / "mine-dataset").mkdir()
    (tmp_path / "runs" / "mine-dataset" / "manifest.json").write_text('{"visent_dataset": 1, "stages": {}}')
    fails(["predict", tmp_path / "runs" / "mine-dataset", tmp_path], "mine-dataset is a visent dataset, not a model",
          f"`visent build` made its model beside it: {tmp_path / 'runs' / 'mine'}")
