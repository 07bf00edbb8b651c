"""CORE: what every stage shares and nothing in it depends on a stage.

``version`` (visent's and installed packages'), ``errors`` (the :class:`VisentError` family), ``labels``,
``schema`` (table columns), ``registry`` (named factories), ``progress`` (bars on stderr), ``store`` (datasets,
atomic writes, checkpoints), ``numeric`` (softmax, temperature, prior shift, calibration error), ``images``
(the one decode and size check of an image file) and ``status`` (what became of each image in a pass).
"""
