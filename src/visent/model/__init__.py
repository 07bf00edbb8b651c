"""MODEL: the visual student (backbone features, image signals, head) and its directory.

:class:`VisentModel` embeds images (:mod:`visent.embed`), adds the model's image signals (:mod:`visent.signals`)
and reads them with the :class:`~visent.model.head.StudentHead`; :mod:`visent.model.inputs` turns what a user
passes (paths, folders, ``@list.txt``, PIL images, arrays, bytes) into files. Training, prediction files, sentiment
maps and evaluation use the model and live above it (:mod:`visent.train`, :mod:`visent.predict`,
:mod:`visent.explain`, :mod:`visent.evaluate`).
"""

from visent.model.head import StudentHead
from visent.model.student import (
                                  CHUNK,
                                  DEFAULT_MODEL,
                                  ModelConfig,
                                  ModelError,
                                  VisentModel,
                                  load,
                                  packaged_model_dir,
                                  resolve_model_dir,
)

__all__ = ["CHUNK", "DEFAULT_MODEL", "ModelConfig", "ModelError", "StudentHead", "VisentModel", "load",
           "packaged_model_dir", "resolve_model_dir"]
