"""How often the text teacher's reading of a post agrees with the human label of its image: the ceiling a
zero-label student faces, since it learns to predict the teacher from the image.

* MVSA-Single: every post's text (read as ``visent ingest`` reads it) against its human *image* label, and, for
  reference, against its human *text* label;
* Twitter-II: each photo's post text from the page metadata beside it (``<n>_<hashtag>.txt``: the
  ``twitter:title`` meta tag, else the poster's first comment) against the photo's human label.

Binary figures as the zero-shot protocol: positive vs negative labels, the larger of the teacher's P(positive) and
P(negative) decides. Also the 3-class agreement on MVSA (argmax against the label).

    python benchmarks/teacher_ceiling.py [--teacher default] [--teacher vader]
"""

from __future__ import annotations

import argparse
import html
import json
import re
from pathlib import Path

import numpy as np

from visent.core.labels import CLASS_INDEX
from visent.evaluate import load_benchmark
from visent.ingest.readers import read_mvsa
from visent.teach import load_teacher

from record import add_results_argument, save_results

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
POS, NEG, NEU = CLASS_INDEX["positive"], CLASS_INDEX["negative"], CLASS_INDEX["neutral"]


def binary(probs: np.ndarray, labels: list[str | None]) -> dict:
    y = np.array([CLASS_INDEX[label] if label else -1 for label in labels])
    keep = (y == POS) | (y == NEG)
    truth, pred = y[keep] == POS, probs[keep, POS] > probs[keep, NEG]
    recalls = [float((pred[truth == c] == c).mean()) for c in (True, False)]
    return {"n": int(keep.sum()), "accuracy": float((pred == truth).mean()), "balanced_accuracy": float(np.mean(recalls))}


def three_class(probs: np.ndarray, labels: list[str | None]) -> dict:
    y = np.array([CLASS_INDEX[label] if label else -1 for label in labels])
    keep = y >= 0
    pred = probs[keep].argmax(axis=1)
    f1 = []
    for c in (NEG, NEU, POS):
        tp = float(((pred == c) & (y[keep] == c)).sum())
        f1.append(2 * tp / max(1.0, float((pred == c).sum() + (y[keep] == c).sum())))
    return {"n": int(keep.sum()), "agreement": float((pred == y[keep]).mean()), "macro_f1": float(np.mean(f1))}


def twitter_ii_text(image: Path) -> str:
    """The post text of a Twitter-II photo from the page metadata beside it ('' when there is none)."""
    notes = sorted(image.parent.glob(f"{image.stem}_*.txt"))
    if not notes:
        return ""
    page = notes[0].read_text(encoding="utf-8", errors="replace")
    title = re.search(r'property="twitter:title" content="([^"]*)"', page)
    if title and title.group(1).strip():
        return html.unescape(title.group(1)).strip()
    comment = re.search(r"Comment:\s*\n(.*)", page)
    return html.unescape(comment.group(1)).strip() if comment else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", action="append", help="a teacher name or directory (repeatable; default: default, vader)")
    parser.add_argument("--mvsa", type=Path, default=SHARED / "mvsa-single")
    parser.add_argument("--twitter-ii", type=Path, default=SHARED / "twitter-ii")
    parser.add_argument("--json", type=Path)
    add_results_argument(parser, "teacher_ceiling")
    args = parser.parse_args()
    posts = list(read_mvsa(args.mvsa))
    mvsa_texts = [post.text or "" for post in posts]
    twitter = load_benchmark(f"twitter-ii={args.twitter_ii}")
    twitter_texts = [twitter_ii_text(Path(p)) for p in twitter.paths]
    print(f"MVSA: {len(posts)} posts; Twitter-II: {len(twitter.paths)} photos, "
          f"{sum(1 for t in twitter_texts if t)} with a post text")
    results = {}
    for name in args.teacher or ["default", "vader"]:
        teacher = load_teacher(name)
        mvsa = teacher.predict_proba(mvsa_texts)
        tw = teacher.predict_proba(twitter_texts)
        results[name] = {
            "mvsa_image_binary": binary(mvsa, [p.image_label for p in posts]),
            "mvsa_image_3class": three_class(mvsa, [p.image_label for p in posts]),
            "mvsa_text_binary": binary(mvsa, [p.text_label for p in posts]),
            "twitter_ii_binary": binary(tw, twitter.labels),
        }
        r = results[name]
        print(f"\nteacher {name}:")
        print(f"  MVSA text vs image label, binary: acc {r['mvsa_image_binary']['accuracy']:.4f}, balanced "
              f"{r['mvsa_image_binary']['balanced_accuracy']:.4f} (n={r['mvsa_image_binary']['n']}); 3-class agreement "
              f"{r['mvsa_image_3class']['agreement']:.4f}, macro-F1 {r['mvsa_image_3class']['macro_f1']:.4f}")
        print(f"  MVSA text vs text label (reference), binary: acc {r['mvsa_text_binary']['accuracy']:.4f}, balanced "
              f"{r['mvsa_text_binary']['balanced_accuracy']:.4f} (n={r['mvsa_text_binary']['n']})")
        print(f"  Twitter-II post text vs photo label, binary: acc {r['twitter_ii_binary']['accuracy']:.4f}, balanced "
              f"{r['twitter_ii_binary']['balanced_accuracy']:.4f} (n={r['twitter_ii_binary']['n']})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    pair = lambda f: f"{f['accuracy']:.4f} / {f['balanced_accuracy']:.4f} (n = {f['n']})"  # noqa: E731
    save_results(args.results, [{"teacher": name, **r} for name, r in results.items()],
                 columns=["teacher", "MVSA text vs image label (accuracy / balanced)", "MVSA 3-class agreement",
                          "MVSA text vs text label", "Twitter-II post text vs photo label"],
                 table=[[name, pair(r["mvsa_image_binary"]), f"{r['mvsa_image_3class']['agreement']:.4f}",
                         pair(r["mvsa_text_binary"]), pair(r["twitter_ii_binary"])] for name, r in results.items()])


if __name__ == "__main__":
    main()
