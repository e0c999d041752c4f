"""Settings shared by the whole test suite."""

import os
import sys
from collections.abc import Iterator

import pytest

# One BLAS thread per process, as the CLI and the CSC's workers run: batoid's small least-squares fits are
# many times slower with a multithreaded BLAS on a busy 2-core machine, and results are then the same in
# the test process and in worker processes. Set before numpy is first imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


@pytest.fixture(autouse=True, scope="session")
def _model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The optical-model cache (`lsst.ts.auxtelwep.model_cache`) of the session: an empty temporary
    directory, so that no test reads or writes a user's cache and a clean clone computes everything."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUXTELWEP_CACHE_DIR", str(tmp_path_factory.mktemp("model_cache")))
        yield


@pytest.fixture(autouse=True)
def _fresh_estimates() -> None:
    """Each test estimates its own pairs: none reuses a pair estimate kept by an earlier test."""
    estimation = sys.modules.get("lsst.ts.auxtelwep.estimation")
    if estimation is not None:
        estimation.forget_estimates()
