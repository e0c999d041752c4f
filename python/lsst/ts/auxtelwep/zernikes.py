"""Annular Zernike polynomials: bases, derivatives and fits, on top of `galsim.zernike`.

Conventions, stated once
------------------------
- Noll indexing (1 = piston, 2/3 = tilt, 4 = defocus, ...), normalised as in GalSim: each polynomial has
  unit RMS over the annulus ``obscuration * radius <= r <= radius``. Index 0 is never used: every function
  here takes an explicit sequence of Noll indices (``noll``) and returns rows in that order.
- Coordinates ``x, y`` are in the same unit as ``radius`` (normalised pupil coordinates when ``radius`` is 1).
  Derivatives are with respect to those coordinates.
- Coefficients carry whatever unit the caller uses (the package uses micrometres at its interfaces).
- Functions of arrays are pure and not cached. `grid_bases` is memoised on its (hashable) arguments and
  returns read-only arrays: copy before modifying.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable

import galsim
import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InputError

__all__ = [
    "MAX_NOLL",
    "ZernikeBases",
    "bases_at",
    "basis",
    "check_noll",
    "evaluate",
    "fit",
    "gradient_basis",
    "grid_bases",
    "hessian_basis",
    "laplacian_basis",
]

MAX_NOLL = 120
"""Largest Noll index accepted (radial order 14); higher orders are numerically fragile on a pixel grid."""


def check_noll(noll: Iterable[int] | int, *, name: str = "noll") -> tuple[int, ...]:
    """Validate a sequence of Noll indices and return it as a tuple of ints.

    Parameters
    ----------
    noll : iterable of `int`
        Noll indices, each in ``1..MAX_NOLL``, without repeats.
    name : `str`
        Name of the argument, for the error message.

    Returns
    -------
    noll : `tuple` of `int`
        The indices, in the order given.

    Raises
    ------
    InputError
        If the sequence is empty, has repeats, non-integers or indices out of range.
    """
    if isinstance(noll, int | np.integer):
        noll = (int(noll),)
    try:
        raw = list(noll)
        values = [int(j) for j in raw]
        exact = all(float(j) == v for j, v in zip(raw, values, strict=True))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a sequence of integers, got {noll!r}", value=noll) from exc
    if not values or not exact:
        raise InputError(f"{name} must be a non-empty sequence of integers, got {noll!r}", value=noll)
    if min(values) < 1 or max(values) > MAX_NOLL:
        raise InputError(
            f"{name} must lie in 1..{MAX_NOLL}, got {values}", value=values, allowed=(1, MAX_NOLL)
        )
    if len(set(values)) != len(values):
        raise InputError(f"{name} has repeated indices: {values}", value=values)
    return tuple(values)


def _check_geometry(obscuration: float, radius: float) -> tuple[float, float]:
    if not 0.0 <= obscuration < 1.0:
        raise InputError(
            f"obscuration must lie in [0, 1), got {obscuration}", value=obscuration, allowed=(0, 1)
        )
    if not radius > 0.0:
        raise InputError(f"radius must be positive, got {radius}", value=radius)
    return float(obscuration), float(radius)


def _xy(x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.shape != ya.shape:
        raise InputError(f"x and y must have the same shape, got {xa.shape} and {ya.shape}")
    return xa, ya


def _unit(j: int, obscuration: float, radius: float) -> galsim.zernike.Zernike:
    coef = np.zeros(j + 1)
    coef[j] = 1.0
    return galsim.zernike.Zernike(coef, R_outer=radius, R_inner=obscuration * radius)


def _checked_units(
    noll: Iterable[int], x: ArrayLike, y: ArrayLike, obscuration: float, radius: float
) -> tuple[list[galsim.zernike.Zernike], NDArray[np.float64], NDArray[np.float64]]:
    """Check the arguments of a basis function; return the unit Zernikes of ``noll`` and ``x``, ``y``."""
    idx = check_noll(noll)
    obscuration, radius = _check_geometry(obscuration, radius)
    xa, ya = _xy(x, y)
    return [_unit(j, obscuration, radius) for j in idx], xa, ya


def basis(
    noll: Iterable[int], x: ArrayLike, y: ArrayLike, *, obscuration: float, radius: float = 1.0
) -> NDArray[np.float64]:
    """Values of the annular Zernike polynomials.

    Parameters
    ----------
    noll : iterable of `int`
        Noll indices.
    x, y : array-like of float
        Coordinates, any (matching) shape, in the unit of ``radius``.
    obscuration : `float`
        Inner radius of the annulus as a fraction of ``radius``.
    radius : `float`
        Outer radius of the annulus.

    Returns
    -------
    values : `numpy.ndarray`, shape ``(len(noll), *x.shape)``
    """
    units, xa, ya = _checked_units(noll, x, y, obscuration, radius)
    return np.stack([z(xa, ya) for z in units])


def gradient_basis(
    noll: Iterable[int], x: ArrayLike, y: ArrayLike, *, obscuration: float, radius: float = 1.0
) -> NDArray[np.float64]:
    """First derivatives of the annular Zernike polynomials.

    Parameters
    ----------
    noll : iterable of `int`
        Noll indices.
    x, y : array-like of float
        Coordinates, any (matching) shape, in the unit of ``radius``.
    obscuration : `float`
        Inner radius of the annulus as a fraction of ``radius``.
    radius : `float`, optional
        Outer radius of the annulus.

    Returns
    -------
    grad : `numpy.ndarray`, shape ``(2, len(noll), *x.shape)``
        ``grad[0]`` is d/dx, ``grad[1]`` is d/dy (per unit of ``radius``).
    """
    units, xa, ya = _checked_units(noll, x, y, obscuration, radius)
    out = np.empty((2, len(units), *xa.shape))
    for k, z in enumerate(units):
        out[0, k] = z.gradX(xa, ya)
        out[1, k] = z.gradY(xa, ya)
    return out


def hessian_basis(
    noll: Iterable[int], x: ArrayLike, y: ArrayLike, *, obscuration: float, radius: float = 1.0
) -> NDArray[np.float64]:
    """Second derivatives of the annular Zernike polynomials.

    Parameters
    ----------
    noll : iterable of `int`
        Noll indices.
    x, y : array-like of float
        Coordinates, any (matching) shape, in the unit of ``radius``.
    obscuration : `float`
        Inner radius of the annulus as a fraction of ``radius``.
    radius : `float`, optional
        Outer radius of the annulus.

    Returns
    -------
    hess : `numpy.ndarray`, shape ``(3, len(noll), *x.shape)``
        d2/dx2, d2/dxdy and d2/dy2, in that order.
    """
    units, xa, ya = _checked_units(noll, x, y, obscuration, radius)
    out = np.empty((3, len(units), *xa.shape))
    for k, z in enumerate(units):
        gx, gy = z.gradX, z.gradY
        out[0, k] = gx.gradX(xa, ya)
        out[1, k] = gx.gradY(xa, ya)
        out[2, k] = gy.gradY(xa, ya)
    return out


def laplacian_basis(
    noll: Iterable[int], x: ArrayLike, y: ArrayLike, *, obscuration: float, radius: float = 1.0
) -> NDArray[np.float64]:
    """Laplacians of the annular Zernike polynomials, shape ``(len(noll), *x.shape)``.

    Parameters
    ----------
    noll : iterable of `int`
        Noll indices.
    x, y : array-like of float
        Coordinates, any (matching) shape, in the unit of ``radius``.
    obscuration : `float`
        Inner radius of the annulus as a fraction of ``radius``.
    radius : `float`, optional
        Outer radius of the annulus.
    """
    hess = hessian_basis(noll, x, y, obscuration=obscuration, radius=radius)
    return hess[0] + hess[2]


def evaluate(
    coefs: ArrayLike,
    noll: Iterable[int],
    x: ArrayLike,
    y: ArrayLike,
    *,
    obscuration: float,
    radius: float = 1.0,
) -> NDArray[np.float64]:
    """Evaluate the series ``sum_k coefs[k] * Z_{noll[k]}(x, y)``.

    Parameters
    ----------
    coefs : array-like of float, shape ``(len(noll),)``
        Coefficients, any unit (the result has the same unit).
    noll : iterable of `int`
        Noll index of each coefficient.
    x, y, obscuration, radius
        As in `basis`.

    Returns
    -------
    values : `numpy.ndarray`, shape of ``x``
    """
    idx = check_noll(noll)
    c = np.asarray(coefs, dtype=float).reshape(-1)
    if c.shape != (len(idx),):
        raise InputError(f"coefs has {c.size} values for {len(idx)} Noll indices", value=c.size)
    dense = np.zeros(max(idx) + 1)
    dense[list(idx)] = c
    obscuration, radius = _check_geometry(obscuration, radius)
    xa, ya = _xy(x, y)
    return galsim.zernike.Zernike(dense, R_outer=radius, R_inner=obscuration * radius)(xa, ya)


def fit(
    values: ArrayLike,
    x: ArrayLike,
    y: ArrayLike,
    *,
    noll: Iterable[int],
    obscuration: float,
    radius: float = 1.0,
    weights: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Least-squares fit of annular Zernike coefficients to sampled values.

    Parameters
    ----------
    values : array-like of float
        Samples, same shape as ``x``; non-finite samples are ignored.
    x, y : array-like of float
        Sample coordinates, in the unit of ``radius``.
    noll : iterable of `int`
        Noll indices to fit.
    obscuration, radius : `float`
        Annulus of the polynomials.
    weights : array-like of float, optional
        Non-negative weight of each sample (default: all 1).

    Returns
    -------
    coefs : `numpy.ndarray`, shape ``(len(noll),)``
        Coefficients in the unit of ``values``, in the order of ``noll``.

    Raises
    ------
    InputError
        If there are fewer usable samples than coefficients.
    """
    idx = check_noll(noll)
    xa, ya = _xy(x, y)
    v = np.asarray(values, dtype=float)
    if v.shape != xa.shape:
        raise InputError(f"values has shape {v.shape}, expected {xa.shape} like x")
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != v.shape or np.any(w < 0):
        raise InputError("weights must be non-negative and shaped like values")
    good = np.isfinite(v) & np.isfinite(xa) & np.isfinite(ya) & (w > 0)
    if np.count_nonzero(good) < len(idx):
        raise InputError(
            f"cannot fit {len(idx)} Zernike terms to {np.count_nonzero(good)} usable samples",
            value=int(np.count_nonzero(good)),
        )
    a = basis(idx, xa[good], ya[good], obscuration=obscuration, radius=radius)
    sw = np.sqrt(w[good])
    coefs, *_ = np.linalg.lstsq((a * sw).T, v[good] * sw, rcond=None)
    return coefs


@dataclasses.dataclass(frozen=True)
class ZernikeBases:
    """Values and derivatives of a set of annular Zernike polynomials at fixed points.

    Attributes
    ----------
    noll : `tuple` of `int`
        Noll index of each row.
    x, y : `numpy.ndarray`, shape ``(npoint,)``
        The points, in units of the outer radius.
    value : `numpy.ndarray`, shape ``(len(noll), npoint)``
    dx, dy : `numpy.ndarray`, shape ``(len(noll), npoint)``
        First derivatives.
    dxx, dxy, dyy : `numpy.ndarray`, shape ``(len(noll), npoint)``
        Second derivatives.
    """

    noll: tuple[int, ...]
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    value: NDArray[np.float64]
    dx: NDArray[np.float64]
    dy: NDArray[np.float64]
    dxx: NDArray[np.float64]
    dxy: NDArray[np.float64]
    dyy: NDArray[np.float64]

    def rows(self, noll: Iterable[int]) -> NDArray[np.intp]:
        """Row numbers of the given Noll indices (raises `InputError` for one that is absent).

        Parameters
        ----------
        noll : iterable of `int`
            Noll indices.
        """
        pos = {j: k for k, j in enumerate(self.noll)}
        wanted = check_noll(noll)
        missing = [j for j in wanted if j not in pos]
        if missing:
            raise InputError(f"Noll indices {missing} are not in this basis {self.noll}", value=missing)
        return np.array([pos[j] for j in wanted], dtype=np.intp)


def bases_at(
    noll: Iterable[int], x: ArrayLike, y: ArrayLike, *, obscuration: float, radius: float = 1.0
) -> ZernikeBases:
    """Values, gradients and second derivatives at the given points (1-D), as read-only arrays.

    Parameters
    ----------
    noll : iterable of `int`
        Noll indices.
    x, y : array-like of float
        Coordinates, flattened to 1-D, in the unit of ``radius``.
    obscuration : `float`
        Inner radius of the annulus as a fraction of ``radius``.
    radius : `float`, optional
        Outer radius of the annulus.
    """
    idx = check_noll(noll)
    xa, ya = _xy(x, y)
    xa, ya = xa.reshape(-1), ya.reshape(-1)
    val = basis(idx, xa, ya, obscuration=obscuration, radius=radius)
    grad = gradient_basis(idx, xa, ya, obscuration=obscuration, radius=radius)
    hess = hessian_basis(idx, xa, ya, obscuration=obscuration, radius=radius)
    arrays = [xa.copy(), ya.copy(), val, grad[0].copy(), grad[1].copy(), hess[0], hess[1], hess[2]]
    for arr in arrays:
        arr.setflags(write=False)
    return ZernikeBases(idx, *arrays)


@functools.lru_cache(maxsize=32)
def grid_bases(
    noll: tuple[int, ...],
    n_side: int,
    spacing: float,
    r_min: float,
    r_max: float,
    obscuration: float,
) -> tuple[NDArray[np.bool_], ZernikeBases]:
    """Bases on the points of a square pupil grid that fall in an annular domain (memoised).

    The grid has ``n_side`` points per side at ``(k - (n_side - 1) / 2) * spacing``, symmetric about 0,
    in units of the outer pupil radius; row index = y, column index = x.

    Parameters
    ----------
    noll : `tuple` of `int`
        Noll indices (a tuple, so that the call can be cached).
    n_side : `int`
        Grid points per side.
    spacing : `float`
        Grid step, in units of the outer radius.
    r_min, r_max : `float`
        The domain: grid points with ``r_min <= r <= r_max``.
    obscuration : `float`
        Obscuration of the polynomials.

    Returns
    -------
    domain : `numpy.ndarray` of bool, shape ``(n_side, n_side)``
        Which grid points are in the domain (read-only).
    bases : `ZernikeBases`
        Bases at the domain points, in row-major order of the grid (read-only arrays).
    """
    if n_side < 4 or spacing <= 0 or r_max <= r_min:
        raise InputError(f"bad pupil grid: n_side={n_side}, spacing={spacing}, r in [{r_min}, {r_max}]")
    axis = (np.arange(n_side) - (n_side - 1) / 2.0) * spacing
    gx, gy = np.meshgrid(axis, axis)
    r = np.hypot(gx, gy)
    domain = (r >= r_min) & (r <= r_max)
    domain.setflags(write=False)
    return domain, bases_at(noll, gx[domain], gy[domain], obscuration=obscuration)
