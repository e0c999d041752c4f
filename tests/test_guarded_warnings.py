"""guarded_warnings: two threads catching warnings at once leave the process-wide state as they found it."""

from __future__ import annotations

import threading
import warnings

from lsst.ts.auxtelwep.guarded_warnings import guarded_warnings


def test_overlapping_blocks_restore_the_global_warning_state() -> None:
    filters, showwarning = list(warnings.filters), warnings.showwarning
    first_inside, second_inside, first_done = threading.Event(), threading.Event(), threading.Event()
    caught: dict[str, list] = {}

    def first() -> None:
        with guarded_warnings(record=True) as seen:
            first_inside.set()
            second_inside.wait(0.3)  # with plain catch_warnings the second block would now be inside too
            warnings.warn("first", UserWarning, stacklevel=1)
        first_done.set()
        caught["first"] = [str(w.message) for w in seen]

    def second() -> None:
        first_inside.wait(5)
        with guarded_warnings(record=True) as seen:
            second_inside.set()
            first_done.wait(0.3)  # unguarded, the first block would now restore the state under this one
            warnings.warn("second", UserWarning, stacklevel=1)
        caught["second"] = [str(w.message) for w in seen]

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert warnings.showwarning is showwarning and warnings.filters == filters
    assert caught == {"first": ["first"], "second": ["second"]}


def test_ignored_categories_are_dropped_and_others_still_shown(recwarn) -> None:
    with guarded_warnings(ignore=(DeprecationWarning,)):
        warnings.warn("dropped", DeprecationWarning, stacklevel=1)
        warnings.warn("kept", UserWarning, stacklevel=1)
    assert [str(w.message) for w in recwarn] == ["kept"]
