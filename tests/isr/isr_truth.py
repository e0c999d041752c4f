"""Shared full-frame truth for the ISR tests: one detector, one simulated raw, its calibration products.

The fixture ``truth`` is made available to the tests by ``conftest.py``.

The scene (incident electrons, assembled frame): a flat sky, gaussian stars (one across the C03/C04 seam),
an annulus shaped like an AuxTel donut, one star bright enough to saturate, and a hot column that the
defects list names. Made once per session; everything here is seeded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from lsst.ts.auxtelwep.calibs import per_amp_image
from lsst.ts.auxtelwep.instrument import DETECTOR_SHAPE
from lsst.ts.auxtelwep.sim.signature import (
    DetectorSignature,
    default_header,
    electrons_to_amps,
    write_calibrations,
    write_raw,
)

SKY_E = 800.0
"""Sky level, incident e- per pixel."""
EXPTIME_S, DARKTIME_S = 30.0, 30.4
HOT_COLUMN = 1500
STARS = ((1000.0, 700.0, 4.0e5), (3100.0, 2600.0, 6.0e5), (1500.0, 2036.0, 5.0e5), (2600.0, 3700.0, 3.0e5))
"""(row, col, total e-) of unsaturated gaussian stars, sigma 4 px; the third sits on the C03/C04 seam."""
DONUT = (2900.0, 1200.0, 96.0, 34.0, 300.0)
"""(row, col, outer radius px, inner radius px, e- per pixel) of the annulus."""
SATURATED_STAR = (600.0, 3300.0, 5.0e7)
"""(row, col, total e-): peak about 5e5 e-, far above 120000 adu."""


@dataclasses.dataclass(frozen=True)
class Truth:
    """What went into the simulated raw."""

    signature: DetectorSignature
    electrons: NDArray[np.float32]
    """Incident electrons, (4000, 4072)."""
    raw_path: Path
    calib_dir: Path
    quiet: NDArray[np.bool_]
    """Pixels far from every source, the hot column and the saturated star: pure sky."""
    adu_scale: float
    """Output adu per incident electron after ISR with doFlat: mean(flat pattern / gain)."""


def _scene() -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    electrons = np.full(DETECTOR_SHAPE, SKY_E, dtype=np.float32)
    quiet = np.ones(DETECTOR_SHAPE, dtype=bool)
    sources = [(r, c, f, 4.0) for r, c, f in STARS] + [(*SATURATED_STAR, 3.0)]
    for row, col, flux, sigma in sources:
        half = 40 if flux < 1e7 else 120
        sl = (slice(int(row) - half, int(row) + half), slice(int(col) - half, int(col) + half))
        y = np.arange(sl[0].start, sl[0].stop)[:, None] - row
        x = np.arange(sl[1].start, sl[1].stop)[None, :] - col
        electrons[sl] += (flux / (2 * np.pi * sigma**2) * np.exp(-(y * y + x * x) / (2 * sigma**2))).astype(
            np.float32
        )
        quiet[sl] = False
    row, col, outer, inner, level = DONUT
    sl = (
        slice(int(row - outer) - 2, int(row + outer) + 3),
        slice(int(col - outer) - 2, int(col + outer) + 3),
    )
    y = np.arange(sl[0].start, sl[0].stop)[:, None] - row
    x = np.arange(sl[1].start, sl[1].stop)[None, :] - col
    r2 = y * y + x * x
    electrons[sl] += np.where((r2 <= outer**2) & (r2 >= inner**2), level, 0.0).astype(np.float32)
    quiet[sl] = False
    quiet[:, HOT_COLUMN - 2 : HOT_COLUMN + 3] = False
    return electrons, quiet


@pytest.fixture(scope="session")
def truth(tmp_path_factory: pytest.TempPathFactory) -> Truth:
    signature = DetectorSignature.typical(seed=11)
    electrons, quiet = _scene()
    rng = np.random.default_rng(20240624)
    amps = electrons_to_amps(
        electrons,
        signature,
        exptime_s=EXPTIME_S,
        darktime_s=DARKTIME_S,
        rng=rng,
        hot_columns=[HOT_COLUMN],
    )
    directory = tmp_path_factory.mktemp("isr_truth")
    raw_path = directory / "AT_O_20240624_000106.fits"
    write_raw(raw_path, amps, default_header(EXPTIME=EXPTIME_S, DARKTIME=DARKTIME_S))
    calib_dir = write_calibrations(
        signature, directory / "calibs", rng=rng, defects=[(HOT_COLUMN, 0, 1, DETECTOR_SHAPE[0])]
    )
    scale = float(np.mean(signature.flat / per_amp_image(signature.gain), dtype=np.float64))
    return Truth(signature, electrons, raw_path, calib_dir, quiet, scale)
