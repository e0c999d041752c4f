"""Combine the wavefronts of several donut pairs into one, rejecting outlying pairs.

Model: each pair measures the common wavefront plus its own noise (its formal error) plus a field term of a
few nm (donuts at different field positions see genuinely different wavefronts; ``floor_um``). So each pair
and term has the variance ``error**2 + floor**2`` (pairs without a formal error, such as the TIE's, take the
pairs' robust scatter, 1.4826 x MAD, as their error).

- **Weights**: the inverse variances, so a bright pair counts for what it is worth next to faint ones (a
  plain mean of one 1.5 nm pair and three 12 nm pairs is worse than the bright pair alone), while no pair,
  however bright, outweighs the field term.
- **Outliers**: a pair is rejected as a whole (a bad fit corrupts every coefficient). Its distance is the
  chi-square over the terms of its difference from the weighted mean of the other kept pairs (variance: its
  own plus that of the mean), as equivalent Gaussian sigmas. The worst pair beyond ``threshold`` is dropped
  and the distances recomputed, until none is beyond. Judging a pair by its largest term instead rejects
  ~5 % of good pairs at "3 sigma" over 19 terms, and measuring from the unweighted median rejects bright
  pairs among faint ones. With fewer than three pairs nothing can be called an outlier and all are kept.
- **Uncertainty**: the formal error of the weighted mean, or the weighted scatter of the kept pairs about it
  when that is larger (Birge ratio > 1).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ..significance import gaussian_sigmas

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
        Each pair's distance from the median in the last pass, equivalent Gaussian sigmas (0 with < 3
        pairs).
    weights : `numpy.ndarray`, shape (n, nz)
        Each pair's weight in ``mean_um``, per term (columns sum to 1; 0 for pairs not kept). Donuts at
        different field positions see different wavefronts: the mean is theirs with these weights.
    """

    mean_um: NDArray[np.float64]
    err_um: NDArray[np.float64]
    scatter_um: NDArray[np.float64]
    kept: NDArray[np.bool_]
    distance: NDArray[np.float64]
    weights: NDArray[np.float64]


def sigma_clip_combine(
    values_um: ArrayLike,
    errors_um: ArrayLike | None = None,
    *,
    threshold: float = 3.0,
    floor_um: float = 0.005,
) -> Combination:
    """Weighted, sigma-clipped mean of per-pair wavefronts (see the module docstring).

    Parameters
    ----------
    values_um : array-like, shape (n, nz)
        One row per pair, micrometres.
    errors_um : array-like, shape (n, nz), optional
        Formal 1-sigma errors, micrometres (missing or non-finite: the pairs weigh the same).
    threshold : `float`
        Clipping distance, equivalent Gaussian sigmas.
    floor_um : `float`
        Field term: scatter between pairs expected whatever their errors, micrometres.

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
    n, nz = values.shape
    floor = max(floor_um, 1e-6)
    if n >= _MIN_FOR_CLIPPING and np.any(errors <= 0):
        # Pairs without a formal error (the TIE alone): their noise is what the pairs' scatter says.
        mad = _MAD_TO_SIGMA * np.median(np.abs(values - np.median(values, axis=0)), axis=0)
        errors = np.where(errors > 0, errors, mad)
    variance = errors**2 + floor**2
    kept = np.ones(n, dtype=bool)
    distance = _distances(values, variance, kept)
    while n >= _MIN_FOR_CLIPPING and kept.sum() > _MIN_FOR_CLIPPING - 1:
        worst = int(np.argmax(np.where(kept, distance, -np.inf)))
        if distance[worst] <= threshold:
            break
        kept[worst] = False
        distance = _distances(values, variance, kept)
    if n < _MIN_FOR_CLIPPING:
        distance = np.zeros(n)
    sel, w = values[kept], 1.0 / variance[kept]
    nk = sel.shape[0]
    weights = np.zeros_like(values)
    weights[kept] = w / np.sum(w, axis=0)
    mean = np.sum(w * sel, axis=0) / np.sum(w, axis=0)
    formal = np.sqrt(np.sum(w**2 * errors[kept] ** 2, axis=0)) / np.sum(w, axis=0)
    spread = (
        np.sqrt(np.sum(w * (sel - mean) ** 2, axis=0) / ((nk - 1) * np.sum(w, axis=0)))
        if nk > 1
        else np.zeros(nz)
    )
    scatter = sel.std(axis=0, ddof=1) if nk > 1 else np.zeros(nz)
    # One pair without a formal error (the TIE alone) has no error at all: NaN, not a perfect 0.
    known = np.all(errors[kept] > 0, axis=0) | (nk > 1)
    return Combination(
        mean_um=mean,
        err_um=np.where(known, np.maximum(formal, spread), np.nan),
        scatter_um=scatter,
        kept=kept,
        distance=distance,
        weights=weights,
    )


def _distances(values: NDArray, variance: NDArray, kept: NDArray) -> NDArray:
    """Each pair's distance from the weighted mean of the other kept pairs, equivalent Gaussian sigmas."""
    w = np.where(kept[:, None], 1.0 / variance, 0.0)
    total_w, total_wv = w.sum(axis=0), (w * values).sum(axis=0)
    others_w = total_w - w  # leave the pair itself out (w is 0 for pairs already dropped)
    others_mean = (total_wv - w * values) / np.where(others_w > 0, others_w, np.inf)
    chi2 = np.sum(
        (values - others_mean) ** 2 / (variance + 1.0 / np.where(others_w > 0, others_w, np.inf)), axis=1
    )
    return gaussian_sigmas(chi2, values.shape[1])
