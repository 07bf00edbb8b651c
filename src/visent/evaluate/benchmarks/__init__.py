"""Benchmarks: human-labelled images to prove a student on.

``BENCHMARKS`` is the registry (``visent benchmarks``): a benchmark is a reader of a folder or file into a
:class:`Benchmark` (image paths, their human labels, what was skipped with why, and the benchmark's own
cross-validation folds and named subsets when it has them). A spec is ``name=PATH`` or a bare path whose kind
is detected from its layout (:func:`detect_kind`).

One module per benchmark, each registering its reader, its layout and its detection with
:func:`~visent.evaluate.benchmarks.registry.register_benchmark`; every module of this folder is imported with the
package, so adding a benchmark is adding a module here (docs/extending.md). The readers follow the benchmarks as
distributed and as the literature uses them:

* ``twitter_i``: Twitter-I (You et al., AAAI 2015), its 5-, 4- and 3-agree subsets side by side, with Campos et
  al.'s cross-validation splits where they are beside it;
* ``twitter_ii``: Twitter-II (Borth et al., ACM MM 2013), its folds the partitions;
* ``emotions``: FI (You et al., AAAI 2016) and EmotionROI (Peng et al., 2016), emotions mapped to polarity
  (:data:`EMOTION_POLARITY`), T4SA 2.0's copies included;
* ``mvsa``: MVSA-Single or -Multiple folders (the image labels); ``table``: a CSV of ``path,label``;
  ``folders``: one folder per class (negative / neutral / positive).
"""

from visent.core.registry import import_modules
from visent.evaluate.benchmarks.emotions import EMOTION_POLARITY, EMOTIONROI_POLARITY, FI_POLARITY
from visent.evaluate.benchmarks.registry import (
    BENCHMARKS,
    Benchmark,
    BenchmarkError,
    detect_kind,
    load_benchmark,
    register_benchmark,
)
from visent.evaluate.benchmarks.twitter_i import TWITTER_I_SPLITS, TWITTER_I_SUBSETS

import_modules(__name__, __path__)  # every module of this folder registers its benchmark: adding one is adding a file

__all__ = ["BENCHMARKS", "EMOTIONROI_POLARITY", "EMOTION_POLARITY", "FI_POLARITY", "TWITTER_I_SPLITS",
           "TWITTER_I_SUBSETS", "Benchmark", "BenchmarkError", "detect_kind", "load_benchmark", "register_benchmark"]
