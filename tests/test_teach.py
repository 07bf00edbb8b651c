"""Tests of the TEACH stage: tweet normalisation, the calibrated VADER teacher, the stage and the calibration script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import MVSA, SEMEVAL, needs_mvsa, needs_semeval
from visent import Dataset
from visent.core import schema
from visent.core.labels import CLASSES
from visent.teach import TEACHERS, Teacher, load_teacher, preprocess_tweet, teach
from visent.teach import stage as stage_module
from visent.teach.calibrate import HELDOUT, Tweets, compound_rule, main, read_semeval, score
from visent.teach.vader import DEFAULT_CALIBRATION, FEATURES, load_calibration


# ----------------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize(("raw", "expected"), [
    ("RT @some_user: great news!", "great news!"),
    ("@alice @bob: thanks so much", "thanks so much"),
    ("look https://t.co/AbC123 and www.example.com/x now", "look and now"),
    ("truncated http…", "truncated"),
    ("#HappyDay to all", "Happy Day to all"),
    ("#NYCMarathon #2012shit #good_times", "NYC Marathon 2012 shit good times"),
    ("Tom &amp; Jerry &lt;3 C&#39;mon", "Tom & Jerry <3 C'mon"),
    ("  so \n\t much   space ", "so much space"),
    ("I love it 😍🎉 :)", "I love it 😍🎉 :)"),
    ("mail me at a@b.com", "mail me at a@b.com"),
    ("RT @x: @y https://t.co/z", ""),
    ("", ""),
])
def test_preprocess_tweet(raw: str, expected: str) -> None:
    assert preprocess_tweet(raw) == expected


# ----------------------------------------------------------------------------- the VADER teacher
@pytest.fixture(scope="module")
def vader() -> Teacher:
    return load_teacher("vader")


def test_probabilities_shape_sum_and_order(vader: Teacher) -> None:
    texts = ["I love this wonderful day!", "This is awful, I hate it.", "The train leaves at 9.", ""]
    probs = vader.predict_proba(texts)
    assert isinstance(vader, Teacher) and vader.name == "vader"
    assert probs.shape == (4, 3) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(probs > 0)
    assert vader.predict_proba([]).shape == (0, 3)
    # columns follow CLASSES: the positive sentence peaks in the last column, the negative in the first
    assert CLASSES == ("negative", "neutral", "positive")
    assert probs[0].argmax() == 2 and probs[1].argmax() == 0


def test_clear_sentences_ranked(vader: Teacher) -> None:
    positive = ["What a fantastic, beautiful day! I love it 😍", "Congratulations, so happy for you!! #BestDayEver"]
    negative = ["This is terrible, I hate it and feel awful.", "Worst service ever, disgusting and rude :("]
    neutral = ["The meeting is on Tuesday in room 12.", "Bus 42 leaves from the north station."]
    probs = vader.predict_proba(positive + negative + neutral)
    assert [CLASSES[i] for i in probs.argmax(axis=1)] == ["positive"] * 2 + ["negative"] * 2 + ["neutral"] * 2
    pos, neg = probs[:, 2], probs[:, 0]
    assert pos[:2].min() > pos[2:].max()
    assert neg[2:4].min() > max(neg[:2].max(), neg[4:].max())
    # a batch gives the same numbers as the texts one by one
    np.testing.assert_allclose(probs[3], vader.predict_proba([negative[1]])[0])


def test_calibration_json_loads_and_is_deterministic() -> None:
    cal = load_calibration()
    assert cal["classes"] == list(CLASSES) and cal["features"] == list(FEATURES)
    assert abs(sum(cal["train_prior"]) - 1) < 1e-9
    prov = cal["provenance"]
    assert prov["n_train"] > 20000 and prov["heldout_file"]["name"] == HELDOUT
    assert all(f["name"] != HELDOUT for f in prov["train_files"])
    texts = ["good", "bad!", "a table?", "meh"]
    a, b = load_teacher("vader").predict_proba(texts), load_teacher("vader", calibration=DEFAULT_CALIBRATION).predict_proba(texts)
    np.testing.assert_array_equal(a, b)


def test_prior_reweighting_is_bayes_rule() -> None:
    texts = ["nice", "awful day", "the shop opens at ten"]
    train = load_teacher("vader", prior="train").predict_proba(texts)
    uniform = load_teacher("vader", prior="uniform").predict_proba(texts)
    prior = np.asarray(load_calibration()["train_prior"])
    expected = train / prior
    np.testing.assert_allclose(uniform, expected / expected.sum(axis=1, keepdims=True), rtol=1e-9)
    custom = load_teacher("vader", prior=[2, 1, 1]).predict_proba(texts)
    assert np.all(custom[:, 0] > uniform[:, 0])
    for bad in ("balanced", [1, 1], [1, 0, 1]):
        with pytest.raises(ValueError, match="prior"):
            load_teacher("vader", prior=bad)


def test_bad_calibration_file_gives_clear_error(tmp_path: Path) -> None:
    cal = load_calibration()
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        load_teacher("vader", calibration=tmp_path / "broken.json")
    with pytest.raises(ValueError, match="refit"):
        load_teacher("vader", calibration={**cal, "features": ["neg", "pos"]})
    with pytest.raises(ValueError, match="weights"):
        load_teacher("vader", calibration={**cal, "coef": cal["coef"][:2]})


def test_registry_unknown_name() -> None:
    assert "vader" in TEACHERS and "vader" in TEACHERS.describe()
    with pytest.raises(KeyError, match=r"unknown teacher 'nope'.*vader"):
        load_teacher("nope")


# ----------------------------------------------------------------------------- the teach stage
POSTS = [
    ("p1", "I love this, what a wonderful day! #HappyDay"),
    ("p2", "This is horrible, I hate it."),
    ("p3", "   "),
    ("p4", "The shop opens at 10 on Monday."),
    ("p5", None),
    ("p6", "RT @someone: https://t.co/xyz"),
    ("p7", "So proud of you, congratulations 🎉"),
]


def make_dataset(root: Path, posts: list[tuple[str, str | None]] = POSTS) -> Dataset:
    ds = Dataset(root, create=True)
    rows = [{"post_id": pid, "source": f"test:{i}", "text": text, "ingest_status": "ok" if i % 3 else "error",
             "ingest_reason": "" if i % 3 else "image unreadable"} for i, (pid, text) in enumerate(posts)]
    ds.write_table("posts", rows, schema.POSTS)
    ds.finish_stage("ingest", {"source": str(root)}, {"posts": len(rows)})
    return ds


class Spy:
    """Wraps the real teacher: records the texts it is asked about, can fail on the n-th call or on a text."""

    def __init__(self, fail_on_call: int | None = None, fail_on_text: str | None = None):
        self.inner = load_teacher("vader")
        self.name, self.fingerprint = self.inner.name, self.inner.fingerprint
        self.thresholds, self.accepts_languages = self.inner.thresholds, False
        self.fail_on_call, self.fail_on_text = fail_on_call, fail_on_text
        self.calls: list[list[str]] = []

    def predict_proba(self, texts):
        self.calls.append(list(texts))
        if self.fail_on_call == len(self.calls):
            raise KeyboardInterrupt  # an interrupted run
        if self.fail_on_text is not None and self.fail_on_text in texts:
            raise RuntimeError("cannot read this one")
        return self.inner.predict_proba(texts)


def use_teacher(monkeypatch: pytest.MonkeyPatch, spy: Spy) -> Spy:
    monkeypatch.setattr(stage_module, "load_teacher", lambda name: spy)
    return spy


@pytest.mark.slow
def test_teach_writes_every_post(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "human_labels.parquet").write_bytes(b"not parquet: teach must never read this")
    counts = teach(tmp_path / "ds", batch_size=3)
    assert counts == {"posts": 7, "ok": 4, "skipped": 3, "negative": 1, "neutral": 1, "positive": 2}
    ds = Dataset(tmp_path / "ds")
    assert ds.stage_done("teach") and ds.stage_info("teach")["counts"] == counts
    table = ds.read_table("teach")
    assert table.schema.equals(schema.TEACH)
    rows = {r["post_id"]: r for r in table.to_pylist()}
    assert table.column("post_id").to_pylist() == [pid for pid, _ in POSTS]
    assert [rows[p]["teach_label"] for p in ("p1", "p2", "p4", "p7")] == ["positive", "negative", "neutral", "positive"]
    for pid in ("p3", "p5", "p6"):
        assert rows[pid]["teach_status"] == "skipped" and rows[pid]["teach_reason"] == "no text"
        assert rows[pid]["p_positive"] is None and rows[pid]["teach_label"] is None
    for pid in ("p1", "p2", "p4", "p7"):
        r = rows[pid]
        assert r["teach_status"] == "ok" and r["teach_reason"] == "" and r["teacher"] == "default"
        assert r["p_negative"] + r["p_neutral"] + r["p_positive"] == pytest.approx(1, abs=1e-5)
        assert r["teach_confidence"] == pytest.approx(max(r["p_negative"], r["p_neutral"], r["p_positive"]))
    assert not (tmp_path / "ds" / "work" / "teach").exists()
    assert "p_positive" in ds.posts().column_names


def test_teach_rerun_is_noop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = make_dataset(tmp_path / "ds")
    first = teach(ds, "vader")
    mtime = ds.table_path("teach").stat().st_mtime_ns
    spy = use_teacher(monkeypatch, Spy())
    assert teach(Dataset(tmp_path / "ds"), "vader") == first
    assert spy.calls == [] and ds.table_path("teach").stat().st_mtime_ns == mtime


def test_teach_resumes_after_interruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = make_dataset(tmp_path / "ds")
    use_teacher(monkeypatch, Spy(fail_on_call=3))
    with pytest.raises(KeyboardInterrupt):
        teach(ds, batch_size=2)
    parts = sorted((tmp_path / "ds" / "work" / "teach").glob("part-*.parquet"))
    assert len(parts) == 2 and not Dataset(tmp_path / "ds").stage_done("teach")
    done = {pid for p in parts for pid in pq.read_table(p).column("post_id").to_pylist()}
    assert done == {"p1", "p2", "p3", "p4"}

    spy = use_teacher(monkeypatch, Spy())
    counts = teach(Dataset(tmp_path / "ds"), batch_size=2)
    assert [t for call in spy.calls for t in call] == [POSTS[6][1]]  # only the unfinished posts
    assert counts == {"posts": 7, "ok": 4, "skipped": 3, "negative": 1, "neutral": 1, "positive": 2}
    assert Dataset(tmp_path / "ds").read_table("teach").column("post_id").to_pylist() == [p for p, _ in POSTS]


@pytest.mark.slow
def test_teach_reruns_when_posts_change(tmp_path: Path) -> None:
    make_dataset(tmp_path / "ds")
    teach(tmp_path / "ds")
    # new posts without the teach stage marked stale (ingest tools that skip begin_stage): still re-taught
    ds = make_dataset(tmp_path / "ds", POSTS[:2] + [("p9", "awful, sad and broken")])
    counts = teach(ds)
    assert counts == {"posts": 3, "ok": 3, "skipped": 0, "negative": 2, "neutral": 0, "positive": 1}


def test_teacher_failure_on_one_text_skips_only_that_post(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = make_dataset(tmp_path / "ds")
    use_teacher(monkeypatch, Spy(fail_on_text=POSTS[1][1]))
    counts = teach(ds)
    assert counts["ok"] == 3 and counts["skipped"] == 4
    row = [r for r in ds.read_table("teach").to_pylist() if r["post_id"] == "p2"][0]
    assert row["teach_status"] == "skipped"
    assert row["teach_reason"] == "teacher failed: RuntimeError: cannot read this one"


def test_teacher_failing_everywhere_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = make_dataset(tmp_path / "ds", [("a", "good"), ("b", "bad")])

    class Broken(Spy):
        def predict_proba(self, texts):
            raise RuntimeError("broken")

    use_teacher(monkeypatch, Broken())
    with pytest.raises(RuntimeError, match="broken"):
        teach(ds)
    assert not ds.stage_done("teach")


def test_teach_needs_ingest_and_valid_arguments(tmp_path: Path) -> None:
    ds = Dataset(tmp_path / "empty", create=True)
    with pytest.raises(Exception, match="ingest"):
        teach(ds)
    ds = make_dataset(tmp_path / "ds")
    with pytest.raises(ValueError, match="batch_size"):
        teach(ds, batch_size=0)
    with pytest.raises(KeyError, match="unknown teacher"):
        teach(ds, "nope")


# ----------------------------------------------------------------------------- calibration script
def _write_semeval(folder: Path) -> None:
    folder.mkdir()
    pos = ["I love this\\u002c great day", "wonderful news, so happy!", "best friends ever :)", "nice work, thanks",
           "amazing show tonight!", "good morning sunshine"]
    neg = ["I hate rain", "awful service, terrible food", "so sad and angry", "worst day ever :(",
           "this is bad news", "broken again, annoying"]
    neu = ["the bus leaves at 9", "meeting on Tuesday", "new episode tomorrow", "report due Friday?",
           "store opens at ten", "flight to Boston"]
    lines = [f"{i}\t{lab}\t{text}" for lab, texts in (("positive", pos), ("negative", neg), ("neutral", neu))
             for i, text in enumerate(texts, start={"positive": 100, "negative": 200, "neutral": 300}[lab])]
    lines += ['400\tpositive\t"quoted, lovely"', "401\tunknown\tno label", "100\tpositive\tduplicate id",
              "402\tneutral\tsame as held-out"]
    (folder / "train-A.tsv").write_text("\n".join(lines) + "\n")
    heldout = ["900\tpositive\tgreat, love it\t", "901\tnegative\thorrible and sad\t",
               "902\tneutral\tsame as held-out\t"]
    (folder / HELDOUT).write_text("\n".join(heldout))


@pytest.mark.slow
def test_calibrate_script_on_tiny_data(tmp_path: Path) -> None:
    data = tmp_path / "semeval"
    _write_semeval(data)
    env = {**os.environ, "VISENT_PROGRESS": "0"}
    command = [sys.executable, "-m", "visent.teach.calibrate", str(data), "--out", str(tmp_path / "a.json")]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert main([str(data), "--out", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["coef"] == b["coef"] and a["intercept"] == b["intercept"]  # deterministic
    assert a["train_prior"] == pytest.approx([6 / 19, 6 / 19, 7 / 19])
    assert a["provenance"]["n_train"] == 19 and a["provenance"]["n_heldout"] == 3
    dropped = {"bad label": 1, "duplicate id": 1, "text also in held-out file": 1}
    assert a["provenance"]["dropped_train_lines"] == dropped
    scored = {"n", "calibrated_prior_train", "calibrated_prior_uniform", "compound_rule_0.05"}
    assert set(a["metrics"]["heldout"]) == scored
    teacher = load_teacher("vader", calibration=tmp_path / "a.json")
    assert teacher.predict_proba(["love it, great!"]).argmax() == 2


def test_calibrate_script_reports_missing_heldout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "d"), "--out", str(tmp_path / "x.json")])
    assert exit_info.value.code == 2 and "held-out file" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


# ----------------------------------------------------------------------------- real data
@pytest.mark.slow
@needs_semeval
def test_shipped_calibration_beats_compound_rule_on_heldout() -> None:
    tweets = Tweets()
    read_semeval(SEMEVAL / HELDOUT, tweets, set(), set())
    y = np.asarray(tweets.labels)
    assert len(y) > 20000
    teacher = load_teacher("vader", prior="train")
    compound = np.array([teacher._analyzer.polarity_scores(preprocess_tweet(t))["compound"] for t in tweets.texts])
    baseline = score(y, compound_rule(compound))
    calibrated = teacher.predict_proba(tweets.texts)
    trained = score(y, calibrated.argmax(axis=1), calibrated)
    uniform_probs = load_teacher("vader", prior="uniform").predict_proba(tweets.texts)
    uniform = score(y, uniform_probs.argmax(axis=1), uniform_probs)
    assert uniform["macro_recall"] > baseline["macro_recall"] + 0.02
    assert trained["accuracy"] > baseline["accuracy"] + 0.05 and trained["macro_f1"] > baseline["macro_f1"]
    assert trained["ece"] < 0.03
    # the numbers recorded in the shipped JSON are reproducible
    recorded = load_calibration()["metrics"]["heldout"]
    assert recorded["calibrated_prior_train"] == trained and recorded["compound_rule_0.05"] == baseline


@pytest.mark.slow
@needs_mvsa
def test_teach_on_real_mvsa_texts(tmp_path: Path) -> None:
    files = sorted((MVSA / "data").glob("*.txt"))[:500]
    posts = [(f.stem, f.read_bytes().decode("utf-8", errors="replace")) for f in files]
    counts = teach(make_dataset(tmp_path / "ds", posts))
    assert counts["posts"] == 500 and counts["ok"] + counts["skipped"] == 500
    assert counts["ok"] > 450 and min(counts[c] for c in CLASSES) > 50
