"""``visent label export``: images to label in Label Studio, each with the student's prediction as a pre-annotation.

:func:`export_tasks` writes a file for Label Studio's import: a JSON list of tasks, one per image the model could
read, each with its image in ``data`` and the student's class as a ``choices`` prediction (``model_version``
"visent MODEL", ``score`` the class's probability), so a person confirms or corrects it. Beside it,
:func:`label_config` is written as ``NAME.label_config.xml``: the project's labelling config, whose names
(``image``, ``sentiment``) the tasks' predictions refer to. Paste it into the project's Labeling Interface (Code)
before importing the tasks.

How Label Studio shows an image depends on where it is:

* ``document_root``: the images lie under the folder Label Studio serves local files from
  (``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true``, ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=DIR``, and a local
  storage on a folder under it in the project); each image becomes ``/data/local-files/?d=PATH``, its path relative
  to that folder;
* ``url_prefix``: the images are served elsewhere (a web server on their folder, a bucket); each becomes the
  prefix followed by its path relative to ``root`` (by default the folder holding all the images);
* neither: the image's absolute path. Label Studio's page cannot show a bare path, so this only suits a project
  whose tasks are rewritten before import.

Every task also keeps the image's absolute path in ``data["visent_path"]``; Label Studio carries task data into its
exports, so ``visent adapt --labels EXPORT.json`` (:func:`visent.core.labels.read_label_studio`) finds the file
again whatever the URL was. Images that cannot be read get no task: they are listed with the reason.

The formats are Label Studio's documented ones (HumanSignal/label-studio, docs/source/guide/predictions.md: tasks
with ``predictions``; docs/source/guide/tasks.md: the basic task format; docs/source/guide/storage.md, "Tasks with
local storage file references": ``/data/local-files/?d=`` paths relative to the document root).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from visent.core.errors import InputError, UsageError
from visent.core.labels import CLASSES, STUDIO_CHOICES, STUDIO_IMAGE, STUDIO_LOCAL_FILES, STUDIO_PATH
from visent.core.store import atomic_write_text
from visent.model import VisentModel
from visent.model.inputs import expand_inputs

# the choices as a person sees them in Label Studio; read back case-insensitively (visent.core.labels.choice_label)
CHOICES = {name: name.capitalize() for name in CLASSES}


def label_config() -> str:
    """The Label Studio labelling config of visent's tasks: the image, and one choice of Negative, Neutral or
    Positive (the names the tasks' predictions and ``visent adapt``'s reading of exports refer to)."""
    choices = "\n".join(f'    <Choice value="{CHOICES[name]}"/>' for name in CLASSES)
    return (f'<View>\n  <Image name="{STUDIO_IMAGE}" value="${STUDIO_IMAGE}"/>\n'
            f'  <Choices name="{STUDIO_CHOICES}" toName="{STUDIO_IMAGE}" choice="single">\n'
            f'{choices}\n  </Choices>\n</View>\n')


def config_path(out: str | Path) -> Path:
    """Where :func:`export_tasks` writes the labelling config of the tasks file ``out``."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".json") + ".label_config.xml")


def export_tasks(model: str | Path | VisentModel, images: Sequence[str | Path], out: str | Path, *,
                 url_prefix: str | None = None, document_root: str | Path | None = None,
                 root: str | Path | None = None, batch_size: int = 32, cache: bool = True) -> dict[str, Any]:
    """Write Label Studio tasks for ``images`` (files, folders, ``@list.txt`` files) to ``out``, each with the
    prediction of ``model``, and the labelling config beside it (:func:`config_path`); returns a record: ``tasks``,
    ``per_class`` (the predicted classes), ``out``, ``config``, ``model_version`` and ``skipped`` (images without a
    task, with the reason). ``url_prefix`` or ``document_root`` say how Label Studio reaches the images (see the
    module's docstring); ``root`` is the folder the paths after ``url_prefix`` start from."""
    if url_prefix and document_root is not None:
        raise UsageError("give either a URL prefix or a document root, not both: the document root is for images "
                         "Label Studio serves itself, the prefix for images served elsewhere")
    if root is not None and not url_prefix:
        raise UsageError("the root is where the paths after a URL prefix start; give the URL prefix too")
    out = Path(out)
    student = model if isinstance(model, VisentModel) else VisentModel.load(model)
    version = f"visent {_model_name(model)}"
    rows = student.predict_rows(expand_inputs(list(images)), batch_size=batch_size, cache=cache)
    readable = [row for row in rows if row["status"] == "ok"]
    skipped = [f"{row['path']}: {row['error']}" for row in rows if row["status"] != "ok"]
    if document_root is not None:
        base = Path(document_root).resolve()
        if not base.is_dir():
            raise InputError(f"{document_root}: document root not found; give the folder Label Studio serves local "
                             "files from (its LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)")
    elif url_prefix:
        base = Path(root).resolve() if root is not None else _common_folder([Path(r["path"]).resolve()
                                                                            for r in readable])
    tasks, per_class = [], {name: 0 for name in CLASSES}
    for row in readable:
        image = Path(row["path"]).resolve()
        if document_root is None and not url_prefix:
            reference = str(image)
        else:
            try:
                relative = quote(image.relative_to(base).as_posix(), safe="/")
            except ValueError:
                skipped.append(f"{row['path']}: not under {base}, so Label Studio cannot reach it there")
                continue
            reference = (f"{STUDIO_LOCAL_FILES}?d={relative}" if document_root is not None
                         else _joined(url_prefix, relative))
        label = row["label"]
        per_class[label] += 1
        tasks.append({
            "data": {STUDIO_IMAGE: reference, STUDIO_PATH: str(image)},
            "predictions": [{
                "model_version": version,
                "score": round(float(row[label]), 6),
                "result": [{"id": f"visent-{len(tasks)}", "from_name": STUDIO_CHOICES, "to_name": STUDIO_IMAGE,
                            "type": "choices", "value": {"choices": [CHOICES[label]]}}],
            }],
        })
    if not tasks:
        raise InputError("no image to label: " + (skipped[0] if skipped else "none given"))
    atomic_write_text(out, json.dumps(tasks, indent=2, ensure_ascii=False) + "\n")
    config = config_path(out)
    atomic_write_text(config, label_config())
    return {"tasks": len(tasks), "per_class": per_class, "out": str(out), "config": str(config),
            "model_version": version, "skipped": skipped}


def _model_name(model: str | Path | VisentModel) -> str:
    """A model as the tasks name it: a shipped model by its name, a directory by its own name."""
    if isinstance(model, VisentModel):
        return model.directory.name if model.directory is not None else "model"
    return Path(str(model)).resolve().name if Path(str(model)).exists() else str(model)


def _common_folder(paths: list[Path]) -> Path:
    """The deepest folder holding all of ``paths``."""
    return Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path.cwd()


def _joined(prefix: str, relative: str) -> str:
    """``prefix`` then ``relative``, with one slash between them unless the prefix ends a query (``...=``)."""
    return prefix + relative if prefix.endswith(("/", "=")) else f"{prefix}/{relative}"
