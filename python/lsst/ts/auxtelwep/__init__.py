"""ts_auxtelwep: wavefront estimation service (CSC ``AuxTelWEP``) of the Rubin Auxiliary Telescope."""

import os

# numpy advises the kernel to back every large array with transparent huge pages. Where the kernel then
# compacts memory on demand (THP defrag "madvise", as on the 2-core machine the targets are measured on),
# a full-frame ISR spends 0.2-0.4 s of its 0.4-0.6 s in the kernel; without the advice it takes 0.19-0.26 s
# (fresh processes, with and without the variable). Read by numpy when it is imported, so this only holds
# where this package comes first (its commands, the CSC, their worker processes); a value already set wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from .errors import *  # noqa: F403

__version__ = "0.1.0"
