"""The options of the teach stage (:class:`TeachOptions`): what :func:`visent.teach.teach` takes, what it records as
its parameters, and what ``visent teach`` and ``visent build`` offer (see :mod:`visent.core.options`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from visent.core.options import engine_option, option, ray_address_option
from visent.engine import Engine


@dataclass
class TeachOptions:
    """Which teacher labels the posts' texts (a name of :data:`visent.teach.TEACHERS` or a teacher directory),
    ``batch_size`` posts at a time (a checkpoint, and what one worker of the ``engine`` teaches at a time)."""

    teacher: str = option("default", help="Textual teacher: a name (see `visent teachers`) or a directory made by "
                                          "`visent teacher train`.")
    batch_size: int = option(2048, help="Posts per batch: a checkpoint, and what one ray actor teaches at a time.",
                             min=1, fingerprint=False)
    engine: str | Engine = engine_option()
    ray_address: str | None = ray_address_option()

    def params(self, teacher_id: str, posts: str) -> dict[str, Any]:
        """The parameters the stage records: the teacher's name, beside its fingerprint (``teacher_id``) and the
        digest of the posts it teaches."""
        return {"teacher": self.teacher, "teacher_id": teacher_id, "posts": posts}
