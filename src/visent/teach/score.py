"""``visent teacher predict``: a teacher's probabilities for each line of a text file, as CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from visent.core.encoding import TextDecoder
from visent.core.errors import PathNotFound
from visent.core.labels import CLASSES
from visent.teach.teachers import load_teacher
from visent.teach.text import preprocess_tweet

COLUMNS = (*CLASSES, "label")


def read_lines(path: str | Path) -> list[str]:
    """The lines of a text file, decoded as UTF-8 or, failing that, the detected legacy encoding."""
    data = Path(path).read_bytes()
    text = TextDecoder.learn([data]).decode(data)
    return text.splitlines()


def predict_lines(teacher: str, textfile: str | Path, out: str | Path | None = None,
                  batch_size: int = 4096) -> str | None:
    """Score every line of ``textfile`` with ``teacher``; one CSV row per input line, same order.

    Lines without text (empty after normalisation) keep their row with empty fields. The CSV goes
    to ``out`` (written atomically) or is returned as a string.
    """
    if not Path(textfile).is_file():
        raise PathNotFound(f"{textfile}: no such text file (give one text per line)")
    lines = read_lines(textfile)
    model = load_teacher(teacher)
    live = [i for i, line in enumerate(lines) if preprocess_tweet(line)]
    rows: list[list[str]] = [["", "", "", ""] for _ in lines]
    for start in range(0, len(live), batch_size):
        chunk = live[start:start + batch_size]
        probs = model.predict_proba([lines[i] for i in chunk])
        for i, p in zip(chunk, probs):
            rows[i] = [f"{v:.6f}" for v in p] + [CLASSES[int(p.argmax())]]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    if out is None:
        return buffer.getvalue()
    from visent.core.store import atomic_write_text

    atomic_write_text(Path(out), buffer.getvalue())
    return None
