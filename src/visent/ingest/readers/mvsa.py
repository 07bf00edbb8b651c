"""The ``mvsa`` reader: an MVSA-Single or MVSA-Multiple folder (``data/<id>.jpg`` + ``data/<id>.txt``, optional
``labelResultAll.txt`` with the human labels); detected by its label file, or by a ``data/`` folder of numbered
pairs. :func:`read_mvsa_labels` and :func:`find_mvsa_layout` serve the MVSA benchmark too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from visent.core.encoding import TextDecoder
from visent.core.images import IMAGE_SUFFIXES
from visent.core.labels import normalise_label
from visent.ingest.readers.records import MVSA_LABEL_FILE, RawPost, _majority, _pair_posts, _txt_samples
from visent.ingest.readers.registry import register_reader


def read_mvsa_labels(path: Path) -> dict[str, tuple[str | None, str | None]]:
    """``id -> (text_label, image_label)`` from an MVSA ``labelResultAll.txt``.

    MVSA-Multiple lists several annotators (``id<TAB>t,i<TAB>t,i<TAB>t,i``); each modality gets the
    majority label, or None on a tie. Lines that are not label lines (the header) are skipped.
    """
    labels: dict[str, tuple[str | None, str | None]] = {}
    try:
        lines = TextDecoder().decode(path.read_bytes()).splitlines()
    except OSError:
        return labels
    for line in lines:
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2:
            continue
        votes = [tuple(normalise_label(v) for v in field.split(",", 1)) for field in fields[1:] if "," in field]
        if not votes or all(t is None and i is None for t, i in votes):
            continue
        labels[fields[0].strip()] = (_majority(t for t, _ in votes), _majority(i for _, i in votes))
    return labels


def _mvsa_root(source: Path) -> tuple[Path, Path]:
    """(root, data dir) of an MVSA folder given either the folder or its data/ directory."""
    if (source / "data").is_dir():
        return source, source / "data"
    return source.parent, source


def find_mvsa_layout(source: Path) -> tuple[Path, Path | None]:
    """(data dir, labels file or None) of an MVSA folder given either the folder or its data/ directory."""
    root, data = _mvsa_root(Path(source))
    return data, next((p for p in (root / MVSA_LABEL_FILE, data / MVSA_LABEL_FILE) if p.is_file()), None)


def is_mvsa(path: Path) -> bool:
    """A folder with ``labelResultAll.txt``, or a ``data/`` folder (or a folder holding one) of numbered pairs."""
    if path.is_file():
        return False
    root, data = _mvsa_root(path)
    if (root / MVSA_LABEL_FILE).is_file() or (data / MVSA_LABEL_FILE).is_file():
        return True
    if data != path or path.name == "data":
        try:
            stems = {p.stem for p in data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | {".txt"}}
        except OSError:
            return False
        return bool(stems) and all(s.isdigit() for s in stems)
    return False


@register_reader("mvsa", "MVSA folder: data/<id>.jpg + data/<id>.txt, optional labelResultAll.txt",
                 detect=is_mvsa, order=60)
def read_mvsa(source: Path) -> Iterator[RawPost]:
    root, data = _mvsa_root(Path(source))
    label_file = find_mvsa_layout(source)[1]
    labels = read_mvsa_labels(label_file) if label_file else {}
    decoder = TextDecoder.learn(_txt_samples(sorted(data.glob("*.txt"))))
    for post in _pair_posts(data, root, decoder, nested_ids=False, lone=True):
        post.text_label, post.image_label = labels.get(post.post_id.split("_")[0], (None, None))
        yield post
