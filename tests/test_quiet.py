"""Warnings quieted in one thread stay quiet while another thread quiets and restores its own."""

from __future__ import annotations

import threading
import time
import warnings

from visent.core.quiet import quiet_warnings


def test_a_thread_ending_its_quiet_block_does_not_undo_anothers():
    entered, release = threading.Event(), threading.Event()

    def decoding_images():  # as an image thread does: quiet one category, for a while
        with quiet_warnings(DeprecationWarning):
            entered.set()
            release.wait(5)

    worker = threading.Thread(target=decoding_images)
    worker.start()
    assert entered.wait(5)
    threading.Timer(0.2, release.set).start()  # the image thread leaves its block while the export below runs
    with quiet_warnings():  # as an exporter does: everything, for longer
        time.sleep(0.4)
        action, _, category, _, _ = warnings.filters[0]
        assert (action, category) == ("ignore", Warning)  # still in force after the image thread left its block
    worker.join(5)
