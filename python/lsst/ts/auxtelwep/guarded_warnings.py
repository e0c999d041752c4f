"""`warnings.catch_warnings` for code that runs in several threads at once.

``catch_warnings`` swaps process-wide state (the filter list and, when recording, ``warnings.showwarning``)
and puts it back on exit. Two threads inside at once restore each other's state: the pipeline reads and
calibrates the intra and extra images in two threads, and astropy's notices about a corrupt file then
leaked to stderr beside the command's one-line error. Here the blocks take turns (the cost is that the
reads they wrap do not overlap: tens of milliseconds).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

__all__ = ["guarded_warnings"]

_LOCK = threading.RLock()


@contextlib.contextmanager
def guarded_warnings(
    *, ignore: tuple[type[Warning], ...] = (), record: bool = False
) -> Iterator[list[warnings.WarningMessage]]:
    """Ignore ``ignore`` categories, or record every warning, inside the block, one thread at a time.

    Parameters
    ----------
    ignore : `tuple` of warning classes
        Categories to drop.
    record : `bool`
        Record every other warning into the yielded list instead of showing it.

    Yields
    ------
    caught : `list` of `warnings.WarningMessage`
        The recorded warnings (empty unless ``record``).
    """
    with _LOCK, warnings.catch_warnings(record=record) as caught:
        if record:
            warnings.simplefilter("always")
        for category in ignore:
            warnings.simplefilter("ignore", category)
        yield caught if caught is not None else []
