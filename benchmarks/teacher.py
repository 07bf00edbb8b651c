"""Trained textual teacher, English and multilingual, on data it never trained on.

Trains a teacher exactly as the shipped default is trained (``visent teacher train``) on SemEval-2017
task 4A 2013–2016 minus ``twitter-2016test-A.tsv`` and the XLM-T ``train_*`` files, then prints:

* SemEval-2016 test (20,632 English tweets): macro-averaged recall (the SemEval measure), accuracy,
  macro-F1 and ECE, for the stacked teacher, each of its English members alone and VADER;
* XLM-T val (8 languages): macro-F1 per language and overall, and how often each language is routed
  to the multilingual member (the UMSAB reference, XLM-T: 69.4 overall macro-F1);
* training time per member on this machine.

    python benchmarks/teacher.py                                   # train in --work, then score
    python benchmarks/teacher.py --teacher src/visent/resources/teachers/default   # score a teacher
    VISENT_TEACHER_RUNTIME=onnx-int8 python benchmarks/teacher.py --teacher ... --only semeval   # another runtime
    python benchmarks/teacher.py --speed                            # texts/s of each teacher, whole processes

Texts of the test file never train (by id or by normalised text); the XLM-T val files only score.

``--speed`` times whole processes ``visent teacher predict NAME FILE`` (imports, loading, language id, every
member) on the MVSA texts (or ``--texts FILE``, one text per line): VADER, and the default teacher on each
runtime (torch, onnx, onnx-int8). *cold* runs get a fresh HOME and VISENT_CACHE, so the ONNX export is paid;
*warm* runs share a cache prepared once. Variants alternate within each round, so a noisy machine slows them
alike; the medians, and their ratio to the default teacher on torch, are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from visent.teach.classifier import scores, softmax
from visent.teach.data import Tweets, read_labelled, read_semeval
from visent.teach.directory import TrainedTeacher
from visent.teach.recipe import train_teacher
from visent.teach.text import preprocess_tweet

from record import add_results_argument, save_results

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HELDOUT = "twitter-2016test-A.tsv"
LANGUAGE_CODES = {"arabic": "ar", "english": "en", "french": "fr", "german": "de", "hindi": "hi", "italian": "it",
                  "portuguese": "pt", "spanish": "es"}  # XLM-T's folders, as the docs' table names them
# --speed: teacher name and VISENT_TEACHER_RUNTIME of each variant
SPEED_VARIANTS = {"vader": ("vader", None), "default/torch": ("default", "torch"), "default/onnx": ("default", "onnx"),
                  "default/onnx-int8": ("default", "onnx-int8")}


def _fmt(name: str, s: dict) -> str:
    return (f"  {name:<34} n={s['n']:>6}  macro-recall {s['macro_recall']:.4f}  accuracy {s['accuracy']:.4f}  "
            f"macro-F1 {s['macro_f1']:.4f}  ECE {s['ece']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--semeval", type=Path, default=SHARED / "semeval2017-task4a" / "train")
    parser.add_argument("--xlmt", type=Path, default=SHARED / "xlm-t-sentiment")
    parser.add_argument("--teacher", type=Path, help="score this teacher directory instead of training one")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "visent-bench-teacher")
    parser.add_argument("--finetune-layers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", choices=["semeval", "xlmt"], help="score one of the two test sets")
    parser.add_argument("--json", type=Path, help="write all figures here")
    parser.add_argument("--speed", action="store_true", help="time `visent teacher predict` per teacher instead")
    parser.add_argument("--texts", type=Path, help="--speed: one text per line (default: the MVSA-Single texts)")
    parser.add_argument("--rounds", type=int, default=3, help="--speed: runs of each variant and mode")
    parser.add_argument("--variants", nargs="+", default=list(SPEED_VARIANTS), choices=list(SPEED_VARIANTS),
                        help="--speed: what to time")
    add_results_argument(parser, "teacher")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.speed:
        results = speed(args.texts, args.rounds, args.variants)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
        rates = [(key, value) for key, value in results.items() if isinstance(value, float)]
        save_results(args.results and f"{args.results}_speed", [results], columns=["teacher", "mode", "texts/s"],
                     table=[[*key.rsplit(" ", 1), f"{value:,.0f}"] for key, value in rates])
        return

    results: dict = {}
    teacher_dir = args.teacher
    if teacher_dir is None:
        teacher_dir = args.work / "teacher"
        started = time.time()
        train_teacher([args.semeval, args.xlmt], teacher_dir, exclude=[HELDOUT, "val_*"],
                      finetune_layers=args.finetune_layers, epochs=args.epochs,
                      command=f"benchmarks/teacher.py --finetune-layers {args.finetune_layers} --epochs {args.epochs}")
        results["train_seconds_this_run"] = round(time.time() - started, 1)
    teacher = TrainedTeacher(teacher_dir)
    meta = teacher.meta
    print(f"teacher {teacher_dir}: trained on {meta['provenance']['n_train']} texts "
          f"({meta['provenance']['n_validation']} validation), files: "
          f"{', '.join(f['name'] for f in meta['provenance']['files'])}")
    for member in meta["members"]:
        r = member["report"]
        print(f"  member {member['name']}: {member['config']['finetune_layers']} layers fine-tuned, "
              f"{r['n_train']} texts, {r['seconds']:.0f} s to train; validation ECE "
              f"{r['val_before_scaling']['ece']:.4f} -> {r['val']['ece']:.4f} (T = {r['temperature']})")
    trained_on = {f["name"] for f in meta["provenance"]["files"]}
    if HELDOUT in trained_on or any(name.endswith("val_text.txt") for name in trained_on):
        raise SystemExit(f"{teacher_dir} was trained on {HELDOUT} or an XLM-T val file; it cannot be scored on them")

    if args.only != "xlmt":
        results["semeval2016_test"] = semeval = score_semeval(teacher, teacher_dir, args.semeval)
        scored = {name: s for name, s in semeval.items() if isinstance(s, dict)}
        save_results(args.results and f"{args.results}_semeval", [{"teacher": k, **v} for k, v in scored.items()],
                     columns=["teacher", "macro-recall", "accuracy", "macro-F1", "ECE"],
                     table=[[name, f"{s['macro_recall']:.4f}", f"{s['accuracy']:.4f}", f"{s['macro_f1']:.4f}",
                             f"{s['ece']:.3f}"] for name, s in scored.items()],
                     teacher=str(teacher_dir), texts_per_second=semeval["teacher_texts_per_second"])
    if args.only != "semeval":
        results["xlmt_val"] = xlmt = score_xlmt(teacher, args.xlmt)
        languages = sorted((k for k in xlmt["detected"] if isinstance(xlmt["detected"][k], dict) and k != "overall"),
                           key=lambda k: LANGUAGE_CODES.get(k, k))
        save_results(args.results and f"{args.results}_xlmt",
                     [{"language": mode, **xlmt[mode]} for mode in ("detected", "given")],
                     columns=["language", *(LANGUAGE_CODES.get(k, k) for k in languages), "**all (pooled)**"],
                     table=[[mode, *(f"{xlmt[mode][lang]['macro_f1']:.3f}" for lang in languages),
                             f"**{xlmt[mode]['overall']['macro_f1']:.3f}**"] for mode in ("detected", "given")],
                     teacher=str(teacher_dir))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


def score_semeval(teacher: TrainedTeacher, teacher_dir: Path, semeval_dir: Path) -> dict:
    meta = teacher.meta
    test = Tweets()
    read_semeval(semeval_dir / HELDOUT, test, set(), set())
    y = test.y
    print(f"\nSemEval-2016 task 4A test ({HELDOUT}), {len(test)} tweets; decisions at a uniform prior:")
    semeval: dict = {}
    started = time.time()
    probs = teacher.predict_proba(test.texts)
    semeval["teacher_texts_per_second"] = round(len(test) / (time.time() - started), 1)
    semeval["stacked (routed by language)"] = scores(y, probs)
    english = TrainedTeacher(teacher_dir, language="en")
    for name, weight in meta["routes"]["en"]["weights"].items():
        logp = english.member_logp(name, test.texts)
        shift = np.asarray(english.routes["en"]["prior"])
        if name != "vader":
            shift = np.asarray(english.member(name).train_prior_)
        semeval[f"member {name} alone"] = scores(y, softmax(logp - np.log(shift)))
    # the same probabilities moved back to each route's training class mix (Bayes' rule, no second pass)
    routes = teacher.route_of([preprocess_tweet(t) for t in test.texts])
    log_prior = np.array([np.log(teacher.routes[r]["prior"]) for r in routes])
    semeval["stacked, prior = training mix"] = scores(y, softmax(np.log(np.clip(probs, 1e-12, 1)) + log_prior))
    for name, s in semeval.items():
        if isinstance(s, dict):
            print(_fmt(name, s))
    print(f"  teacher speed: {semeval['teacher_texts_per_second']} texts/s on this machine")
    return semeval


def score_xlmt(teacher: TrainedTeacher, xlmt_dir: Path) -> dict:
    """Per language, with the language detected per text and with it given (as tweets carry ``lang``)."""
    results: dict = {}
    for mode in ("detected", "given"):
        print(f"\nXLM-T val sets (never trained on), language {mode}: macro-F1 per language")
        xlmt: dict = {}
        all_y, all_p = [], []
        for folder in sorted(p for p in xlmt_dir.iterdir() if (p / "val_text.txt").is_file()):
            val = read_labelled([folder / "val_text.txt"])
            given = val.languages if mode == "given" else None
            p = teacher.predict_proba(val.texts, languages=given)
            routed = np.mean([r != "en" for r in teacher.route_of([preprocess_tweet(t) for t in val.texts], given)])
            s = scores(val.y, p)
            xlmt[folder.name] = {**s, "routed_multilingual": round(float(routed), 3)}
            all_y.append(val.y)
            all_p.append(p)
            print(f"  {folder.name:<11} n={s['n']:>4}  macro-F1 {s['macro_f1']:.4f}  macro-recall {s['macro_recall']:.4f}  "
                  f"accuracy {s['accuracy']:.4f}  ECE {s['ece']:.4f}  routed to multilingual {routed:.0%}")
        overall = scores(np.concatenate(all_y), np.concatenate(all_p))
        mean = round(float(np.mean([v["macro_f1"] for v in xlmt.values()])), 4)
        xlmt["overall"], xlmt["mean_of_languages_macro_f1"] = overall, mean
        print(f"  overall     n={overall['n']:>4}  macro-F1 {overall['macro_f1']:.4f} (mean over languages {mean:.4f}); "
              "UMSAB XLM-T reference 69.4")
        results[mode] = xlmt
    return results


def mvsa_texts(out: Path) -> Path:
    """The MVSA-Single post texts, one a line (decoded as visent's ingest does), written to ``out``."""
    from visent.core.encoding import TextDecoder

    folder = SHARED / "mvsa-single" / "data"
    files = sorted(folder.glob("*.txt"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
    if not files:
        raise SystemExit(f"no MVSA texts in {folder}: give --texts FILE (one text per line)")
    raw = [f.read_bytes() for f in files]
    decoder = TextDecoder.learn(raw)
    out.write_text("\n".join(" ".join(decoder.decode(b).split()) for b in raw) + "\n", encoding="utf-8")
    return out


def _predict_seconds(teacher: str, runtime: str | None, textfile: Path, home: Path, cache: Path, out: Path) -> float:
    env = {**os.environ, "HOME": str(home), "VISENT_CACHE": str(cache), "VISENT_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    env.pop("VISENT_TEACHER_RUNTIME", None)
    if runtime:
        env["VISENT_TEACHER_RUNTIME"] = runtime
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "visent", "teacher", "predict", teacher, str(textfile), "--out", str(out)],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def speed(textfile: Path | None, rounds: int, variants: list[str]) -> dict:
    """texts/s of whole ``visent teacher predict`` processes, cold and warm, variants alternating per round."""
    work = Path(tempfile.mkdtemp(prefix="visent-teacher-speed-"))
    textfile = textfile or mvsa_texts(work / "texts.txt")
    n = len(textfile.read_text(encoding="utf-8").splitlines())
    warm_home, warm_cache = work / "warm-home", work / "warm-cache"
    warm_home.mkdir()
    print(f"{n} texts from {textfile}; {os.cpu_count()} cores; {rounds} rounds; preparing the warm cache")
    for name in variants:  # one untimed run each fills the warm cache (the ONNX exports) and the OS page cache
        _predict_seconds(*SPEED_VARIANTS[name], textfile, warm_home, warm_cache, work / "out.csv")
    seconds: dict[str, list[float]] = {f"{name} {mode}": [] for name in variants for mode in ("cold", "warm")}
    for r in range(rounds):
        for name in variants:
            for mode in ("cold", "warm"):
                if mode == "cold":
                    slug = f"{r}-{name.replace('/', '-')}"
                    home, cache = work / f"cold-home-{slug}", work / f"cold-cache-{slug}"
                    home.mkdir()
                else:
                    home, cache = warm_home, warm_cache
                s = _predict_seconds(*SPEED_VARIANTS[name], textfile, home, cache, work / "out.csv")
                seconds[f"{name} {mode}"].append(s)
                print(f"  round {r + 1}: {name:<18} {mode}  {s:6.1f} s  {n / s:7.0f} texts/s", flush=True)
    print(f"\nwhole-process texts/s (median of {rounds}); ratio to default/torch in the same mode:")
    results: dict = {"texts": n, "rounds": rounds, "seconds": seconds}
    for key, values in seconds.items():
        rate = n / statistics.median(values)
        name, mode = key.rsplit(" ", 1)
        base = seconds.get(f"default/torch {mode}")
        ratio = f"  x{rate / (n / statistics.median(base)):.2f}" if base else ""
        results[key] = round(rate, 1)
        print(f"  {name:<18} {mode}  {rate:7.0f} texts/s  ({statistics.median(values):.1f} s){ratio}")
    return results


if __name__ == "__main__":
    main()
