"""CPython's cycle collector, held back while a grid runs.

Why: a grid keeps thousands of young containers alive at once (tasks, requests, answers, rows waiting to
be written), so with CPython's default threshold (700) the collector makes a young collection every ~30
cells and, every few thousand, a full one over everything the run loaded (its issues, the config, the
modes). Measured in ``orchestrator run`` at 20,000 cells and 256 in flight: 708 young, 64 middle and 5
full collections, 0.57 s of a 9.8 s run, all of it on the one core the event loop has. Freezing what
exists when the grid starts (:func:`gc.freeze`: not scanned again until unfrozen) and raising the young
threshold to :data:`YOUNG_THRESHOLD` left 43 collections and 0.08 s.

Memory stays flat: reference counting still frees every object as soon as its last reference goes; only
garbage caught in reference cycles waits, for at most :data:`YOUNG_THRESHOLD` allocations.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

YOUNG_THRESHOLD = 10_000

_lock = threading.Lock()
_holders = 0
_restore: tuple[tuple[int, ...], bool] | None = None  # the thresholds to put back, and whether to unfreeze


@contextlib.contextmanager
def collector_held_back() -> Iterator[None]:
    """Raise the young threshold and freeze the heap for the block; grids that overlap (two threads of a
    notebook) share one hold, and the last to finish puts the thresholds back.

    A threshold of 0 (collection disabled) and a heap someone else froze (a pre-forking server) are left
    as they are."""
    global _holders, _restore
    with _lock:
        if _holders == 0:
            thresholds = gc.get_threshold()
            freeze = gc.get_freeze_count() == 0
            if freeze:
                gc.freeze()
            if 0 < thresholds[0] < YOUNG_THRESHOLD:
                gc.set_threshold(YOUNG_THRESHOLD, *thresholds[1:])
            _restore = (thresholds, freeze)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _restore is not None:
                thresholds, freeze = _restore
                gc.set_threshold(*thresholds)
                if freeze:
                    gc.unfreeze()
                _restore = None
