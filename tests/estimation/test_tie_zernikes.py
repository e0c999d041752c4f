"""Annular Zernike helpers (`lsst.ts.auxtelwep.zernikes`): values, derivatives, fits, memoised grids."""

from __future__ import annotations

import galsim
import numpy as np
import pytest

from lsst.ts.auxtelwep import zernikes
from lsst.ts.auxtelwep.errors import InputError

OBSC = 0.3525
NOLL = tuple(range(2, 23))


def _annulus_points(
    rng: np.random.Generator, n: int, obscuration: float = OBSC
) -> tuple[np.ndarray, np.ndarray]:
    r = np.sqrt(rng.uniform(obscuration**2, 1.0, n))
    th = rng.uniform(0, 2 * np.pi, n)
    return r * np.cos(th), r * np.sin(th)


def test_basis_matches_galsim_and_is_orthonormal() -> None:
    rng = np.random.default_rng(1)
    x, y = _annulus_points(rng, 200_000)
    values = zernikes.basis(NOLL, x, y, obscuration=OBSC)
    assert values.shape == (len(NOLL), x.size)
    # Row k is Noll NOLL[k], no padded index 0.
    z7 = galsim.zernike.Zernike([0] * 7 + [1], R_outer=1.0, R_inner=OBSC)
    np.testing.assert_allclose(values[NOLL.index(7)], z7(x, y), rtol=0, atol=1e-12)
    # Unit RMS and orthogonal over the annulus: Monte Carlo with 2e5 points, error about 1/sqrt(2e5) ~ 0.003.
    gram = values @ values.T / x.size
    np.testing.assert_allclose(gram, np.eye(len(NOLL)), atol=0.03)


def test_derivatives_match_finite_differences() -> None:
    rng = np.random.default_rng(2)
    x, y = _annulus_points(rng, 50)
    h = 1e-5
    grad = zernikes.gradient_basis(NOLL, x, y, obscuration=OBSC)
    hess = zernikes.hessian_basis(NOLL, x, y, obscuration=OBSC)
    f = lambda dx, dy: zernikes.basis(NOLL, x + dx, y + dy, obscuration=OBSC)  # noqa: E731
    # Central differences with h = 1e-5: truncation ~h^2 * 1e3 and rounding ~1e-16 / h^2 * 1e2: < 1e-4.
    np.testing.assert_allclose(grad[0], (f(h, 0) - f(-h, 0)) / (2 * h), atol=1e-6)
    np.testing.assert_allclose(grad[1], (f(0, h) - f(0, -h)) / (2 * h), atol=1e-6)
    h = 1e-4
    np.testing.assert_allclose(hess[0], (f(h, 0) - 2 * f(0, 0) + f(-h, 0)) / h**2, atol=1e-3)
    np.testing.assert_allclose(hess[2], (f(0, h) - 2 * f(0, 0) + f(0, -h)) / h**2, atol=1e-3)
    mixed = (f(h, h) - f(h, -h) - f(-h, h) + f(-h, -h)) / (4 * h**2)
    np.testing.assert_allclose(hess[1], mixed, atol=1e-3)
    lap = zernikes.laplacian_basis(NOLL, x, y, obscuration=OBSC)
    np.testing.assert_allclose(lap, hess[0] + hess[2])
    # Tilts have constant gradients and no curvature.
    assert np.ptp(grad[0][NOLL.index(2)]) < 1e-12 and np.abs(hess[:, NOLL.index(2)]).max() < 1e-12


def test_radius_scales_coordinates() -> None:
    rng = np.random.default_rng(3)
    x, y = _annulus_points(rng, 20)
    unit = zernikes.gradient_basis([4, 8], x, y, obscuration=OBSC)
    scaled = zernikes.gradient_basis([4, 8], 2 * x, 2 * y, obscuration=OBSC, radius=2.0)
    np.testing.assert_allclose(scaled, unit / 2, rtol=1e-12)


def test_fit_recovers_coefficients() -> None:
    rng = np.random.default_rng(4)
    x, y = _annulus_points(rng, 3000)
    truth = rng.normal(size=len(NOLL))
    values = zernikes.evaluate(truth, NOLL, x, y, obscuration=OBSC)
    np.testing.assert_allclose(zernikes.fit(values, x, y, noll=NOLL, obscuration=OBSC), truth, atol=1e-10)
    # Weights: samples with zero weight (here corrupted) do not count; NaN samples are ignored.
    bad = values.copy()
    bad[:100] += 50.0
    bad[100:110] = np.nan
    weights = np.ones_like(bad)
    weights[:100] = 0.0
    np.testing.assert_allclose(
        zernikes.fit(bad, x, y, noll=NOLL, obscuration=OBSC, weights=weights), truth, atol=1e-10
    )


def test_bad_arguments_are_refused_with_clear_messages() -> None:
    x = np.zeros(3)
    with pytest.raises(InputError, match=r"must lie in 1\.\."):
        zernikes.check_noll([0, 4])
    with pytest.raises(InputError, match="repeated"):
        zernikes.check_noll([4, 5, 4])
    with pytest.raises(InputError, match="integers"):
        zernikes.check_noll([4.5])
    with pytest.raises(InputError, match="non-empty"):
        zernikes.check_noll([])
    assert zernikes.check_noll(range(4, 7)) == (4, 5, 6)
    assert zernikes.check_noll(np.int64(11)) == (11,)
    with pytest.raises(InputError, match="obscuration"):
        zernikes.basis([4], x, x, obscuration=1.0)
    with pytest.raises(InputError, match="same shape"):
        zernikes.basis([4], x, np.zeros(4), obscuration=OBSC)
    with pytest.raises(InputError, match="2 values for 3 Noll"):
        zernikes.evaluate([1.0, 2.0], [4, 5, 6], x, x, obscuration=OBSC)
    with pytest.raises(InputError, match="cannot fit 3 Zernike terms to 2"):
        zernikes.fit(
            np.array([1.0, 2.0]), np.array([0.5, 0.6]), np.zeros(2), noll=[4, 5, 6], obscuration=OBSC
        )


def test_grid_bases_are_memoised_and_read_only() -> None:
    args = ((4, 5, 6), 40, 1 / 18.0, 0.3, 1.05, OBSC)
    domain, bases = zernikes.grid_bases(*args)
    again = zernikes.grid_bases(*args)
    assert again[1] is bases
    assert domain.shape == (40, 40) and bases.value.shape == (3, int(domain.sum()))
    r = np.hypot(bases.x, bases.y)
    assert r.min() >= 0.3 and r.max() <= 1.05
    with pytest.raises(ValueError, match="read-only"):
        bases.dx[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        domain[0, 0] = True
    np.testing.assert_array_equal(bases.rows([6, 4]), [2, 0])
    with pytest.raises(InputError, match=r"\[7\] are not in this basis"):
        bases.rows([7])
