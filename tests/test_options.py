"""One options record per stage: the stage function, its recorded parameters, the stage's command line and `visent
build`'s are all made from it. Every stage option reaches `visent build`, a field added to a record reaches it too,
the parameters a stage records are those visent recorded before the records (a dataset made then is not run
again), and keyword arguments and records give the same tables."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import visent.build
import visent.clean
import visent.cli
import visent.ingest
import visent.teach
import visent.train
from test_pipeline import make_crawl
from visent import Dataset
from visent.build import BuildOptions
from visent.clean import CleanOptions
from visent.cli import app
from visent.core.errors import VisentError
from visent.core.options import OPTION, combine, command, fingerprinted, flags, option, options
from visent.ingest import IngestOptions
from visent.teach import TeachOptions
from visent.train import TrainOptions

runner = CliRunner()
RECORDS = {"ingest": IngestOptions, "teach": TeachOptions, "clean": CleanOptions, "train": TrainOptions}
THRESHOLDS = {"negative": 0.4, "neutral": 0.9, "positive": 0.4}


def _command(name: str) -> Any:
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def _option_names(name: str) -> set[str]:
    return {decl for param in _command(name).params for decl in (*param.opts, *param.secondary_opts)
            if decl.startswith("--")}


def _other_value(flag: Any) -> list[str]:
    """Command-line words that give the option ``flag`` a value other than its default."""
    kind, decl = flag.type, flag.decls[0]
    if typing.get_origin(kind) is typing.Union:
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if kind is bool:
        on, _, off = decl.partition("/")
        return [off if flag.default and off else on]
    if typing.get_origin(kind) is list:
        return [decl, "x"]
    if kind is int:
        value = (flag.default or 0) + 1
        return [decl, str(value if flag.max is None or value <= flag.max else flag.default - 1)]
    if kind is float:
        return [decl, "0.37"]
    return [decl, "x.pt" if kind is Path else "x"]


def _words(record: type) -> list[str]:
    return [word for _, options_of_field in flags(record) for flag in options_of_field for word in _other_value(flag)]


# --------------------------------------------------------------------------- the records
@pytest.mark.parametrize("stage", RECORDS)
def test_every_field_of_a_stage_record_is_an_option_with_its_help(stage):
    record = RECORDS[stage]
    assert [f.name for f in dataclasses.fields(record)] == [f.name for f, _ in options(record)]
    for f, spec in options(record):
        assert spec.help.strip() and f.default is not dataclasses.MISSING, f.name


def test_a_name_that_is_no_option_is_an_error_naming_it(tmp_path):
    from visent.clean import clean
    from visent.ingest import ingest
    from visent.teach import teach
    from visent.train import train

    for call in (lambda: clean(tmp_path, near_dup=3), lambda: teach(tmp_path, near_dup=3),
                 lambda: train(tmp_path, tmp_path / "m", near_dup=3), lambda: ingest(tmp_path, tmp_path, near_dup=3)):
        with pytest.raises(TypeError, match="unknown option 'near_dup'"):
            call()
    with pytest.raises(TypeError, match="CleanOptions, not TrainOptions"):
        clean(tmp_path, TrainOptions())


# --------------------------------------------------------------------------- the command lines
@pytest.mark.parametrize("stage", RECORDS)
def test_a_stage_command_offers_its_record_and_gives_every_option_to_its_stage(stage, monkeypatch, tmp_path):
    record = RECORDS[stage]
    own = {decl.split("/")[0] for _, options_of_field in flags(record) for flag in options_of_field
           for decl in flag.decls}
    assert own <= _option_names(stage)
    assert _option_names(stage) - {decl for decl in _option_names(stage) if decl.startswith("--no-")} - own \
        <= {"--out", "--help", "--keep-neutral"}
    got: dict[str, Any] = {}

    def fake(*args: Any, options: Any = None, **kwargs: Any) -> None:
        got["options"] = options if options is not None else next(a for a in args if isinstance(a, record))
        raise VisentError("stop")

    monkeypatch.setattr(getattr(visent, stage), stage, fake)
    monkeypatch.setattr(visent.cli, "_engine", lambda name, address: name)
    out = ["--out", str(tmp_path / "o")] if stage in ("ingest", "train") else []
    result = runner.invoke(app, [stage, str(tmp_path), *out, *_words(record)])
    assert result.exit_code == 1 and "stop" in result.output, result.output
    changed, default = got["options"], record()
    assert isinstance(changed, record)
    assert [f.name for f in dataclasses.fields(record) if getattr(changed, f.name) == getattr(default, f.name)] == []


def test_every_stage_option_is_an_option_of_build(monkeypatch, tmp_path):
    """Each field of the four records is an option of `visent build` (its own flag, or the stage's name in front
    where two stages mean different things by one name), and reaches its stage's record."""
    built = _option_names("build")
    for stage, record in RECORDS.items():
        for name, options_of_field in flags(record):
            for flag in options_of_field:
                decl = flag.decls[0].split("/")[0]
                assert decl in built or decl.replace("--", f"--{stage}-", 1) in built, (stage, name, decl)
    assert {"--ingest-batch-size", "--teach-batch-size", "--train-batch-size", "--seed", "--engine",
            "--drop-neutral", "--finetune-epochs", "--C", "--force", "--limit"} <= built
    assert "--batch-size" not in built
    # BuildOptions: the fields of the four records, batch_size once per stage, seed and engine once
    expected = {f"{stage}_{f.name}" if f.name == "batch_size" else f.name
                for stage, record in RECORDS.items() for f in dataclasses.fields(record)}
    assert {f.name for f in dataclasses.fields(BuildOptions)} == expected | {"ingest"}
    assert BuildOptions.records == RECORDS
    assert all(BuildOptions().part(stage) == record() for stage, record in RECORDS.items())

    got: dict[str, Any] = {}

    def fake(source: Any, out: Any, *, dataset: Any = None, options: Any = None) -> None:
        got["options"] = options
        raise VisentError("stop")

    monkeypatch.setattr(visent.build, "build", fake)
    words = [w.replace("--batch-size", f"--{stage}-batch-size") for stage, record in RECORDS.items()
             for w in _words(record)]
    result = runner.invoke(app, ["build", str(tmp_path), "--out", str(tmp_path / "m"), *words])
    assert result.exit_code == 1 and "stop" in result.output, result.output
    options_given = got["options"]
    for stage, record in RECORDS.items():
        part, default = options_given.part(stage), record()
        assert [f.name for f in dataclasses.fields(record)
                if getattr(part, f.name) == getattr(default, f.name)] == [], stage


def test_a_field_added_to_a_stage_record_becomes_an_option_of_build():
    @dataclass
    class GrownClean(CleanOptions):
        blur_threshold: float = option(0.0, help="Drop images blurrier than this.", min=0.0)

    grown = combine("Grown", {**RECORDS, "clean": GrownClean}, module=__name__)

    def build(source: Path = typer.Argument(...), options: Any = None) -> Any:
        return options

    made = typer.Typer(add_completion=False)
    made.command()(command(build, grown))
    click_command = typer.main.get_command(made)
    assert "--blur-threshold" in {decl for param in click_command.params for decl in param.opts}
    assert {decl for param in click_command.params for decl in param.opts} - {"--blur-threshold", "source"} \
        == _option_names("build") - {"--out", "--dataset", "--help"} - {
            decl for decl in _option_names("build") if decl.startswith(("--no-", "--keep-"))}
    options_given = click_command.main(["src", "--blur-threshold", "0.5", "--balance"], standalone_mode=False)
    assert options_given.part("clean") == GrownClean(blur_threshold=0.5, balance=True)


def test_a_name_two_stages_mean_alike_is_one_option_and_one_they_do_not_is_two():
    fields = {f.name: f for f in dataclasses.fields(BuildOptions)}
    assert {"seed", "engine", "ray_address"} <= set(fields) and "batch_size" not in fields
    assert fields["seed"].metadata[OPTION].help.endswith("For clean and train.")
    options_given = BuildOptions(seed=3, engine="ray", ingest_batch_size=5, teach_batch_size=6, train_batch_size=7)
    assert options_given.part("clean").seed == options_given.part("train").seed == 3
    assert options_given.part("ingest").engine == options_given.part("teach").engine == "ray"
    assert [options_given.part(s).batch_size for s in ("ingest", "teach", "train")] == [5, 6, 7]
    assert BuildOptions.of(clean=CleanOptions(balance=True), train=TrainOptions(C=0.1)) == BuildOptions(balance=True,
                                                                                                        C=0.1)
    # the Python callers' forms keep working
    old = BuildOptions(teacher="vader", thresholds=THRESHOLDS, ingest={"batch_size": 5, "workers": 1})
    assert BuildOptions(**{**old.__dict__, "ingest": {"ids": {"1"}}}).teacher == "vader"


def test_help_of_visent_imports_no_stage():
    """The records live with their stages; a command's options are made when its help or run needs them."""
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom visent.cli import app\n"
            "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
            "print(sorted(m for m in ('sklearn', 'scipy', 'visent.teach', 'visent.train', 'visent.clean') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- the parameters the stages record
def test_the_parameters_of_the_records_are_pinned():
    assert IngestOptions().params(Path("/c/posts.jsonl"), "jsonl", None) == {
        "source": "/c/posts.jsonl", "format": "jsonl", "timeout": 10.0, "retries": 3, "max_bytes": 20000000,
        "limit": None, "ids": None}
    assert TeachOptions().params("id", "digest") == {"teacher": "default", "teacher_id": "id", "posts": "digest"}
    assert CleanOptions().params({"negative": 0.5}) == {
        "thresholds": {"negative": 0.5}, "near_dup_distance": 4, "min_side": 32, "balance": False,
        "drop_neutral": False, "seed": 0}
    common = {"dataset": "/d", "posts": "p", "backbone": "efficientnet-lite0-ms", "weights": None, "target": "soft",
              "val_fraction": 0.2, "C": None, "tta": "none", "finetune_blocks": 0, "finetune_epochs": None,
              "batch_size": 32, "seed": 0, "runtime": "onnx-int8", "signals": [], "signal_teacher": None,
              "target_temperature": 1.0, "self_training": 0, "self_training_alpha": None, "calibrate": True,
              "int8_calibration": "packaged", "visent": visent.__version__}
    train = TrainOptions().params(dataset="/d", posts="p", weights=None, tta="none", runtime="onnx-int8")
    assert train == common and list(train) == list(common)  # metrics.json keeps this order
    # the options that matter only with another: recorded only then
    other = TrainOptions(finetune_blocks=1, self_training=2, signals=("ocr",), C=0.1)
    assert other.params(dataset="/d", posts="p", weights="w", tta="flip", runtime="torch") == {
        **common, "weights": "w", "C": 0.1, "tta": "flip", "finetune_blocks": 1, "finetune_epochs": 3,
        "runtime": "torch", "signals": ["ocr"], "signal_teacher": "vader", "self_training": 2,
        "self_training_alpha": 0.5, "int8_calibration": None}
    for record in RECORDS.values():  # the options that change what a stage writes are among its parameters
        names = {f.name for f in dataclasses.fields(record)}
        assert set(fingerprinted(record)) <= set(_params_of(record))
        assert not (names - set(fingerprinted(record))) & set(_params_of(record))


def _params_of(record: type) -> dict[str, Any]:
    if record is IngestOptions:
        return IngestOptions().params(Path("/s"), "jsonl", None)
    if record is TeachOptions:
        return TeachOptions().params("id", "p")
    if record is CleanOptions:
        return CleanOptions().params({})
    return TrainOptions().params(dataset="/d", posts="p", weights=None, tta="none", runtime="onnx-int8")


@pytest.fixture(scope="module")
def taught(tmp_path_factory) -> Path:
    """A small crawl, ingested and taught by VADER with the default options (no images embedded)."""
    from visent.ingest import ingest
    from visent.teach import teach

    root = tmp_path_factory.mktemp("options")
    ingest(make_crawl(root / "crawl", n_per_class=6), root / "ds")
    teach(root / "ds", "vader")
    return root / "ds"


def test_the_parameters_the_stages_record_are_those_of_before_the_records(taught, tmp_path):
    from visent.clean import clean

    ds = tmp_path / "ds"
    shutil.copytree(taught, ds)
    clean(ds)
    stages = Dataset(ds).manifest["stages"]
    assert stages["ingest"]["params"] == {"source": str(taught.parent / "crawl" / "posts.jsonl"), "format": "jsonl",
                                          "timeout": 10.0, "retries": 3, "max_bytes": 20000000, "limit": None,
                                          "ids": None}
    assert stages["teach"]["params"] == {"teacher": "vader", "posts": stages["teach"]["params"]["posts"],
                                         "teacher_id": "vader:76ca8e5118473ef5:prior=[0.333333, 0.333333, 0.333333]"}
    assert stages["clean"]["params"] == {"thresholds": {"negative": 0.5, "neutral": 0.5, "positive": 0.5},
                                         "near_dup_distance": 4, "min_side": 32, "balance": False,
                                         "drop_neutral": False, "seed": 0}


def test_keyword_arguments_and_records_give_the_same_tables(taught, tmp_path):
    import pyarrow.parquet as pq

    from visent.clean import clean
    from visent.ingest import ingest
    from visent.teach import teach

    crawl = taught.parent / "crawl" / "posts.jsonl"
    ingest(crawl, tmp_path / "a", workers=1, batch_size=3, limit=6)
    ingest(crawl, tmp_path / "b", IngestOptions(workers=1, batch_size=3, limit=6))
    teach(tmp_path / "a", "vader", batch_size=2)
    teach(tmp_path / "b", options=TeachOptions(teacher="vader", batch_size=2))
    clean(tmp_path / "a", thresholds=THRESHOLDS, near_dup_distance=0, balance=True, seed=3)
    clean(tmp_path / "b", CleanOptions(thresholds=THRESHOLDS, near_dup_distance=0, balance=True, seed=3))
    for table in ("posts", "teach", "clean"):
        a, b = (pq.read_table(Dataset(tmp_path / n).table_path(table)) for n in "ab")
        assert a.equals(b), table
    a, b = ({stage: info["params"] for stage, info in Dataset(tmp_path / n).manifest["stages"].items()} for n in "ab")
    assert a == b


@pytest.mark.slow
def test_train_with_keyword_arguments_or_a_record_gives_the_same_model_and_parameters(taught, tmp_path):
    import numpy as np

    from visent.clean import clean
    from visent.model import VisentModel
    from visent.train import train

    ds = tmp_path / "ds"
    shutil.copytree(taught, ds)
    clean(ds, thresholds={"negative": 0.3, "neutral": 0.9, "positive": 0.3})
    by_kwargs = train(ds, tmp_path / "a", C=0.1)
    by_record = train(ds, tmp_path / "b", TrainOptions(C=0.1))
    assert by_kwargs.metrics["params"] == by_record.metrics["params"] == {
        **TrainOptions(C=0.1).params(dataset=str(ds.resolve()), posts=by_kwargs.metrics["params"]["posts"],
                                     weights=None, tta="none", runtime="onnx-int8")}
    images = sorted(str(p) for p in (ds / "images").rglob("*") if p.is_file())[:6]
    a, b = (VisentModel.load(tmp_path / n).predict_proba(images)[0] for n in "ab")
    assert np.array_equal(a, b)
