"""The registry of named teachers (``visent teachers``) and :func:`load_teacher`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from visent.core.registry import Registry
from visent.teach.base import Teacher, TeacherNotFound, UnknownTeacher
from visent.teach.directory import DEFAULT_TEACHER_DIR, TEACHER_FILE, TrainedTeacher
from visent.teach.vader import DEFAULT_CALIBRATION, VaderTeacher

TEACHERS: Registry[Teacher] = Registry("teacher", error=UnknownTeacher)


@TEACHERS.register("default")
def _default(prior: str | Sequence[float] = "uniform", language: str | None = None) -> TrainedTeacher:
    """Shipped trained teacher: fine-tuned MiniLM + multilingual e5 + VADER, routed by language (kw: prior, language)."""
    # On MVSA (benchmarks/mvsa_zero_label.py, fold 0) Serra et al.'s 0.7 / 0.9 / 0.9 keep 1,198 of ~2,950 posts (68
    # neutral) and the student reaches 0.603 balanced accuracy; 0.5 for every class keeps ~2,550 and reaches 0.657.
    return TrainedTeacher(DEFAULT_TEACHER_DIR, name="default", prior=prior, language=language,
                          thresholds={"negative": 0.5, "neutral": 0.5, "positive": 0.5})


@TEACHERS.register("vader")
def _vader(calibration: str | Path | Mapping[str, Any] = DEFAULT_CALIBRATION,
           prior: str | Sequence[float] = "uniform") -> VaderTeacher:
    """VADER lexicon scores with logistic calibration fitted on SemEval-2017 tweets (kw: prior, calibration)."""
    return VaderTeacher(calibration, prior)


def is_teacher_dir(name: str | Path) -> bool:
    """Whether ``name`` is a teacher directory made by ``visent teacher train`` (rather than a registered name)."""
    return str(name) not in TEACHERS and (Path(name) / TEACHER_FILE).is_file()


def check_teacher(name: str | Path) -> str:
    """``name`` if it is a registered teacher or a teacher directory, else an UnknownTeacher that lists the
    registered ones (or a TeacherNotFound for a folder that has no teacher.json); cheap, loads nothing."""
    if str(name) in TEACHERS or is_teacher_dir(name):
        return str(name)
    if Path(name).is_dir():
        raise TeacherNotFound(f"{Path(name) / TEACHER_FILE} not found: a teacher directory is made by "
                              "`visent teacher train`")
    raise UnknownTeacher(f"unknown teacher {str(name)!r}; choose one of: {', '.join(TEACHERS)}, "
                         "or a directory made by `visent teacher train`")


def load_teacher(name: str = "default", **kw: Any) -> Teacher:
    """Build the teacher registered as ``name`` (see ``TEACHERS.describe()``), or load a teacher
    directory made by ``visent teacher train`` when ``name`` is its path; ``kw`` go to the factory."""
    if is_teacher_dir(check_teacher(name)):
        return TrainedTeacher(name, **kw)
    return TEACHERS.create(name, **kw)
