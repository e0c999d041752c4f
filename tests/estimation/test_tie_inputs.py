"""TIE input checks, failure paths and their messages (no optics needed: synthetic annular donuts)."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from lsst.ts.auxtelwep.errors import ConfigurationError, EstimationError, InputError
from lsst.ts.auxtelwep.estimation import tie, tie_mapping
from lsst.ts.auxtelwep.estimation.tie import solve_tie
from lsst.ts.auxtelwep.estimation.tie_geometry import TieGeometry

# A small instrument: paraxial donut radius 30 px, so stamps of 80 px suffice.
GEOMETRY = TieGeometry(
    name="toy",
    aperture_diameter_m=1.0,
    obscuration=0.4,
    focal_length_m=10.0,
    pixel_size_m=10e-6,
    defocus_offset_m=6e-3,
    wavelength_m=600e-9,
)
FIELD = (0.0, 0.0)


def _donut(size: int = 80, radius: float = 30.0, rng: np.random.Generator | None = None) -> np.ndarray:
    rows, cols = np.indices((size, size)) - (size - 1) / 2
    r = np.hypot(rows, cols)
    image = ((r <= radius) & (r >= 0.4 * radius)).astype(float) * 100.0
    if rng is not None:
        image += rng.normal(0.0, 1.0, image.shape)
    return image


def _solve(intra: object, extra: object, **kwargs: object) -> tie.TieResult:
    return solve_tie(
        intra,  # type: ignore[arg-type]
        extra,  # type: ignore[arg-type]
        geometry=kwargs.pop("geometry", GEOMETRY),  # type: ignore[arg-type]
        field_intra_deg=FIELD,
        field_extra_deg=FIELD,
        **kwargs,  # type: ignore[arg-type]
    )


def test_perfect_annuli_give_no_aberration() -> None:
    rng = np.random.default_rng(3)
    result = _solve(_donut(rng=rng), _donut(rng=rng), model="paraxial")
    assert result.converged, result.message
    # Sharp-edged annuli of exactly the paraxial size: only pixelisation and noise (SNR 100) remain.
    assert np.abs(result.zernikes_um).max() < 0.01
    assert result.intrinsic_um is None
    with pytest.raises(InputError, match="no intrinsic Zernikes"):
        _ = result.deviation_um


@pytest.mark.parametrize(
    ("intra", "match"),
    [
        (np.zeros((0, 0)), "non-empty 2-D"),
        (np.zeros(80), "non-empty 2-D"),
        (np.full((80, 80), "a"), "real numbers"),
        (np.zeros((80, 80)), "non-positive total flux"),
        (-_donut(), "non-positive total flux"),
        (_donut(size=60), "too small for a toy donut"),
    ],
)
def test_bad_stamps_are_refused(intra: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        _solve(intra, _donut())
    assert "intra stamp" in str(info.value)


def test_non_finite_pixels_are_counted_in_the_message() -> None:
    extra = _donut()
    extra[3, 4] = np.nan
    extra[5, 6] = np.inf
    with pytest.raises(InputError, match="extra stamp has 2 non-finite pixels") as info:
        _solve(_donut(), extra)
    assert info.value.value == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noll": [2, 3, 4]}, "Noll 1-3"),
        ({"noll": [4, 4]}, "repeated"),
        ({"solver": "svd"}, "unknown TIE solver 'svd'"),
        ({"model": "wide"}, "unknown optical model 'wide'"),
        ({"model": "offAxis"}, "needs a design"),
        ({"max_iter": 0}, "max_iter must be a positive integer"),
        ({"comp_sequence": (4, 6, 5)}, "non-decreasing"),
        ({"gain": 1.5}, r"gain must lie in \(0, 1\]"),
        ({"converge_tol_um": -1.0}, "converge_tol_um must be >= 0"),
        ({"boundary_px": 9}, "boundary_px"),
        ({"geometry": "AuxTel"}, "geometry must be a TieGeometry"),
        ({"start_um": [0.0]}, "start_um must hold 19 finite values"),
        ({"start_um": np.full(19, np.nan)}, "start_um must hold 19 finite values"),
    ],
)
def test_bad_options_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        _solve(_donut(), _donut(), **kwargs)


def test_bad_field_angles_are_refused() -> None:
    with pytest.raises(InputError, match="field_extra_deg"):
        solve_tie(_donut(), _donut(), geometry=GEOMETRY, field_intra_deg=FIELD, field_extra_deg=(1.0,))
    with pytest.raises(InputError, match="plausible field angle"):
        solve_tie(_donut(), _donut(), geometry=GEOMETRY, field_intra_deg=(np.nan, 0.0), field_extra_deg=FIELD)


def test_geometry_checks() -> None:
    with pytest.raises(ConfigurationError, match="focal_length_m must be positive"):
        dataclasses.replace(GEOMETRY, focal_length_m=-1.0)
    with pytest.raises(ConfigurationError, match="obscuration must lie in"):
        dataclasses.replace(GEOMETRY, obscuration=1.0)
    with pytest.raises(ConfigurationError, match="not small compared"):
        dataclasses.replace(GEOMETRY, defocus_offset_m=6.0)
    with pytest.raises(ConfigurationError, match="design must provide"):
        dataclasses.replace(GEOMETRY, design=object())  # type: ignore[arg-type]
    assert GEOMETRY.donut_radius_px == pytest.approx(30.0)
    assert pickle.loads(pickle.dumps(GEOMETRY)) == GEOMETRY
    lsst = TieGeometry.lsst_published()
    assert (lsst.aperture_diameter_m, lsst.obscuration, lsst.focal_length_m) == (8.36, 0.61, 10.312)
    assert lsst.donut_radius_px == pytest.approx(40.53, abs=0.01)


def test_not_converged_is_reported_and_strict_raises() -> None:
    rng = np.random.default_rng(5)
    intra, extra = _donut(rng=rng), _donut(radius=31.0, rng=rng)  # extra bigger: a defocus error
    result = _solve(intra, extra, model="paraxial", max_iter=2)
    assert not result.converged and not result.caustic and result.iterations == 2
    assert "not converged after 2 iterations" in result.message
    assert abs(result.zernikes_um[0]) > 0.01  # the defocus is seen, just not settled
    with pytest.raises(EstimationError, match="not converged after 2 iterations") as info:
        _solve(intra, extra, model="paraxial", max_iter=2, strict=True)
    assert isinstance(info.value.result, tie.TieResult)
    np.testing.assert_array_equal(info.value.result.zernikes_um, result.zernikes_um)


def test_caustic_stops_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # A solver that returns absurd defocus folds the mapping at the next compensation.
    def absurd(i1: np.ndarray, i2: np.ndarray, bases: object, k_scale: float) -> np.ndarray:
        out = np.zeros(len(bases.noll))  # type: ignore[attr-defined]
        out[bases.noll.index(4)] = 1e-3  # type: ignore[attr-defined]  # 1 mm of defocus
        return out

    monkeypatch.setattr(tie, "exp_solve", absurd)
    result = _solve(_donut(), _donut(), model="paraxial")
    assert result.caustic and not result.converged and result.iterations == 1
    assert "caustic at iteration 2" in result.message and "the intra pupil mapping folds" in result.message
    # The estimate of the last good iteration is kept.
    assert result.zernikes_um[0] == pytest.approx(1e3)


def test_side_model_detects_folding() -> None:
    grid = tie_mapping.pupil_grid(GEOMETRY, (2, 3, 4), 1)
    side = tie_mapping.build_side(
        _donut(), "extra", FIELD, geometry=GEOMETRY, model="onAxis", grid=grid, boundary_px=1
    )
    _, folded = side.compensate(np.array([0.0, 0.0, 1e-7]), (2, 3, 4))
    assert not folded
    _, folded = side.compensate(np.array([0.0, 0.0, -1e-3]), (2, 3, 4))
    assert folded
