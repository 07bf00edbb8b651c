import numpy as np
import pytest

from visent.core.numeric import expected_calibration_error
from visent.evaluate import BenchmarkError, compute_metrics, load_benchmark


def test_binary_protocol_ignores_neutral_and_uses_pos_vs_neg():
    labels = ["positive", "positive", "negative", "negative", "neutral"]
    probs = np.array([
        [0.1, 0.5, 0.4],   # pos: argmax neutral, but P(pos) > P(neg) -> positive (correct)
        [0.6, 0.1, 0.3],   # pos -> negative (wrong)
        [0.5, 0.2, 0.3],   # neg -> negative (correct)
        [0.2, 0.3, 0.5],   # neg -> positive (wrong)
        [0.2, 0.6, 0.2],   # neutral: not in binary
    ])
    m = compute_metrics(labels, probs)
    b = m["binary"]
    assert b["n"] == 4 and b["n_positive"] == 2 and b["n_negative"] == 2
    assert b["accuracy"] == pytest.approx(0.5)
    assert b["balanced_accuracy"] == pytest.approx(0.5)
    assert b["confusion"]["rows_true_cols_predicted"] == [[1, 1], [1, 1]]
    three = m["three_class"]
    assert three["n"] == 5
    # argmax predictions: neutral, negative, negative, positive, neutral
    assert three["confusion"]["rows_true_cols_predicted"] == [[1, 0, 1], [0, 1, 0], [1, 1, 0]]
    assert "macro_f1" in three


def test_binary_balanced_accuracy_differs_from_accuracy_when_imbalanced():
    labels = ["positive"] * 8 + ["negative"] * 2
    probs = np.array([[0.2, 0.0, 0.8]] * 10)  # always positive
    b = compute_metrics(labels, probs)["binary"]
    assert b["accuracy"] == pytest.approx(0.8)
    assert b["balanced_accuracy"] == pytest.approx(0.5)
    assert "macro_f1" not in compute_metrics(labels, probs)["three_class"]


def test_ece_zero_when_confidence_matches_accuracy():
    labels = np.array([2, 2, 2, 0])
    probs = np.array([[0.25, 0.0, 0.75]] * 4)  # 75% confident, 75% right
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([0]), np.array([[0.0, 0.0, 1.0]])) == pytest.approx(1.0)


def test_csv_benchmark_names_header_and_relative_paths(tmp_path):
    (tmp_path / "b.csv").write_text("path,label\nimgs/a.jpg,positive\nimgs/b.jpg,Negative\nimgs/c.jpg,neutral\nimgs/d.jpg,happy\n")
    bench = load_benchmark(tmp_path / "b.csv")
    assert bench.labels == ["positive", "negative", "neutral"]
    assert bench.paths[0] == str(tmp_path / "imgs" / "a.jpg")
    assert bench.has_neutral
    assert len(bench.skipped) == 1 and "happy" in bench.skipped[0]


def test_csv_benchmark_binary_digits_follow_n_agree_files(tmp_path):
    (tmp_path / "five_agree.csv").write_text("/x/1.jpg,1\n/x/2.jpg,0\n")
    bench = load_benchmark(tmp_path / "five_agree.csv")
    assert bench.labels == ["positive", "negative"]
    assert bench.paths == ["/x/1.jpg", "/x/2.jpg"]


def test_missing_benchmark_names_the_spec(tmp_path):
    with pytest.raises(BenchmarkError, match="nope.csv"):
        load_benchmark(tmp_path / "nope.csv")


def test_mvsa_folder_benchmark_uses_image_labels_and_majority_votes(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "labelResultAll.txt").write_text(
        "ID\ttext,image\n"
        "1\tpositive,negative\n"
        "2\tneutral,neutral\n"
        "3\tnegative,positive\tnegative,positive\tpositive,negative\n"   # three annotators: majority
        "4\tpositive,positive\tnegative,negative\tneutral,neutral\n"     # no majority: skipped
    )
    bench = load_benchmark(tmp_path)
    assert bench.labels == ["negative", "neutral", "positive"]
    assert bench.paths == [str(tmp_path / "data" / f"{i}.jpg") for i in (1, 2, 3)]
    assert len(bench.skipped) == 1 and "post 4" in bench.skipped[0]


def test_mvsa_folder_without_labels_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(BenchmarkError, match="labelResultAll"):
        load_benchmark(tmp_path)


def test_benchmark_whose_images_cannot_be_read_is_refused_with_a_reason(tmp_path):
    import numpy as np

    from visent.core.status import ImageStatus
    from visent.evaluate import evaluate
    from visent.model import ModelConfig, VisentModel

    class Unreadable(VisentModel):  # reads none of the images, as for paths that do not exist
        def predict_proba(self, paths, **kwargs):
            return np.full((len(paths), 3), np.nan), [ImageStatus.failure("FileNotFoundError", p) for p in paths]

    bench = tmp_path / "bench.csv"
    bench.write_text("path,label\nelsewhere/a.jpg,positive\nelsewhere/b.jpg,negative\n")
    with pytest.raises(BenchmarkError, match="none of the 2 images could be read .*a.jpg: FileNotFoundError"):
        evaluate(Unreadable(ModelConfig(), head=None), bench)


def test_benchmarks_are_a_registry_named_by_spec(tmp_path):
    from visent.evaluate import BENCHMARKS

    assert {"csv", "mvsa"} <= set(BENCHMARKS)
    (tmp_path / "b.csv").write_text("path,label\na.jpg,positive\n")
    (tmp_path / "mvsa" / "data").mkdir(parents=True)
    (tmp_path / "mvsa" / "labelResultAll.txt").write_text("ID\ttext,image\n1\tpositive,negative\n")
    assert load_benchmark(f"csv={tmp_path / 'b.csv'}").labels == ["positive"]
    named = load_benchmark(f"mvsa={tmp_path / 'mvsa'}")
    assert named.labels == load_benchmark(tmp_path / "mvsa").labels == ["negative"]
    with pytest.raises(BenchmarkError, match="a mvsa benchmark is a folder"):
        load_benchmark(f"mvsa={tmp_path / 'b.csv'}")
    with pytest.raises(BenchmarkError, match="not found"):
        load_benchmark(f"csv={tmp_path / 'missing.csv'}")
