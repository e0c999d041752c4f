"""Figures: the wavefront map is the Zernike series on the annulus, and the PNG writers produce images."""

import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import imread

from lsst.ts.auxtelwep import plots
from lsst.ts.auxtelwep.instrument import OBSCURATION
from lsst.ts.auxtelwep.plots import plot_convergence, plot_night, plot_stamps, wavefront_map


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


def _night_entry(seq: int, z4_um: float, *, fwhm: list | None, day_obs: str = "20240624") -> dict:
    noll = list(range(4, 12))
    return {
        "intra": f"AT_O_{day_obs}_{seq:06d}",
        "detection": {"donuts": [{"used": True, "fwhm_arcsec": fwhm}, {"used": False, "fwhm_arcsec": None}]},
        "zernikes": {
            "noll": noll,
            "um": [z4_um] + [0.01] * 7,
            "um_err": [0.001] + [None] * 7,  # the TIE alone gives no errors
            "donuts_used": 1,
        },
        "hexapod": {"x_mm": 0.1, "y_mm": -0.05, "z_mm": -z4_um / 4.2, "u_deg": 0.0, "v_deg": 0.0},
        "hexapod_err": {"x_mm": 0.002, "y_mm": 0.002, "z_mm": 0.0001, "u_deg": None, "v_deg": None},
    }


def test_night_figure_takes_reprocess_lines_in_any_order(tmp_path) -> None:
    # JSON lines as `auxtelwep reprocess` writes them: rejections first, triplets as they finish, some
    # values missing (no seeing from the TIE alone, no error for an axis not solved).
    lines = [
        {"group_id": "", "obsids": ["AT_O_20240624_000050.fits"], "rejected": "unreadable header"},
        _night_entry(7, 0.2, fwhm=None),
        _night_entry(1, 0.3, fwhm=[1.0, 1.1]),
        _night_entry(4, 0.25, fwhm=[0.9, 1.0]),
    ]
    image = imread(plot_night(lines, tmp_path / "night.png", title="20240624"))
    assert image.shape[0] > 500 and image.shape[1] > 900 and image.std() > 0.01
    # A night where nothing could be processed still gives a figure (saying so in its title).
    assert imread(plot_night(lines[:1], tmp_path / "empty.png")).shape[0] > 500


def test_night_figure_tells_nights_apart(tmp_path, monkeypatch) -> None:
    # Two nights with the same SEQNUMs were labelled 1, 4, 1, 4 and joined by one line.
    figures = []

    class KeptFigure(Figure):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            figures.append(self)

    monkeypatch.setattr(plots, "Figure", KeptFigure)
    lines = [
        _night_entry(seq, 0.2, fwhm=[1.0, 1.0], day_obs=day_obs)
        for day_obs in ("20240625", "20240624")
        for seq in (4, 1)
    ]
    plot_night(lines, tmp_path / "nights.png")
    ax_z4, ax_seeing = figures[0].axes[0], figures[0].axes[3]
    labels = [t.get_text() for t in ax_seeing.get_xticklabels()]
    assert labels == ["20240624:1", "20240624:4", "20240625:1", "20240625:4"]
    # A gap with no value between the nights: the line breaks there.
    assert np.isnan(ax_z4.lines[0].get_ydata()).tolist() == [False, False, True, False, False]


def test_the_stamp_figure_carries_the_title_it_is_given(tmp_path, monkeypatch) -> None:
    # Each panel's label was written into the variable of the figure's title: the last label won.
    titles = []
    save = Figure.savefig

    def record(fig, *args, **kwargs):
        titles.append(fig.get_suptitle())
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    donut = np.ones((21, 21))
    stamps = [{"data": donut, "label": "intra #1"}, {"data": donut, "label": "extra #1"}]
    plot_stamps(stamps, tmp_path / "s.png", title="AT_O_20240624_000001 + AT_O_20240624_000002")
    assert titles == ["AT_O_20240624_000001 + AT_O_20240624_000002"]
