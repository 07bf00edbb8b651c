"""visent export: every post once, with its reason or its label and split, as Parquet or CSV, and a dataset card."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from test_pipeline import POSITIVE_TEXTS, make_crawl, make_image
from visent import Dataset
from visent.clean import STEPS, clean
from visent.cli import app
from visent.core.store import DatasetError
from visent.export import card_path, export_dataset, parse_split, split_of
from visent.ingest import ingest
from visent.teach import teach

runner = CliRunner()

# vader is quick to load; at these thresholds the calm texts stay neutral and the unsure one is dropped
TEACHER = "vader"
THRESHOLDS = {"negative": 0.5, "neutral": 0.6, "positive": 0.5}


def make_varied_crawl(root: Path, n_per_class: int = 10) -> Path:
    """The pipeline tests' crawl (with its malformed line and missing image) plus posts that each cleaning step
    drops: an exact and a near duplicate image, a tiny image, an empty text, an unsure text; and two neutral ones."""
    posts = make_crawl(root, n_per_class=n_per_class)
    for name, mood, seed in (("calm.jpg", "positive", 501), ("calm2.jpg", "negative", 502),
                             ("unsure.jpg", "negative", 503), ("silent.jpg", "positive", 504)):
        make_image(root / name, mood, seed)
    Image.open(root / "2.jpg").save(root / "near.jpg", quality=70)  # other bytes, same picture
    Image.new("RGB", (20, 20), (250, 200, 30)).save(root / "tiny.jpg")
    extra = [
        {"id": "dup", "text": POSITIVE_TEXTS[0], "image": "0.jpg"},
        {"id": "near", "text": POSITIVE_TEXTS[1], "image": "near.jpg"},
        {"id": "tiny", "text": POSITIVE_TEXTS[2], "image": "tiny.jpg"},
        {"id": "silent", "text": "", "image": "silent.jpg"},
        {"id": "unsure", "text": "ok I guess, not sure how I feel", "image": "unsure.jpg"},
        {"id": "calm", "text": "The meeting is at 3pm in room 4.", "image": "calm.jpg"},
        {"id": "calm2", "text": "The bus leaves at 9 from the main station.", "image": "calm2.jpg"},
    ]
    with posts.open("a") as handle:
        handle.write("".join(json.dumps(post) + "\n" for post in extra))
    return posts


def build_dataset(crawl: Path, out: Path) -> Dataset:
    ingest(crawl, out)
    teach(out, TEACHER)
    clean(out, thresholds=THRESHOLDS)
    return Dataset(out)


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("export")
    return build_dataset(make_varied_crawl(root / "crawl"), root / "ds")


def test_the_crawl_reaches_every_cleaning_step(cleaned):
    counts = cleaned.stage_info("clean")["counts"]
    for step in ("ingest_error", "bad_image", "exact_duplicate", "near_duplicate", "no_teacher_label",
                 "low_confidence"):
        assert counts[step] >= 1, step
    assert 0 < counts["kept"] < counts["posts"]


def test_every_post_once_dropped_with_reason_kept_with_label_and_split(cleaned, tmp_path):
    counts = export_dataset(cleaned, tmp_path / "out" / "data.parquet")
    table = pq.read_table(tmp_path / "out" / "data.parquet")
    posts = cleaned.read_table("posts")
    assert table.column("post_id").to_pylist() == posts.column("post_id").to_pylist()  # every post, in order, once
    assert len(set(table.column("post_id").to_pylist())) == table.num_rows
    assert "text" not in table.column_names

    by_id = {row["post_id"]: row for row in cleaned.read_table("clean").to_pylist()}
    teach_by_id = {row["post_id"]: row for row in cleaned.read_table("teach").to_pylist()}
    for row in table.to_pylist():
        clean_row = by_id[row["post_id"]]
        assert row["clean_status"] == clean_row["clean_status"]
        assert row["clean_reason"] == clean_row["clean_reason"]
        assert row["clean_step"] == clean_row["clean_step"]
        assert row["teach_label"] == teach_by_id[row["post_id"]]["teach_label"]
        if row["clean_status"] == "dropped":
            assert row["clean_reason"] and row["clean_step"] in STEPS and row["label"] is None and row["split"] == ""
        else:
            assert row["clean_reason"] == "" and row["clean_step"] is None and row["label"] == clean_row["label"]
            assert row["split"] == split_of(row["image_sha256"]) in ("train", "val", "test")
    statuses = table.column("clean_status").to_pylist()
    stage = cleaned.stage_info("clean")["counts"]
    assert counts["rows"] == table.num_rows == stage["posts"]
    assert counts["kept"] == statuses.count("kept") == stage["kept"]
    assert counts["dropped"] == statuses.count("dropped")
    assert sum(counts["split"].values()) == counts["kept"]
    assert sum(counts["kept_per_class"].values()) == counts["kept"]
    dropped = [r for r in table.to_pylist() if r["clean_status"] == "dropped"]
    assert any(r["clean_reason"].startswith("exact duplicate of") and r["duplicate_of"] for r in dropped)
    assert any(r["clean_reason"].startswith("ingest:") for r in dropped)
    steps = [r["clean_step"] for r in dropped]
    assert {step: steps.count(step) for step in STEPS} == {step: stage[step] for step in STEPS}


def test_split_is_deterministic_and_follows_the_image(cleaned, tmp_path):
    export_dataset(cleaned, tmp_path / "a.parquet")
    export_dataset(cleaned, tmp_path / "b.parquet")
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.equals(b)

    # a bigger crawl (more posts, other order of ids): each image keeps its split
    root = tmp_path / "bigger"
    crawl = make_varied_crawl(root / "crawl", n_per_class=14)
    bigger = build_dataset(crawl, root / "ds")
    export_dataset(bigger, tmp_path / "bigger.parquet")
    c = pq.read_table(tmp_path / "bigger.parquet")
    first = {r["image_sha256"]: r["split"] for r in a.to_pylist() if r["split"]}
    second = {r["image_sha256"]: r["split"] for r in c.to_pylist() if r["split"]}
    shared = set(first) & set(second)
    assert len(shared) >= 15
    assert all(first[sha] == second[sha] for sha in shared)


def test_split_fractions_and_identical_images():
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20000)]
    splits = [split_of(h) for h in hashes]
    for name, expected in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        assert splits.count(name) / len(hashes) == pytest.approx(expected, abs=0.01)
    custom = [split_of(h, (0.5, 0.5, 0.0)) for h in hashes]
    assert custom.count("test") == 0 and custom.count("train") / len(hashes) == pytest.approx(0.5, abs=0.01)
    assert all(split_of(h) == split_of(str(h)) for h in hashes[:100])  # depends on the hash alone
    assert split_of(None) == "" and split_of("") == ""
    # the split orders images by their hash: a lower hash is never in a later split
    order = {"train": 0, "val": 1, "test": 2}
    ranked = sorted(hashes)
    assert all(order[split_of(x)] <= order[split_of(y)] for x, y in zip(ranked, ranked[1:]))


def test_parse_split():
    assert parse_split("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert parse_split(" 0.7, 0.2 ,0.1") == (0.7, 0.2, 0.1)
    with pytest.raises(ValueError, match="sum to 1"):
        parse_split("0.8,0.1,0.2")
    with pytest.raises(ValueError, match="three"):
        parse_split("0.9,0.1")
    with pytest.raises(ValueError, match="three numbers"):
        parse_split("a,b,c")
    with pytest.raises(ValueError, match=">= 0"):
        parse_split("1.2,-0.1,-0.1")


def test_csv_and_parquet_hold_the_same_rows(cleaned, tmp_path):
    export_dataset(cleaned, tmp_path / "d.parquet", with_text=True)
    export_dataset(cleaned, tmp_path / "d.csv", with_text=True)
    parquet = pq.read_table(tmp_path / "d.parquet")
    assert parquet.column_names[:3] == ["post_id", "source", "text"]
    texts = dict(zip(cleaned.read_table("posts").column("post_id").to_pylist(),
                     cleaned.read_table("posts").column("text").to_pylist()))
    assert parquet.column("text").to_pylist() == [texts[p] for p in parquet.column("post_id").to_pylist()]
    options = pcsv.ConvertOptions(column_types=parquet.schema, strings_can_be_null=False)
    csv = pcsv.read_csv(tmp_path / "d.csv", convert_options=options)
    assert csv.column_names == parquet.column_names

    def strings_without_nulls(table: pa.Table) -> list[dict]:  # CSV writes a null string as an empty cell
        rows = table.to_pylist()
        for row in rows:
            for key, value in row.items():
                if value is None and pa.types.is_string(table.schema.field(key).type):
                    row[key] = ""
        return rows

    assert strings_without_nulls(csv) == strings_without_nulls(parquet)


def test_unknown_suffix_is_a_clear_error(cleaned, tmp_path):
    for name in ("data.json", "data"):
        with pytest.raises(ValueError, match=r"\.parquet or \.csv"):
            export_dataset(cleaned, tmp_path / name)
        assert not (tmp_path / name).exists()
    assert not list(tmp_path.iterdir())  # not even a card


def test_an_uncleaned_dataset_is_refused(tmp_path):
    crawl = make_crawl(tmp_path / "crawl", n_per_class=2)
    ingest(crawl, tmp_path / "ds")
    with pytest.raises(DatasetError, match="visent teach"):
        export_dataset(tmp_path / "ds", tmp_path / "x.parquet")


def test_a_clean_table_of_an_older_visent_is_cleaned_again_before_export(cleaned, tmp_path):
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(cleaned.root, copy)
    ds = Dataset(copy)
    pq.write_table(ds.read_table("clean").drop_columns(["clean_step"]), ds.table_path("clean"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest.pop("tables")  # an older visent recorded no tables
    (copy / "manifest.json").write_text(json.dumps(manifest))
    ds = Dataset(copy)
    with pytest.raises(DatasetError, match=r"older visent \(no clean_step column\); run `visent clean .*` again"):
        export_dataset(ds, tmp_path / "old.parquet")
    clean(ds, thresholds=THRESHOLDS)  # the same options: the stage runs again all the same
    table = pq.read_table(export_dataset(ds, tmp_path / "new.parquet")["out"])
    expected = pq.read_table(export_dataset(cleaned, tmp_path / "before.parquet")["out"])
    assert table.equals(expected)


def test_card_beside_the_export_with_its_counts(cleaned, tmp_path):
    out = tmp_path / "out" / "mvsa.parquet"
    counts = export_dataset(cleaned, out, split=(0.6, 0.2, 0.2))
    card = (tmp_path / "out" / "mvsa.parquet.card.md").read_text()
    assert card_path(out) == tmp_path / "out" / "mvsa.parquet.card.md" and counts["card"] == str(card_path(out))
    front, body = re.match(r"^---\n(.*?)\n---\n(.*)$", card, re.S).groups()
    meta = yaml.safe_load(front)
    assert meta["license"] == "other"
    assert meta["task_categories"] == ["image-classification"]
    assert "sentiment-analysis" in meta["tags"]
    assert meta["size_categories"] == ["n<1K"]
    assert meta["configs"][0]["data_files"] == "mvsa.parquet"

    def row(name: str) -> str:
        match = re.search(rf"^\| {re.escape(name)} \| (.*) \|$", body, re.M)
        assert match, name
        return match.group(1)

    manifest = cleaned.manifest["stages"]
    for step, value in manifest["clean"]["counts"].items():  # clean counts per step
        assert row(step) == f"{value:,}"
    for key in ("ok", "skipped"):  # teach counts
        assert row(key) == f"{manifest['teach']['counts'][key]:,}"
    assert row("error") == f"{manifest['ingest']['counts']['error']:,}"
    for name in ("negative", "neutral", "positive"):  # kept per class and split
        per = counts["split_per_class"]
        assert f"| {name} | {per['train'][name]:,} | {per['val'][name]:,} | {per['test'][name]:,} | " \
               f"{counts['kept_per_class'][name]:,} |" in body
    assert (f"| **all** | **{counts['split']['train']:,}** | **{counts['split']['val']:,}** | "
            f"**{counts['split']['test']:,}** | **{counts['kept']:,}** |") in body
    assert "train 0.6, val 0.2, test 0.2" in body
    assert f"teacher: `{TEACHER}`" in body and "neutral 0.6" in body
    assert "--split 0.6,0.2,0.2" in body and f"visent teach {cleaned.root.name} --teacher {TEACHER}" in body
    assert "not people" in body or "no person" in body
    assert "`text`" not in body.split("## Columns")[1].split("##")[0]  # no text column described


def test_card_names_the_source_not_where_the_user_keeps_it(cleaned, tmp_path):
    source = Path(cleaned.stage_info("ingest")["params"]["source"])
    assert source.is_absolute() and source.name == "posts.jsonl"
    export_dataset(cleaned, tmp_path / "mvsa.parquet")
    body = card_path(tmp_path / "mvsa.parquet").read_text()
    assert "| source | `posts.jsonl` |" in body
    assert f"visent ingest posts.jsonl --out {cleaned.root.name}" in body
    assert str(source.parent) not in body and str(cleaned.root.parent) not in body


def test_each_export_keeps_its_own_card(cleaned, tmp_path):
    export_dataset(cleaned, tmp_path / "mvsa.parquet")
    export_dataset(cleaned, tmp_path / "mvsa.csv", with_text=True)
    parquet, csv = (card_path(tmp_path / name).read_text() for name in ("mvsa.parquet", "mvsa.csv"))
    root = cleaned.root.name
    assert "data_files: mvsa.parquet" in parquet and f"visent export {root} --out mvsa.parquet\n" in parquet
    assert "data_files: mvsa.csv" in csv and f"visent export {root} --out mvsa.csv --with-text\n" in csv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mvsa.csv", "mvsa.csv.card.md", "mvsa.parquet",
                                                          "mvsa.parquet.card.md"]


def test_cli_export(cleaned, tmp_path):
    out = tmp_path / "x.csv"
    result = runner.invoke(app, ["export", str(cleaned.root), "--out", str(out), "--split", "0.5,0.25,0.25"])
    assert result.exit_code == 0, result.output
    assert out.exists() and (tmp_path / "x.csv.card.md").exists()
    assert str(tmp_path / "x.csv.card.md") in result.output.replace("\n", "")
    split = next(line for line in result.output.splitlines() if "│ split " in line)  # a readable dict, not JSON
    assert re.search(r"│ +train: \d+, val: \d+, test: \d+ │", split) and "{" not in result.output
    splits = pcsv.read_csv(out, convert_options=pcsv.ConvertOptions(strings_can_be_null=False)).column("split")
    assert set(splits.to_pylist()) <= {"", "train", "val", "test"}
    result = runner.invoke(app, ["export", str(cleaned.root), "--out", str(tmp_path / "x.xlsx")])
    assert result.exit_code == 1 and ".parquet or .csv" in result.output
    result = runner.invoke(app, ["export", str(cleaned.root), "--out", str(out), "--split", "0.5,0.5,0.5"])
    assert result.exit_code == 1 and "sum to 1" in result.output
    for command in ("export", "report"):
        assert runner.invoke(app, [command, "--help"]).exit_code == 0
