"""Trained teachers: labelled-data readers, the fine-tuned classifier, calibration, stacking,
language routing, the teacher directory, `visent teacher train/predict` and the shipped default."""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SEMEVAL, needs_semeval
from visent.cli import app
from visent.core.labels import CLASSES
from visent.core.numeric import expected_calibration_error, fit_temperature, prior_shift, softmax
from visent.teach import load_teacher
from visent.teach.classifier import CONFIG_KEYS, TextClassifier
from visent.teach.data import Tweets, read_labelled, read_semeval
from visent.teach.directory import DEFAULT_TEACHER_DIR, TEACHER_FILE, TrainedTeacher, detect_languages, fit_stack
from visent.teach.recipe import train_teacher

runner = CliRunner()

POSITIVE = ["I love this so much", "what a wonderful day", "great news, so happy", "best concert ever",
            "thank you, this is amazing", "so proud of you all", "beautiful sunset tonight", "I adore my dog"]
NEGATIVE = ["I hate this so much", "what an awful day", "terrible news, so sad", "worst concert ever",
            "this is disgusting", "so angry right now", "my flight got cancelled again", "I miss you, feeling lonely"]
NEUTRAL = ["the meeting is at 3pm", "new episode airs on monday", "the train leaves from platform 4",
           "tickets go on sale tomorrow", "the store opens at nine", "read the report here", "match starts at 8",
           "updated the schedule for next week"]
FR_POS = ["j'adore cette chanson, magnifique", "quelle belle journée, merci beaucoup", "trop content de vous voir",
          "un film génial, bravo"]
FR_NEG = ["je déteste cette pluie, horrible", "quelle journée affreuse, triste", "vraiment nul, très déçu",
          "un film ennuyeux et mauvais"]
FR_NEU = ["le train part à huit heures", "la réunion est demain matin", "nouvel épisode lundi prochain",
          "le magasin ouvre à neuf heures"]


def _semeval_file(path, rows, start=1):
    path.write_text("".join(f"{i}\t{label}\t{text}\n" for i, (label, text) in enumerate(rows, start=start)),
                    encoding="utf-8")


@pytest.fixture
def labelled(tmp_path):
    """A tiny SemEval-style English file (x3 with variations) and an XLM-T French folder."""
    rows = []
    for rep in range(3):
        suffix = ["", " today", " !"][rep]
        rows += [("positive", t + suffix) for t in POSITIVE]
        rows += [("negative", t + suffix) for t in NEGATIVE]
        rows += [("neutral", t + suffix) for t in NEUTRAL]
    rows += [("maybe", "a bad label"), ("positive", "@user https://t.co/x")]
    sem = tmp_path / "semeval"
    sem.mkdir()
    _semeval_file(sem / "twitter-train-A.tsv", rows)
    _semeval_file(sem / "twitter-test-A.tsv", [("positive", "I love this so much")], start=1000)
    fr = tmp_path / "xlmt" / "french"
    fr.mkdir(parents=True)
    texts, labels = [], []
    for rep in range(2):
        for label, group in ((2, FR_POS), (0, FR_NEG), (1, FR_NEU)):
            for t in group:
                texts.append(t + (" !" if rep else ""))
                labels.append(str(label))
    (fr / "train_text.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    (fr / "train_labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    (fr / "val_text.txt").write_text("bonjour\n", encoding="utf-8")
    (fr / "val_labels.txt").write_text("1\n", encoding="utf-8")
    return tmp_path


# ----------------------------------------------------------------------------- readers
def test_read_labelled_both_layouts_with_reasons(labelled):
    heldout = Tweets()
    read_semeval(labelled / "semeval" / "twitter-test-A.tsv", heldout, set(), set())
    data = read_labelled([labelled / "semeval", labelled / "xlmt"], exclude=["twitter-test-A.tsv", "val_*"],
                         heldout=heldout)
    names = [f["name"] for f in data.files]
    assert names == ["twitter-train-A.tsv", "french/train_text.txt"]
    # the held-out text never trains; the bad label and the text-less tweet are tallied, not lost
    assert data.dropped == {"bad label": 1, "no text": 1, "text also in held-out file": 1}
    assert len(data) == 72 - 1 + 24
    assert set(data.languages) == {"en", "fr"} and data.languages.count("fr") == 24
    assert sorted(set(data.labels)) == [0, 1, 2]
    assert data.texts[data.sources.index("french/train_text.txt")] == FR_POS[0]


def test_xlmt_pair_with_unequal_lines_names_both_files(tmp_path):
    folder = tmp_path / "german"
    folder.mkdir()
    (folder / "train_text.txt").write_text("a\nb\n", encoding="utf-8")
    (folder / "train_labels.txt").write_text("1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="train_labels.txt has 1"):
        read_labelled([tmp_path])
    with pytest.raises(FileNotFoundError, match="no labelled files"):
        read_labelled([tmp_path], exclude=["train_*"])


# ----------------------------------------------------------------------------- calibration, prior, stacking
def test_temperature_scaling_lowers_ece_of_overconfident_logits():
    rng = np.random.default_rng(0)
    n = 4000
    true_logits = rng.normal(0, 1.0, size=(n, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    overconfident = 4.0 * true_logits
    before = expected_calibration_error(y, softmax(overconfident))
    t = fit_temperature(overconfident, y)
    after = expected_calibration_error(y, softmax(overconfident / t))
    assert 3.0 < t < 5.0
    assert after < before / 3


def test_prior_shift_is_bayes_rule():
    train_prior = np.array([0.2, 0.5, 0.3])
    assert np.allclose(prior_shift("train", train_prior), 0)
    uniform = softmax(np.log(train_prior)[None] + prior_shift("uniform", train_prior))
    assert np.allclose(uniform, 1 / 3)
    with pytest.raises(ValueError, match="prior"):
        prior_shift("sometimes", train_prior)


def test_stacking_weights_the_informative_member():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=3000)
    informative = np.log(softmax(1.5 * np.eye(3)[y] + rng.normal(size=(3000, 3))))
    noise = np.log(softmax(rng.normal(size=(3000, 3))))
    w, b = fit_stack([informative, noise], y)
    assert w[0] > 0.5 and w[1] < 0.05 and np.all(w >= 0) and b.shape == (3,)


def test_language_detection_routes_only_confident_other_languages():
    langs = detect_languages(["What a beautiful day at the beach with my friends",
                              "Quelle belle journée à la plage avec mes amis", "lol", ""])
    assert langs == ["en", "fr", "en", "en"]


# ----------------------------------------------------------------------------- training end to end
@pytest.mark.slow
def test_fine_tuned_classifier_is_deterministic_and_round_trips(labelled, tmp_path):
    data = read_labelled([labelled / "semeval"], exclude=["twitter-test-A.tsv"])
    y = data.y
    val = np.arange(len(y)) % 4 == 0
    texts = np.array(data.texts, dtype=object)
    clf = TextClassifier(encoder="minilm", finetune_layers=1, epochs=2, batch_size=8)
    assert clf.fit(list(texts[~val]), y[~val], list(texts[val]), y[val]) is clf
    report = clf.report_
    assert report.n_train == (~val).sum() and len(report.epochs) == 2 and report.temperature > 0
    assert {"macro_recall", "ece"} <= set(report.val) and report.val["n"] == val.sum()
    probe = ["I love this so much", "I hate this so much", "", "the meeting is at 3pm"]
    p1, p2 = clf.predict_proba(probe), clf.predict_proba(probe)
    assert np.array_equal(p1, p2) and np.allclose(p1.sum(axis=1), 1)
    assert p1[0].argmax() == CLASSES.index("positive") and p1[1].argmax() == CLASSES.index("negative")
    assert list(clf.predict(probe[:2])) == ["positive", "negative"] and list(clf.classes_) == list(CLASSES)
    meta = clf.save(tmp_path / "member")
    assert meta["config"] == {"encoder": "minilm", "finetune_layers": 1, "epochs": 2, "batch_size": 8, "lr": 1e-4,
                              "head_lr": 2e-3, "weight_decay": 0.01, "max_length": 64, "seed": 0}
    assert list(meta) == ["config", "temperature", "train_prior", "report"] and list(meta["config"]) == list(CONFIG_KEYS)
    again = TextClassifier.load(tmp_path / "member", json.loads(json.dumps(meta)))
    assert np.allclose(again.predict_proba(probe), p1, atol=1e-6)
    assert again.get_params() == clf.get_params() and again.meta() == meta  # the report travels with the member
    assert again.temperature_ == clf.temperature_ and np.array_equal(again.train_prior_, clf.train_prior_)
    # only the top layer and the head are stored, in float16 and float32
    assert (tmp_path / "member.safetensors").stat().st_size < 4_000_000


def test_text_classifier_is_a_scikit_learn_estimator():
    """Hyper-parameters in __init__ (get_params / set_params / clone round trips), nothing learned before fit."""
    from sklearn.base import clone, is_classifier
    from sklearn.exceptions import NotFittedError

    clf = TextClassifier(encoder="e5-small", finetune_layers=0, epochs=5, lr=3e-5, seed=7)
    params = clf.get_params()
    assert set(params) == set(CONFIG_KEYS) and params["encoder"] == "e5-small" and params["lr"] == 3e-5
    assert list(clf.config()) == list(CONFIG_KEYS) and clf.config() == params
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == params
    assert clone(copy.set_params(epochs=1)).get_params() == {**params, "epochs": 1}
    assert TextClassifier(**params).get_params() == params
    assert is_classifier(clf) and "TextClassifier(encoder='e5-small'" in repr(clf)
    # learned state has a trailing underscore and does not exist before fit (nor survives a clone)
    assert not [name for name in vars(clf) if name.endswith("_") and not name.startswith("_")]
    for method in ("predict_proba", "predict", "decision_function"):
        with pytest.raises(NotFittedError):
            getattr(clf, method)(["a text"])
    with pytest.raises(ValueError, match="unknown label"):
        clf.fit(["a", "b", "c"], [0, 1, 5], ["d"], [0])


@pytest.mark.slow
def test_loaded_member_has_the_fitted_attributes_and_clones_unfitted():
    from sklearn.base import clone
    from sklearn.utils.validation import check_is_fitted

    teacher = TrainedTeacher(DEFAULT_TEACHER_DIR)
    member = teacher.member("minilm")
    check_is_fitted(member)
    assert list(member.classes_) == list(CLASSES) and member.temperature_ > 0 and member.layers_ is not None
    assert member.head_weight_.shape[0] == 3 and np.isclose(member.train_prior_.sum(), 1.0)
    assert member.report_.n_train > 0 and member.get_params()["finetune_layers"] == 2
    spec = next(m for m in teacher.meta["members"] if m["name"] == "minilm")
    assert member.config() == spec["config"] and member.meta()["report"] == spec["report"]
    fresh = clone(member)
    assert fresh.get_params() == member.get_params() and not hasattr(fresh, "head_weight_")
    probs = member.predict_proba(["I love this so much", "I hate this so much"])
    assert list(member.predict(["I love this so much", "I hate this so much"])) == ["positive", "negative"]
    assert member.score(["I love this so much", "I hate this so much"], ["positive", "negative"]) == 1.0
    assert np.allclose(probs.sum(axis=1), 1)


@pytest.mark.slow
def test_train_teacher_directory_routes_and_resumes(labelled, tmp_path, monkeypatch):
    out = tmp_path / "teacher"
    meta = train_teacher([labelled / "semeval", labelled / "xlmt"], out, encoders=("minilm", "e5-small"),
                         exclude=["twitter-test-A.tsv", "val_*"], finetune_layers=1, epochs=1, val_fraction=0.25)
    assert [m["name"] for m in meta["members"]] == ["minilm", "e5-small"]
    assert meta["members"][0]["languages"] == ["en"] and meta["members"][1]["languages"] is None
    # the multilingual member learns and judges the languages the English member does not cover
    assert meta["members"][1]["judges"] == {"except": ["en"]}
    assert meta["members"][1]["report"]["n_train"] + meta["members"][1]["report"]["n_val"] == 24
    assert set(meta["routes"]) == {"en", "*"}
    assert set(meta["routes"]["en"]["weights"]) == {"minilm", "vader"}
    assert set(meta["routes"]["*"]["weights"]) == {"e5-small"}
    assert meta["provenance"]["languages"] == {"en": 72, "fr": 24}

    teacher = load_teacher(str(out))
    assert isinstance(teacher, TrainedTeacher)
    texts = ["I love this so much", "je déteste cette pluie, horrible et triste", ""]
    assert teacher.route_of(texts) == ["en", "*", "en"]
    # a post's own language code (as tweets carry it) wins over detection; "und" means unknown
    assert teacher.route_of(texts, ["fr", "und", None]) == ["*", "*", "en"]
    assert teacher.route_of(texts, ["en-GB", "en", "ja"]) == ["en", "en", "*"]
    probs = teacher.predict_proba(texts)
    assert probs.shape == (3, 3) and np.allclose(probs.sum(axis=1), 1) and np.all(np.isfinite(probs))
    assert np.array_equal(probs, load_teacher(str(out)).predict_proba(texts))

    # a second run with the same data and settings reuses the trained members
    def no_training(*args, **kwargs):
        raise AssertionError("a finished member was trained again")

    monkeypatch.setattr(TextClassifier, "fit", no_training)
    again = train_teacher([labelled / "semeval", labelled / "xlmt"], out, encoders=("minilm", "e5-small"),
                          exclude=["twitter-test-A.tsv", "val_*"], finetune_layers=1, epochs=1, val_fraction=0.25)
    assert again["routes"] == meta["routes"]


@pytest.mark.slow
def test_local_hugging_face_encoder_trains_a_member(labelled, tmp_path):
    """The hf:PATH path (bigger encoders downloaded where a hub is reachable), tried on the packaged MiniLM folder."""
    from visent.teach.encoders import minilm_path

    out = tmp_path / "teacher"
    meta = train_teacher([labelled / "semeval"], out, encoders=(f"hf:{minilm_path()}/",), exclude=["twitter-test-A.tsv"],
                         finetune_layers=1, epochs=1, val_fraction=0.25, vader=False)
    assert [m["name"] for m in meta["members"]] == ["hf-model"] and (out / "hf-model.safetensors").is_file()
    assert meta["members"][0]["languages"] is None and meta["members"][0]["config"]["encoder"].startswith("hf:")
    probs = load_teacher(str(out)).predict_proba(["I love this so much", "je déteste ça"])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1)
    with pytest.raises(ValueError, match="member name"):
        train_teacher([labelled / "semeval"], out, encoders=("minilm", "minilm"))


def test_teacher_train_cli_refuses_unusable_data(tmp_path):
    (tmp_path / "empty.tsv").write_text("1\tmaybe\tnothing\n", encoding="utf-8")
    result = runner.invoke(app, ["teacher", "train", "--data", str(tmp_path), "--out", str(tmp_path / "t")])
    assert result.exit_code == 1 and "usable labelled texts" in result.output


# ----------------------------------------------------------------------------- predict CLI and shipped default
def test_teacher_predict_cli_keeps_every_line_in_order(tmp_path):
    lines = ["I love this, best day ever!", "", "This is terrible, I hate it", "RT @x: https://t.co/y"]
    textfile = tmp_path / "texts.txt"
    textfile.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["teacher", "predict", "vader", str(textfile), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [list(r) for r in rows[:1]] == [["negative", "neutral", "positive", "label"]]
    assert len(rows) == len(lines)
    assert rows[0]["label"] == "positive" and rows[2]["label"] == "negative"
    assert rows[1] == {"negative": "", "neutral": "", "positive": "", "label": ""} == rows[3]
    assert abs(sum(float(rows[0][c]) for c in CLASSES) - 1) < 1e-5
    missing = runner.invoke(app, ["teacher", "predict", "vader", str(tmp_path / "nope.txt")])
    assert missing.exit_code == 1 and "nope.txt" in missing.output


@pytest.mark.slow
def test_shipped_default_teacher_loads_offline_and_reads_two_languages(tmp_path):
    assert (DEFAULT_TEACHER_DIR / TEACHER_FILE).is_file()
    os.environ["HF_HUB_OFFLINE"] = "1"
    meta = json.loads((DEFAULT_TEACHER_DIR / TEACHER_FILE).read_text(encoding="utf-8"))
    assert meta["provenance"]["command"].startswith("visent teacher train")
    teacher = load_teacher("default")
    texts = ["I love my new puppy, best day ever!", "Worst service ever, I am so angry",
             "Quelle journée magnifique, je suis tellement heureuse", "Das ist furchtbar, ich hasse es"]
    probs = teacher.predict_proba(texts)
    assert [CLASSES[i] for i in probs.argmax(axis=1)] == ["positive", "negative", "positive", "negative"]
    assert teacher.route_of([teacher_text for teacher_text in texts]) == ["en", "en", "*", "*"]
    textfile = tmp_path / "t.txt"
    textfile.write_text("\n".join(texts) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["teacher", "predict", "default", str(textfile)])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "negative,neutral,positive,label"
    assert [line.rsplit(",", 1)[1] for line in result.stdout.splitlines()[1:]] == \
        ["positive", "negative", "positive", "negative"]


@needs_semeval
def test_semeval_reader_matches_the_calibration_reader():
    data = read_labelled([SEMEVAL / "twitter-2013dev-A.tsv"])
    assert len(data) > 1500 and set(data.languages) == {"en"}


@pytest.mark.parametrize(("raw", "expected"), [
    ("soooo goooood!!!!!!", "soo good!!!"),
    ("I love it 😍 👍🏽", "I love it smiling face with heart-eyes thumbs up medium skin tone"),
    ("year 2000 and ééééé", "year 2000 and éé"),
    ("@user #HappyDay https://t.co/x", "Happy Day"),
])
def test_model_preprocessing_names_emoji_and_shortens_elongations(raw, expected):
    from visent.teach.text import preprocess_tweet

    assert preprocess_tweet(raw, for_model=True) == expected
    assert "😍" in preprocess_tweet("I love it 😍")  # the lexicon teacher keeps emoji as they are


def test_teach_stage_passes_the_posts_language_codes(tmp_path, monkeypatch):
    from visent import Dataset
    from visent.ingest import ingest
    from visent.teach import TEACHERS, teach

    seen: list = []

    class Recorder:
        name = fingerprint = "recorder"
        accepts_languages = True
        thresholds = {"negative": 0.5, "neutral": 0.5, "positive": 0.5}

        def predict_proba(self, texts, languages=None):
            seen.extend(languages)
            return np.full((len(texts), 3), 1 / 3)

    monkeypatch.setitem(TEACHERS._entries, "recorder", (lambda: Recorder(), "test"))
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "1", "text": "bonjour à tous", "lang": "fr"}\n{"id": "2", "text": "hello all"}\n',
                     encoding="utf-8")
    ingest(posts, tmp_path / "ds")
    teach(Dataset(tmp_path / "ds"), "recorder")
    assert seen == ["fr", None]


def test_teach_resume_digest_counts_language_codes():
    from visent.teach.stage import _posts_fingerprint

    ids, texts = ["1", "2"], ["bonjour", "hello"]
    plain = _posts_fingerprint(ids, texts, [None, None])
    assert _posts_fingerprint(ids, texts, ["fr", None]) != plain != _posts_fingerprint(ids, texts, ["en", None])
    assert _posts_fingerprint(ids, texts, ["fr", None]) != _posts_fingerprint(ids, texts, ["en", None])
    assert _posts_fingerprint(ids, texts, ["", None]) == plain  # no code: the digest of posts without codes
