"""Figures: the wavefront map is the Zernike series on the annulus, and the PNG writers produce images."""

import numpy as np
from matplotlib.image import imread

from lsst.ts.auxtelwep.instrument import OBSCURATION
from lsst.ts.auxtelwep.plots import plot_convergence, plot_stamps, wavefront_map


def test_wavefront_map_is_the_series_on_the_annulus() -> None:
    opd = wavefront_map([4], [0.1], size=101)
    u = np.linspace(-1, 1, 101)
    r = np.hypot(*np.meshgrid(u, u))
    inside = (r <= 1) & (r >= OBSCURATION)
    assert np.all(np.isnan(opd[~inside])) and np.all(np.isfinite(opd[inside]))
    # Defocus is radially symmetric and rises outward; 0.1 um of Z4 has an RMS of 100 nm over the annulus.
    assert opd[50, 100] == opd[100, 50] and opd[50, 100] > opd[50, 70]
    assert abs(np.nanstd(opd) - 100) < 5


def test_pngs_are_written(tmp_path) -> None:
    history = [
        dict(x=0.3 / (i + 1), y=0.0, z=0.1 / (i + 1), z4=100.0 / (i + 1), z7=0.0, z8=5.0) for i in range(3)
    ]
    conv = imread(plot_convergence(history, tmp_path / "conv.png"))
    assert conv.shape[0] > 200 and conv.std() > 0.01
    donut = np.zeros((41, 41))
    donut[10:30, 10:30] = 1.0
    stamps = imread(
        plot_stamps(
            [{"data": donut, "model": donut * 0.9, "label": "intra"}],
            tmp_path / "s.png",
            noll=[4, 7],
            coefs_um=[0.05, 0.02],
            errors_um=[0.001, 0.002],
            notes="hexapod correction:\n  z -0.0100 mm",
        )
    )
    assert stamps.shape[1] > 300
