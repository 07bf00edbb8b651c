"""The typed result of evaluate (visent.evaluate.record.Evaluation): its JSON read and written key for key, as
`visent evaluate --out` writes it, and its two drawings, for the terminal (`visent evaluate`) and for the report."""

from __future__ import annotations

import copy
import io
import json
import re

import numpy as np
import pytest
from rich.console import Console

from visent.core.errors import InputError
from visent.core.labels import CLASSES
from visent.core.store import atomic_write_json
from visent.evaluate import (
    BinaryFigures,
    Evaluation,
    KFold,
    PublishedFigure,
    SubsetEvaluation,
    ThreeClassFigures,
    compute_metrics,
    print_evaluation,
)
from visent.evaluate.kfold import summarise
from visent.report.evaluation import evaluation_html


def _binary(n, positive, accuracy, balanced, f1, intervals=True):
    figures = {"n": n, "n_positive": positive, "n_negative": n - positive, "accuracy": accuracy,
               "balanced_accuracy": balanced}
    if intervals:
        figures.update(accuracy_ci95=[accuracy - 0.1, accuracy + 0.1],
                       balanced_accuracy_ci95=[balanced - 0.125, balanced + 0.125])
    figures.update(macro_f1=f1, confusion={"labels": ["negative", "positive"],
                                           "rows_true_cols_predicted": [[n - positive - 1, 1], [2, positive - 2]]})
    return figures


def _three(n, accuracy, ece):
    return {"n": n, "accuracy": accuracy,
            "confusion": {"labels": list(CLASSES), "rows_true_cols_predicted": [[3, 1, 0], [0, 0, 0], [1, 0, 5]]},
            "ece": ece,
            "reliability": {"bins": [{"lo": 0.0, "hi": 0.5, "count": 4, "confidence": 0.45, "accuracy": 0.5},
                                     {"lo": 0.5, "hi": 1.0, "count": 6, "confidence": 0.75, "accuracy": None}]}}


def _kfold(n, split):
    def run(fold, C=None):
        return {"fold": fold, **({"C": C} if C is not None else {}),
                "binary": _binary(n // 2, n // 4, 0.75, 0.5, 0.625, intervals=False),
                "three_class": _three(n // 2, 0.5, 0.25)}

    return {"folds": 2, "seed": 0, "split": split, "n": n,
            "runs": {"student": [run(0), run(1)], "from_student": [run(0, 0.01), run(1, 0.1)]},
            "summary": {"student": {"binary_accuracy": [0.75, 0.125], "binary_balanced_accuracy": [0.5, 0.0],
                                    "ece": [0.25, 0.0625]},
                        "from_student": {"binary_accuracy": [0.875, 0.0], "binary_balanced_accuracy": [0.625, 0.125],
                                         "ece": [0.125, 0.0]}}}


def sample() -> dict:
    """What `visent evaluate --out` writes for a Twitter-I-like benchmark with --folds: every part, made up."""
    whole = _kfold(12, "stratified, seed 0")
    return {
        "benchmark": "twitter-i=/data/Twitter-I", "model": "/models/default", "n": 14, "n_scored": 12,
        "n_unreadable": 2,
        "unreadable": ["/data/a.jpg: not an image", "/data/b.jpg: not an image"], "n_skipped_labels": 1,
        "kind": "twitter-i", "training_overlap": {"shared": 3, "n": 14, "dataset": "/data/crawl-dataset"},
        "binary": _binary(12, 6, 0.75, 0.75, 0.625), "three_class": _three(12, 0.5, 0.25),
        "subsets": {
            "5-agree": {"n": 4, "binary": _binary(4, 2, 0.5, 0.5, 0.5), "three_class": _three(4, 0.5, 0.125),
                        "kfold_skipped": "k-fold evaluation needs at least 2 images of every class present, "
                                         "got [1, 0, 3]"},
            "4-agree": {"n": 8, "binary": _binary(8, 4, 0.625, 0.625, 0.625), "three_class": _three(8, 0.625, 0.125),
                        "kfold": _kfold(8, "the benchmark's own folds")},
            "3-agree": {"n": 12, "binary": _binary(12, 6, 0.75, 0.75, 0.625), "three_class": _three(12, 0.5, 0.25),
                        "kfold": whole, "kfold_is_all": True}},
        "published": [{"benchmark": "twitter-i", "subset": "5-agree", "protocol": "zero-shot", "metric": "accuracy",
                       "value": 0.878, "model": "a ViT student", "citation": "Serra et al., ECAI 2023",
                       "doi": "10.3233/FAIA230503"}],
        "kfold": whole,
    }


def measured() -> dict:
    """An evaluation's JSON made of compute_metrics' and the k-fold summary's own figures (3 classes, no subsets)."""
    rng = np.random.default_rng(7)
    probs = rng.dirichlet([1, 1, 1], size=60)
    labels = [CLASSES[k] for k in rng.integers(0, 3, size=60)]
    runs = {"student": [{"fold": f, **compute_metrics(labels[f::2], probs[f::2])} for f in range(2)]}
    return {"benchmark": "bench.csv", "model": "/models/m", "n": 60, "n_scored": 60, "n_unreadable": 0,
            "unreadable": [],
            "n_skipped_labels": 0, "kind": "csv", **compute_metrics(labels, probs),
            "kfold": {"folds": 2, "seed": 0, "split": "stratified, seed 0", "n": 60, "runs": runs,
                      "summary": {name: summarise(rows) for name, rows in runs.items()}}}


# JSON --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [sample, measured])
def test_the_json_reads_back_key_for_key(make, tmp_path):
    data = make()
    evaluation = Evaluation.from_json(data)
    assert evaluation.to_json() == data
    assert json.dumps(evaluation.to_json()) == json.dumps(data)  # the same keys in the same order
    written, expected = tmp_path / "eval.json", tmp_path / "expected.json"
    assert evaluation.save(written) == written
    atomic_write_json(expected, data)  # as `visent evaluate --out` wrote it before the record
    assert written.read_bytes() == expected.read_bytes()
    assert Evaluation.load(written) == evaluation


def test_the_record_is_typed():
    evaluation = Evaluation.from_json(sample())
    assert isinstance(evaluation.binary, BinaryFigures) and evaluation.binary.accuracy == 0.75
    assert evaluation.binary.balanced_accuracy_ci95 == [0.625, 0.875]
    assert isinstance(evaluation.three_class, ThreeClassFigures) and evaluation.three_class.macro_f1 is None
    assert evaluation.three_class.reliability[1].accuracy is None and evaluation.three_class.reliability[0].count == 4
    assert evaluation.training_overlap.shared == 3 and evaluation.kind == "twitter-i"
    subsets = evaluation.subsets
    assert all(isinstance(subset, SubsetEvaluation) for subset in subsets.values())
    assert subsets["3-agree"].kfold_is_all and subsets["3-agree"].kfold == evaluation.kfold
    assert subsets["5-agree"].kfold is None and "at least 2 images" in subsets["5-agree"].kfold_skipped
    assert isinstance(evaluation.kfold, KFold) and evaluation.kfold.summary["student"]["ece"] == (0.25, 0.0625)
    assert evaluation.kfold.runs["from_student"][1].C == 0.1 and evaluation.kfold.runs["student"][0].C is None
    assert evaluation.published == [PublishedFigure(**sample()["published"][0])]


def test_what_an_evaluation_lacks_stays_out_of_its_json():
    data = sample()
    for key in ("training_overlap", "subsets", "published", "kfold"):
        del data[key]
    evaluation = Evaluation.from_json(data)
    assert (evaluation.training_overlap, evaluation.subsets, evaluation.published, evaluation.kfold) == (None,) * 4
    assert evaluation.to_json() == data
    data["subsets"] = {}  # a benchmark with subsets none of whose images could be read
    assert Evaluation.from_json(data).to_json() == data


def test_an_older_visents_json_reads_and_writes_back_as_it_was():
    data = sample()
    del data["kind"], data["three_class"]["reliability"], data["kfold"]["split"]
    for figures in (data["binary"], data["subsets"]["4-agree"]["binary"]):
        del figures["accuracy_ci95"], figures["balanced_accuracy_ci95"]
    data["made_by"] = "a later visent"  # an entry this visent does not know is kept
    evaluation = Evaluation.from_json(data)
    assert evaluation.kind is None and evaluation.three_class.reliability is None and evaluation.kfold.split is None
    assert evaluation.binary.accuracy_ci95 is None
    assert evaluation.to_json() == data


def test_a_json_that_is_not_an_evaluation_says_what_it_lacks():
    data = sample()
    del data["binary"]["n_positive"]
    with pytest.raises(InputError, match="no 'n_positive' entry in the binary figures"):
        Evaluation.from_json(data)
    with pytest.raises(InputError, match="no 'n_scored' entry"):
        Evaluation.from_json({k: v for k, v in sample().items() if k != "n_scored"})
    with pytest.raises(InputError, match="not a JSON object"):
        Evaluation.from_json([1, 2])  # type: ignore[arg-type]


# the terminal --------------------------------------------------------------------------------------------------
# what `visent evaluate` printed for sample() (at 100 columns) before its evaluation was a record, trailing spaces
# left out
CONSOLE = """\
  default on twitter-i=/data/Twitter-I: all 12 readable
           images (the twitter-i 3-agree set)
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ metric                       ┃                  value ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━┩
│ images (scored / unreadable) │                 12 / 2 │
│ binary n (pos / neg)         │             12 (6 / 6) │
│ binary accuracy              │ 0.7500  [0.650, 0.850] │
│ binary balanced accuracy     │ 0.7500  [0.625, 0.875] │
│ binary macro f1              │                 0.6250 │
│ ECE (3-class)                │                 0.2500 │
└──────────────────────────────┴────────────────────────┘
confusion (rows true, columns predicted; negative, neutral, positive): [[3, 1, 0], [0, 0, 0], [1, 0,
5]]
in brackets: the 95% bootstrap interval over the images
                          binary, per subset
┏━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┓
┃ subset  ┃ n (pos / neg) ┃              accuracy ┃ balanced accuracy ┃
┡━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━┩
│ 5-agree │     4 (2 / 2) │ 0.5000 [0.400, 0.600] │            0.5000 │
│ 4-agree │     8 (4 / 4) │ 0.6250 [0.525, 0.725] │            0.6250 │
│ 3-agree │    12 (6 / 6) │ 0.7500 [0.650, 0.850] │            0.7500 │
└─────────┴───────────────┴───────────────────────┴───────────────────┘
published figures for this benchmark (as the papers report them; not re-measured by visent, and
their models, data and protocols differ from this student's):
  5-agree: accuracy 0.878, a ViT student; zero-shot. Serra et al., ECAI 2023, doi:10.3233/FAIA230503
              2-fold protocol on 12 images, stratified, seed 0 (mean ± std over folds)
┏━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┓
┃                 ┃                 ┃                ┃          ┃         3-class ┃                ┃
┃ head            ┃    balanced acc ┃     binary acc ┃ macro-F1 ┃        macro-F1 ┃            ECE ┃
┡━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━┩
│ student (zero   │ 0.5000 ± 0.0000 │       0.7500 ± │        - │               - │       0.2500 ± │
│ human labels)   │                 │         0.1250 │          │                 │         0.0625 │
│ fine-tuned from │ 0.6250 ± 0.1250 │       0.8750 ± │        - │               - │       0.1250 ± │
│ the student     │                 │         0.0000 │          │                 │         0.0000 │
└─────────────────┴─────────────────┴────────────────┴──────────┴─────────────────┴────────────────┘
2-fold protocol on the 4-agree subset's 8 images, the benchmark's own folds (mean ± std over folds)
┏━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┓
┃                 ┃                 ┃                ┃          ┃         3-class ┃                ┃
┃ head            ┃    balanced acc ┃     binary acc ┃ macro-F1 ┃        macro-F1 ┃            ECE ┃
┡━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━┩
│ student (zero   │ 0.5000 ± 0.0000 │       0.7500 ± │        - │               - │       0.2500 ± │
│ human labels)   │                 │         0.1250 │          │                 │         0.0625 │
│ fine-tuned from │ 0.6250 ± 0.1250 │       0.8750 ± │        - │               - │       0.1250 ± │
│ the student     │                 │         0.0000 │          │                 │         0.0000 │
└─────────────────┴─────────────────┴────────────────┴──────────┴─────────────────┴────────────────┘
the 3-agree subset holds every image: its k-fold protocol is the table above
"""
CONSOLE_ERR = """warning: 3 of the benchmark's 14 images are among the images the student learnt from (its dataset
/data/crawl-dataset, with the teacher's labels): on those the figures are not held out; evaluate on
images outside the crawl or with held-out folds.
no k-fold protocol on the 5-agree subset: k-fold evaluation needs at least 2 images of every class
present, got [1, 0, 3]
"""


def _draw(evaluation: Evaluation, width: int = 100) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    print_evaluation(evaluation, model="default", benchmark="twitter-i=/data/Twitter-I",
                     out=Console(file=out, width=width), err=Console(file=err, width=width))
    return tuple("\n".join(line.rstrip() for line in text.getvalue().splitlines()) + "\n" for text in (out, err))


def test_the_console_drawing_is_what_visent_evaluate_printed():
    out, err = _draw(Evaluation.from_json(sample()))
    assert out == CONSOLE
    assert err == CONSOLE_ERR


def test_the_console_drawing_leaves_out_what_an_evaluation_lacks():
    data = sample()
    for key in ("training_overlap", "subsets", "published", "kfold"):
        del data[key]
    data["three_class"].update(macro_f1=0.5, balanced_accuracy=0.625)  # a benchmark with neutral images
    out, err = _draw(Evaluation.from_json(data), width=200)
    assert err == "\n"
    assert "all 12 readable images" in " ".join(out.split()) and "3-agree" not in out  # the title wraps
    assert re.search(r"3-class macro-F1 +│ +0.5000", out)
    assert "per subset" not in out and "published" not in out and "fold" not in out


# the report ----------------------------------------------------------------------------------------------------
def _table(page: str, css: str) -> list[list[str]]:
    body = re.search(rf'<table class="{css}">(.*?)</table>', page, re.DOTALL).group(1)
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]


def test_the_report_drawing_shows_every_part():
    page = evaluation_html(Evaluation.from_json(sample()))
    assert page.startswith("<p>/models/default on twitter-i=/data/Twitter-I: 12 images scored, 2 unreadable, "
                           "1 label skipped.</p>")
    assert "3 of the benchmark&#x27;s 14 images are among this dataset&#x27;s kept images" in page
    metrics = _table(page, "metrics")
    assert metrics[1:] == [["binary (positive vs negative)", "12", "0.750", "0.750", "0.625", "–"],
                           ["3 classes (argmax)", "12", "0.500", "–", "–", "0.250"]]
    assert "accuracy 0.650–0.850; balanced accuracy 0.625–0.875." in page
    assert len(re.findall(r"data:image/png;base64,", page)) == 2  # confusion matrices, reliability diagram
    assert [row[0] for row in _table(page, "subsets")[1:]] == ["5-agree", "4-agree", "3-agree"]
    assert _table(page, "published")[1][:3] == ["5-agree", "accuracy", "0.878"]
    assert "2-fold protocol (mean ± std over folds)" in page and "2-fold protocol, 4-agree subset" in page
    assert "3-agree subset" not in page and "5-agree subset" not in page  # every image; no k-fold protocol


def test_the_report_drawing_of_an_older_evaluation_says_what_it_lacks():
    data = copy.deepcopy(sample())
    del data["three_class"]["reliability"], data["binary"]["accuracy_ci95"], data["binary"]["balanced_accuracy_ci95"]
    del data["training_overlap"], data["published"]
    page = evaluation_html(Evaluation.from_json(data))
    assert len(re.findall(r"data:image/png;base64,", page)) == 1 and "no reliability bins" in page
    assert "bootstrap intervals" not in page and "Published figures" not in page and "kept images" not in page
