"""CPython's cyclic garbage collector paused while a simulation runs and is analysed.

The event loop allocates millions of short-lived events, bundles and records, and the
analysis walks millions of records: the collector would traverse the growing heap again
and again (a 16,384-GPU per-rank run spent about a fifth of its time there, engine and
analysis alike) to find almost nothing (that run leaves under a thousand objects in
cycles; everything else is freed by reference counting as before). Results do not depend
on it. On the way out, a pause that left many objects behind moves them all to the oldest
generation at once (`gc.freeze()` then `gc.unfreeze()`: two list splices) instead of
letting the young collections scan them one generation after another; a short one just
switches the collector back on.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

# objects left in the youngest generation above which they skip the young collections
PROMOTE_ABOVE = 1_000_000


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic collection inside the block (nested blocks: the outermost decides)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if gc.get_count()[0] > PROMOTE_ABOVE:
            gc.freeze()
            gc.unfreeze()
        gc.enable()
