"""Shared pieces of the demo tests: a small scene (few stars near the boresight), DDS isolation."""

from __future__ import annotations

import functools
import unittest

from lsst.ts.auxtelwep.sal.testutils import dds_isolation
from lsst.ts.auxtelwep.sim.night import make_catalog
from lsst.ts.auxtelwep.sim.observatory import SceneConfig
from lsst.ts.auxtelwep.sim.scene import Pointing
from lsst.ts.auxtelwep.sim.signature import DetectorSignature

POINTING = Pointing(ra_deg=150.0, dec_deg=-30.0)


@functools.lru_cache(maxsize=1)
def small_scene() -> SceneConfig:
    """Three stars within 0.05 deg of the boresight, 1" seeing; built once per test process (~2 s)."""
    catalog = make_catalog(POINTING, seed=3, n_stars=3, radius_deg=0.05, mag_range=(10.0, 11.0))
    return SceneConfig(
        pointing=POINTING,
        catalog=catalog,
        signature=DetectorSignature.typical(seed=3),
        seed=3,
        exptime_s=10.0,
        infocus_exptime_s=2.0,
        n_cosmic_rays=0,
    )


class IsolatedTestCase(unittest.IsolatedAsyncioTestCase):
    """Each test gets its own DDS domain id and partition prefix."""

    def setUp(self) -> None:
        isolation = dds_isolation()
        isolation.__enter__()
        self.addCleanup(isolation.__exit__, None, None, None)
