"""Settings shared by the whole test suite."""

import os

# One BLAS thread per process, as the CLI and the CSC's workers run: batoid's small least-squares fits are
# many times slower with a multithreaded BLAS on a busy 2-core machine, and results are then the same in
# the test process and in worker processes. Set before numpy is first imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
