"""Combine the wavefronts of several donut pairs into one, rejecting outlying pairs.

A pair is rejected as a whole (a bad fit corrupts every coefficient): its distance from the others is its
largest deviation from the median, over the coefficients, in units of that coefficient's robust scatter
(1.4826 x MAD, floored by the typical formal error and by ``floor_um``: donuts at different field positions
see genuinely different wavefronts, by a few nm, and near-identical pairs must not be clipped on noise).
Pairs beyond ``threshold`` are dropped and the median and scatter recomputed, until nothing changes. With
fewer than three pairs nothing can be called an outlier and all are kept.

The combined value is the plain mean of the kept pairs (robust to mis-estimated per-pair errors); its
uncertainty is the larger of the scatter of the kept pairs over sqrt(n) and the mean formal error over
sqrt(n).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError

__all__ = ["Combination", "sigma_clip_combine"]

_MAD_TO_SIGMA = 1.4826
_MIN_FOR_CLIPPING = 3


@dataclasses.dataclass(frozen=True)
class Combination:
    """Result of `sigma_clip_combine`.

    Attributes
    ----------
    mean_um, err_um, scatter_um : `numpy.ndarray`, shape (nz,)
        Mean of the kept pairs, its uncertainty, and the standard deviation of the kept pairs, micrometres.
    kept : `numpy.ndarray` of bool, shape (n,)
        Which pairs entered the mean.
    distance : `numpy.ndarray`, shape (n,)
        Each pair's largest normalised deviation from the median in the last pass (0 with < 3 pairs).
    """

    mean_um: NDArray[np.float64]
    err_um: NDArray[np.float64]
    scatter_um: NDArray[np.float64]
    kept: NDArray[np.bool_]
    distance: NDArray[np.float64]


def sigma_clip_combine(
    values_um: ArrayLike,
    errors_um: ArrayLike | None = None,
    *,
    threshold: float = 3.0,
    floor_um: float = 0.005,
    max_iter: int = 5,
) -> Combination:
    """Sigma-clipped mean of per-pair wavefronts.

    Parameters
    ----------
    values_um : array-like, shape (n, nz)
        One row per pair, micrometres.
    errors_um : array-like, shape (n, nz), optional
        Formal 1-sigma errors, micrometres (floor of the scatter, and the error of a mean of few pairs).
    threshold : `float`
        Clipping distance in robust standard deviations.
    floor_um : `float`
        Smallest scatter assumed, micrometres (differences across the field are real).
    max_iter : `int`
        Largest number of clipping passes.

    Returns
    -------
    combination : `Combination`

    Raises
    ------
    InputError
        If ``values_um`` is empty, not 2-D, not finite, or the errors do not match it.
    """
    values = np.asarray(values_um, dtype=float)
    if values.ndim != 2 or values.shape[0] == 0 or not np.all(np.isfinite(values)):
        raise InputError(
            f"values_um must be a finite (n_pairs, n_terms) array with n_pairs >= 1, got shape "
            f"{values.shape}",
            value=values.shape,
        )
    if errors_um is None:
        errors = np.zeros_like(values)
    else:
        errors = np.asarray(errors_um, dtype=float)
        if errors.shape != values.shape:
            raise InputError(
                f"errors_um has shape {errors.shape}, expected {values.shape}", value=errors.shape
            )
        errors = np.where(np.isfinite(errors), errors, 0.0)
    if not threshold > 0:
        raise InputError(f"threshold must be positive, got {threshold}", value=threshold)
    n = values.shape[0]
    kept = np.ones(n, dtype=bool)
    distance = np.zeros(n)
    if n >= _MIN_FOR_CLIPPING:
        for _ in range(max_iter):
            median = np.median(values[kept], axis=0)
            mad = _MAD_TO_SIGMA * np.median(np.abs(values[kept] - median), axis=0)
            floor = np.median(errors[kept], axis=0)
            scale = np.maximum(np.maximum(mad, floor), max(floor_um, 1e-6))
            distance = np.max(np.abs(values - median) / scale, axis=1)
            new = distance <= threshold
            if new.sum() < _MIN_FOR_CLIPPING - 1 or np.array_equal(new, kept):
                break
            kept = new
    sel = values[kept]
    mean = sel.mean(axis=0)
    nk = sel.shape[0]
    scatter = sel.std(axis=0, ddof=1) if nk > 1 else np.zeros(values.shape[1])
    formal = np.sqrt(np.mean(errors[kept] ** 2, axis=0))
    err = np.maximum(scatter, formal) / np.sqrt(nk)
    return Combination(mean_um=mean, err_um=err, scatter_um=scatter, kept=kept, distance=distance)
