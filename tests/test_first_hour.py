"""What a new user reads in the first hour on a crawl of their own: the build's summary (what its validation figure
is, why posts were not used, what to run next), help that reads at 80 columns or piped, evaluate's progress and
what its first table covers, and skip counts of teach and clean that tell one story."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from test_pipeline import make_crawl, make_image
from visent import Dataset
from visent.cli import app

runner = CliRunner()
NARROW = {"terminal_width": 80, "env": {"COLUMNS": "80"}}
WIDE = {"terminal_width": 300, "env": {"COLUMNS": "300"}}


def _flat(text: str) -> str:
    return " ".join(text.split())


def _crawl_with_gaps(root: Path) -> Path:
    """make_crawl's 24 posts, its junk line and its missing image, and three posts without text: one whose image is
    another post's (a duplicate), one of its own, one whose image is missing (an ingest error and no text)."""
    crawl = make_crawl(root, n_per_class=12)
    make_image(root / "own.jpg", "positive", seed=777)
    extra = [{"id": "empty-duplicate", "text": "", "image": "0.jpg"},
             {"id": "empty-own", "text": "   ", "image": "own.jpg"},
             {"id": "empty-missing", "text": "", "image": "gone.jpg"}]
    with crawl.open("a") as handle:
        handle.writelines(json.dumps(post) + "\n" for post in extra)
    return crawl


# 10. teach and clean count the same posts ---------------------------------------------------------------------
def test_teach_counts_posts_ingest_could_not_read_apart_from_the_texts_it_skipped(tmp_path):
    from visent.clean import clean
    from visent.ingest import ingest
    from visent.teach import teach

    ingest(_crawl_with_gaps(tmp_path / "crawl"), tmp_path / "ds")
    counts = teach(tmp_path / "ds", "vader")
    # the junk line and the post without text whose image is missing: ingest errors, not texts the teacher skipped
    assert counts == {"posts": 29, "ok": 25, "skipped": 2, "not_read": 2, "negative": 12, "neutral": 0,
                      "positive": 13}
    assert list(counts) == ["posts", "ok", "skipped", "not_read", "negative", "neutral", "positive"]
    assert teach(tmp_path / "ds", "vader") == counts  # a no-op gives the same counts
    rows = {row["post_id"]: row for row in Dataset(tmp_path / "ds").read_table("teach").to_pylist()}
    assert {rows[pid]["teach_status"] for pid in ("empty-duplicate", "empty-own", "empty-missing")} == {"skipped"}
    counts = clean(tmp_path / "ds", thresholds={"negative": 0.4, "positive": 0.4})
    assert counts["ingest_error"] == 3 and counts["exact_duplicate"] == 1 and counts["no_teacher_label"] == 1


def test_a_crawl_without_ingest_errors_keeps_its_teach_counts(tmp_path):
    from visent.ingest import ingest
    from visent.teach import teach

    crawl = make_crawl(tmp_path / "crawl", n_per_class=2)
    crawl.write_text("".join(line + "\n" for line in crawl.read_text().splitlines()[:4]))  # no junk, no missing image
    ingest(crawl, tmp_path / "ds")
    assert teach(tmp_path / "ds", "vader") == {"posts": 4, "ok": 4, "skipped": 0, "negative": 2, "neutral": 0,
                                               "positive": 2}


# 5 and 10. the build's summary guides ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.slow
def test_build_summary_says_why_posts_were_not_used_what_validation_is_and_what_to_run_next(tmp_path):
    crawl = _crawl_with_gaps(tmp_path / "crawl")
    model_dir, dataset = tmp_path / "model", tmp_path / "model-dataset"
    loose = ["--neg-threshold", "0.4", "--pos-threshold", "0.4"]
    result = runner.invoke(app, ["build", str(crawl), "--out", str(model_dir), *loose], **WIDE)
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    teach_counts = Dataset(dataset).stage_info("teach")["counts"]
    assert teach_counts["skipped"] == 2 and teach_counts["not_read"] == 2
    assert re.search(r"│ skipped │ 2 │ │ not_read │ 2 │", text), text

    # the most frequent reasons of each stage, with their counts
    assert "why posts were not used (most frequent first; `visent report` lists every reason):" in text
    assert "ingest errors (3): image file not found 2; invalid JSON 1" in text
    assert "not taught (2): ingest error and no text (among the ingest errors)" in text
    assert "teacher skipped (2): no text 2" in text
    assert "clean dropped (5): ingest error 3; " in text
    assert "exact duplicate of a kept post 1" in text and "no teacher label (no text) 1" in text
    # clean's no_teacher_label (1) against the teacher's skipped (2): the other was dropped before
    assert "no_teacher_label counts 1 of the 2 posts the teacher skipped: earlier steps dropped the others " \
           "(exact_duplicate 1)" in text

    # what the validation figure is, and is not
    validation = json.loads((model_dir / "metrics.json").read_text())["validation"]
    assert (f"that is the student's agreement with the teacher's labels on {validation['n_val']} held-out kept posts, "
            "balanced over 2 classes (chance 0.50, full agreement 1), not its accuracy on human labels") in text

    # the next commands, with the real paths, each on one line to copy
    lines = [line.strip() for line in result.output.splitlines()]
    assert lines.index("next:") > lines.index(next(line for line in lines if line.startswith("model →")))
    for command in (f"visent evaluate {model_dir} --benchmark LABELLED",
                    f"visent report {dataset} --model {model_dir} --out report.html",
                    f"visent export {dataset} --out dataset.parquet"):
        assert command in lines, command

    # visent clean says it too, and a train summary stays as it was
    result = runner.invoke(app, ["clean", str(dataset), *loose], **WIDE)
    assert result.exit_code == 0, result.output
    assert "no_teacher_label counts 1 of the 2 posts the teacher skipped" in _flat(result.output)
    assert "why posts were not used" not in result.output and "next:" not in result.output


def test_the_readme_shows_export_for_a_crawl_of_ones_own():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    own = readme.split("## Your own crawl", 1)[1].split("\n## ", 1)[0]
    assert "visent export runs/my-model-dataset --out " in " ".join(own.split())


# 8. help reads at 80 columns and piped ------------------------------------------------------------------------
def _commands(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("width", [80, 100, 120])
def test_help_never_cuts_an_option_name(width):
    for path, command in COMMANDS:
        result = runner.invoke(app, [*path, "--help"], terminal_width=width, env={"COLUMNS": str(width)})
        assert result.exit_code == 0, (path, result.output)
        assert "…" not in result.output, (path, result.output)
        for param in command.params:
            for name in (*param.opts, *param.secondary_opts):
                if name.startswith("-"):
                    assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", result.output), (path, name, result.output)
        assert all(len(line) <= width for line in result.output.splitlines()), (path, result.output)


def test_narrow_help_is_plain_text_with_the_brackets_of_help_strings():
    text = runner.invoke(app, ["ingest", "--help"], **NARROW).output
    assert "╭" not in text and "Options:" in text
    assert 'pip install\n' in text or 'pip install "visent[ray]"' in _flat(text)
    assert "visent[ray]" in text and "\\[" not in text
    assert "--balance / --no-balance" in runner.invoke(app, ["clean", "--help"], **NARROW).output


def test_benchmarks_listing_keeps_names_and_descriptions_apart():
    from visent.evaluate import BENCHMARKS

    result = runner.invoke(app, ["benchmarks"], **NARROW)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    names = list(BENCHMARKS)
    starts = [line.split()[0] for line in lines if line and not line[0].isspace()]
    # every line of the listing starts with a name (its wrapped lines are indented under the description)
    assert starts[:len(names)] == names
    column = lines[0].index(lines[0].split()[1])
    for line in lines[:lines.index(next(line for line in lines if line.startswith("A bare path")))]:
        if line[0].isspace():
            assert line[:column].strip() == "", line
        else:
            assert line.split()[0] in names and line[len(line.split()[0]):column].strip() == "", line


# 9. evaluate: its progress and what its first table covers -----------------------------------------------------
def test_evaluate_progress_says_how_many_images_it_does_not_compute(tmp_path, photos, monkeypatch):
    import visent.embed.cached as cached
    from visent.evaluate import evaluate

    bars: list[tuple[str, int]] = []

    @contextlib.contextmanager
    def recorded(label, total):
        bars.append((label, total))
        yield lambda n=1: None

    monkeypatch.setattr(cached, "progress", recorded)
    bench = tmp_path / "bench.csv"
    rows = [f"{photos[i]},{'positive' if i % 2 else 'negative'}" for i in range(4)]
    bench.write_text("path,label\n" + "\n".join([*rows, rows[0], f"{tmp_path / 'gone.jpg'},positive"]) + "\n")
    evaluate("default", bench)
    assert bars == [("embed (efficientnet-lite0-ms, graph) · 6 images, 1 repeated, 1 unreadable", 4)]
    rows += [f"{photos[i]},{'positive' if i % 2 else 'negative'}" for i in range(4, 6)]
    bench.write_text("path,label\n" + "\n".join([*rows, rows[0], f"{tmp_path / 'gone.jpg'},positive"]) + "\n")
    bars.clear()
    report = evaluate("default", bench)
    assert report.n_scored == 7
    assert bars == [("embed (efficientnet-lite0-ms, graph) · 8 images, 5 from the cache, 1 unreadable", 2)]
    bars.clear()
    evaluate("default", bench)  # every image from the cache: nothing to compute, no bar
    assert bars == []


def test_evaluate_first_table_says_which_images_it_covers(tmp_path, photos):
    root = tmp_path / "Twitter-I"
    (root / "images").mkdir(parents=True)
    lines = []
    for i, photo in enumerate(photos[:8]):
        (root / "images" / f"{i}.jpg").write_bytes(photo.read_bytes())
        lines.append(f"{i}.jpg {i % 2}")
    (root / "ground_truth").mkdir()
    (root / "ground_truth" / "twitter_three_agrees.txt").write_text("\n".join(lines) + "\n")
    (root / "ground_truth" / "twitter_four_agrees.txt").write_text("\n".join(lines[:6]) + "\n")
    result = runner.invoke(app, ["evaluate", "default", "--benchmark", f"twitter-i={root}"], **WIDE)
    assert result.exit_code == 0, result.output
    title = "".join(result.output.split())  # the title wraps where the table is narrower
    assert "".join(f"default on twitter-i={root}: all 8 images (the twitter-i 3-agree set)".split()) in title

    bench = tmp_path / "bench.csv"
    bench.write_text("path,label\n" + "".join(f"{photos[i]},{'positive' if i % 2 else 'negative'}\n" for i in range(3))
                     + f"{tmp_path / 'gone.jpg'},positive\n")
    result = runner.invoke(app, ["evaluate", "default", "--benchmark", str(bench)], **WIDE)
    assert result.exit_code == 0, result.output
    assert "".join(f"default on {bench}: all 3 readable images".split()) in "".join(result.output.split())
    assert "3-agree" not in result.output
