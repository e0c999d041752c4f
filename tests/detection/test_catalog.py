"""DonutCatalog serialisation: JSON and ECSV round trips keep donuts, mode, reason, WCS and rejections."""

import math

import numpy as np
import pytest

from lsst.ts.auxtelwep.detection import DonutCatalog
from lsst.ts.auxtelwep.detection.catalog import Donut, Rejection
from lsst.ts.auxtelwep.errors import InputError
from lsst.ts.auxtelwep.exposure import boresight_wcs


def _catalog() -> DonutCatalog:
    donuts = (
        Donut(
            1000.5,
            2000.25,
            1003.0,
            1998.5,
            1e6,
            1.1e6,
            300.0,
            310.0,
            0.01,
            -0.02,
            ref_index=3,
            ref_ra_deg=150.1,
            ref_dec_deg=-30.2,
            ref_mag=11.5,
        ),
        Donut(
            3000.0, 500.0, 3002.0, 498.0, 5e5, 5e5, 150.0, 140.0, -0.03, 0.04, blended=True, blend_with=(0,)
        ),
        Donut(1500.0, 1500.0, math.nan, 1500.0, 1e5, 1e5, 40.0, 40.0, 0.0, 0.0),
    )
    return DonutCatalog(
        donuts=donuts,
        mode="refit",
        requested_mode="auto",
        reason="wcs not chosen: ...; refit: WCS solved",
        wcs=boresight_wcs(150.0, -30.0, 12.0, scale_arcsec_per_px=0.0955),
        wcs_scatter_arcsec=0.04,
        n_astrometry_matches=9,
        offsets_px=(4.0, -4.0, 0.0, 8.0),
        rejected=(
            Rejection(100.0, 200.0, "saturated", "extra", 7),
            Rejection(5.0, 6.0, "within 128 px of the edge"),
        ),
        intra_obsid="AT_O_20240624_000001",
        extra_obsid="AT_O_20240624_000002",
    )


def _same(a: DonutCatalog, b: DonutCatalog) -> None:
    assert len(a) == len(b)
    for da, db in zip(a.donuts, b.donuts, strict=True):
        for name in da.__dataclass_fields__:
            va, vb = getattr(da, name), getattr(db, name)
            if isinstance(va, float) and math.isnan(va):
                assert math.isnan(vb), name
            else:
                assert va == vb, name
    for name in (
        "mode",
        "requested_mode",
        "reason",
        "wcs_scatter_arcsec",
        "n_astrometry_matches",
        "offsets_px",
        "rejected",
        "intra_obsid",
        "extra_obsid",
    ):
        assert getattr(a, name) == getattr(b, name), name
    x = np.array([10.0, 2000.0, 4000.0])
    y = np.array([20.0, 1999.5, 3900.0])
    np.testing.assert_allclose(a.wcs.all_pix2world(x, y, 0), b.wcs.all_pix2world(x, y, 0), atol=1e-12)


def test_json_round_trip(tmp_path) -> None:
    cat = _catalog()
    _same(cat, DonutCatalog.from_json(cat.to_json()))
    path = tmp_path / "donuts.json"
    cat.write(path)
    _same(cat, DonutCatalog.read(path))
    assert "NaN" not in path.read_text()  # JSON has no NaN: it is written as null


def test_ecsv_round_trip(tmp_path) -> None:
    cat = _catalog()
    path = tmp_path / "donuts.ecsv"
    cat.write(path)
    back = DonutCatalog.read(path)
    _same(cat, back)
    assert cat.unblended == (cat.donuts[0], cat.donuts[2])
    np.testing.assert_array_equal(cat.positions("extra")[1], [3002.0, 498.0])


def test_bad_inputs(tmp_path) -> None:
    cat = _catalog()
    with pytest.raises(InputError, match="role must be 'intra' or 'extra'"):
        cat.positions("infocus")
    with pytest.raises(InputError, match=r"\.json or \.ecsv"):
        cat.write("donuts.txt")
    with pytest.raises(InputError, match="not a serialised DonutCatalog"):
        DonutCatalog.from_dict({"donuts": []})
    cut = tmp_path / "cut.json"
    cut.write_text(cat.to_json()[:100])  # a catalog cut short while being written
    with pytest.raises(InputError, match=rf"{cut}: not a donut catalog: the text is not JSON"):
        DonutCatalog.read(cut)


def test_public_names_are_exported() -> None:
    import lsst.ts.auxtelwep.detection as detection

    for name in detection.__all__:
        assert getattr(detection, name) is not None, name
    assert {"detect_donuts", "DetectionConfig", "DonutCatalog", "Donut", "Rejection"} <= set(
        detection.__all__
    )
