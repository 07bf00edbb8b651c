"""``build``: the four stages in a row (ingest → teach → clean → train) with good defaults.

Each stage does only what is left to do: a build run again on the same source is a no-op, and on a source that grew
(or changed) ingest fetches only the new posts' images, teach teaches only the new texts, clean checks only the new
images (and finds duplicates across old and new), and train embeds only the images the feature cache lacks before
it fits the head again. The summary says so: ingest's counts (``source_changed``, ``new_posts``, ``changed_posts``,
``removed_posts``, ``reused``), what teach and clean recorded of the run (teach's ``taught`` and ``reused``, clean's
``images_checked`` and ``images_reused``; absent when the stage had nothing to do or did it all from scratch) and
``images_embedded`` (the images whose features train computed). The default student runs the int8 network shipped
with the default model, whatever the dataset; a calibration measured on the dataset (``int8_calibration="dataset"``,
another backbone or other weights) changes as the crawl grows, and every kept image is embedded again under the new
network.

Module: :mod:`~visent.build.stage` (:func:`build`, :class:`BuildOptions`).
"""

from __future__ import annotations

from visent.build.stage import BuildOptions, build, default_dataset_dir

__all__ = ["BuildOptions", "build", "default_dataset_dir"]
