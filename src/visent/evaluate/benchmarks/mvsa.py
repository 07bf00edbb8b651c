"""The ``mvsa`` benchmark: an MVSA-Single or MVSA-Multiple folder, scored on its image labels (the majority of
the annotators; an image they disagree on is skipped); any folder no other benchmark claims."""

from __future__ import annotations

from pathlib import Path

from visent.core.registry import CATCH_ALL
from visent.evaluate.benchmarks.registry import Benchmark, BenchmarkError, register_benchmark


def is_folder(path: Path) -> bool:
    return not path.is_file()


@register_benchmark("mvsa", "MVSA-Single or MVSA-Multiple folder: data/<id>.jpg and labelResultAll.txt (image labels)",
                    layout="folder", detect=is_folder, order=CATCH_ALL)
def _load_mvsa(folder: Path) -> Benchmark:
    from visent.ingest.readers import find_mvsa_layout, read_mvsa_labels

    data_dir, labels_file = find_mvsa_layout(folder)
    if labels_file is None:
        raise BenchmarkError(f"{folder}: MVSA folder has no labelResultAll.txt, so it has no human labels to evaluate on")
    paths, labels, skipped = [], [], []
    for post_id, (_, image_label) in sorted(read_mvsa_labels(labels_file).items(), key=lambda kv: _numeric(kv[0])):
        if image_label is None:
            skipped.append(f"post {post_id}: annotators disagree on the image label")
            continue
        paths.append(str(data_dir / f"{post_id}.jpg"))
        labels.append(image_label)
    return Benchmark(folder.name, paths, labels, skipped, kind="mvsa")


def _numeric(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (1 << 62, text)
