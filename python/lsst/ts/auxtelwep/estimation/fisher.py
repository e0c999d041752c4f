"""Cramér-Rao bound of the forward-model fit: the smallest Zernike errors any unbiased estimator can reach.

The Fisher matrix of the pixel likelihood is ``F = J^T W J``, with ``J`` the forward model's analytic Jacobian
(`forward_model.DonutSetModel`) and ``W`` the inverse pixel variance of the fit's own noise model (stamp
background variance plus the model's Poisson term, masked pixels at zero weight), both evaluated at a given
set of parameters (a fit's solution, optionally with the truth's Zernikes). It depends on the data only
through the stamps' variances, masks and gain, not on the noise realisation.

The bound on the covariance of the free parameters is ``F^-1`` restricted to them: parameters held fixed are
assumed known exactly, which is what fitting fewer terms or fixing a nuisance parameter does. A Gaussian prior
(standard deviation per Noll index) adds its precision to the diagonal, giving the posterior covariance of a
MAP estimate.

Used by ``benchmarks/bench_accuracy.py`` to tell noise from estimator error (doc/estimation.md, "Accuracy at
low SNR").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ..instrument import AuxTel
from ..stamps import DonutPair
from .forward import ForwardFitResult, ForwardOptions, _Objective, _stage_data, pair_specs

__all__ = ["NUISANCE_GROUPS", "CramerRaoBound", "cramer_rao_bound", "fisher_matrix", "fit_parameters"]

NUISANCE_GROUPS = ("flux", "offset", "background", "fwhm")
"""Names of the nuisance parameter groups `cramer_rao_bound` can hold fixed."""


@dataclasses.dataclass(frozen=True)
class CramerRaoBound:
    """The Cramér-Rao bound on the Zernike coefficients of one pair.

    Attributes
    ----------
    noll : `tuple` of `int`
        Noll indices of the model (``ForwardOptions.noll``).
    covariance_um2 : `numpy.ndarray`, shape (len(noll), len(noll))
        Bound on the covariance of the Zernike coefficients, um^2 (rows and columns of fixed terms are zero).
    free_noll : `tuple` of `int`
        Noll indices that were free.
    fixed_nuisance : `tuple` of `str`
        Nuisance groups held fixed (`NUISANCE_GROUPS`).
    """

    noll: tuple[int, ...]
    covariance_um2: NDArray[np.float64]
    free_noll: tuple[int, ...]
    fixed_nuisance: tuple[str, ...]

    @property
    def sigma_um(self) -> NDArray[np.float64]:
        """1-sigma bound per coefficient, um (0 for fixed terms)."""
        return np.sqrt(np.clip(np.diag(self.covariance_um2), 0.0, None))

    def rms_nm(self, noll: Sequence[int] = tuple(range(4, 12))) -> float:
        """Expected RMS error over ``noll`` (default Z4-Z11) of an efficient estimator, nm.

        The RMS over terms of the error vector has ``E[rms^2] = mean(variance)``; this is its square root.
        Fixed terms count as known (zero error).

        Parameters
        ----------
        noll : sequence of `int`, optional
            Noll indices to average over; each must be in ``noll`` of the bound.
        """
        idx = [self.noll.index(j) for j in noll]
        return float(np.sqrt(np.mean(np.diag(self.covariance_um2)[idx])) * 1e3)


def fit_parameters(result: ForwardFitResult, *, zernikes_um: NDArray | None = None) -> NDArray[np.float64]:
    """The parameter vector of `forward_model.DonutSetModel` at a fit's solution.

    Parameters
    ----------
    result : `ForwardFitResult`
        A fit (its fluxes, offsets, backgrounds, FWHM and Zernikes).
    zernikes_um : `numpy.ndarray`, shape (len(result.noll),), optional
        Zernikes to use instead of the fitted ones (e.g. the truth), um.
    """
    dz = result.zernikes_um if zernikes_um is None else np.asarray(zernikes_um, dtype=float)
    if dz.shape != result.zernikes_um.shape:
        raise InputError(f"zernikes_um has shape {dz.shape}, expected {result.zernikes_um.shape}", value=dz)
    return np.concatenate(
        [
            result.fluxes,
            result.offsets_px[:, 0],
            result.offsets_px[:, 1],
            result.backgrounds,
            result.fwhm_arcsec,
            dz,
        ]
    ).astype(float)


def fisher_matrix(
    pair: DonutPair, params: NDArray, *, telescope: AuxTel, options: ForwardOptions | None = None
) -> NDArray[np.float64]:
    """Fisher matrix of the full-resolution forward model of ``pair`` at ``params``.

    Parameters
    ----------
    pair : `DonutPair`
        The stamps (only their variances, masks, field angles and gain are used).
    params : `numpy.ndarray`
        Parameter vector of `forward_model.DonutSetModel` (see `fit_parameters`).
    telescope : `AuxTel`
        Geometry and wavelength, as for the fit.
    options : `ForwardOptions`, optional
        The fit's options (terms, blur per donut, noise model, diffraction).

    Returns
    -------
    fisher : `numpy.ndarray`, shape (len(params), len(params))
        ``J^T W J`` in the units of ``params``.
    """
    options = options or ForwardOptions()
    specs = pair_specs(pair, telescope, max(22, max(options.noll)))
    data = _stage_data(pair, specs, noll=options.noll, binning=1, telescope=telescope, options=options)
    params = np.asarray(params, dtype=float)
    if params.shape != (data.model.nparams,):
        raise InputError(
            f"params has shape {params.shape}, expected ({data.model.nparams},) for these options",
            value=params,
        )
    _, jac_t = _Objective(data).chi_and_jac(params)
    # float32 Jacobian, float64 products: the Zernike and flux columns differ by ~1e6 in scale.
    jac_t = jac_t.astype(np.float64)
    return jac_t @ jac_t.T


def cramer_rao_bound(
    pair: DonutPair,
    params: NDArray,
    *,
    telescope: AuxTel,
    options: ForwardOptions | None = None,
    free_noll: Collection[int] | None = None,
    fixed_nuisance: Collection[str] = (),
    prior_sigma_um: Mapping[int, float] | None = None,
    fisher: NDArray | None = None,
) -> CramerRaoBound:
    """Cramér-Rao bound on the Zernikes of ``pair`` for a choice of free parameters.

    Parameters
    ----------
    pair, params, telescope, options
        As for `fisher_matrix`.
    free_noll : collection of `int`, optional
        Noll indices fitted (default: all of ``options.noll``); the others are held at their value in
        ``params``.
    fixed_nuisance : collection of `str`
        Nuisance groups held fixed (`NUISANCE_GROUPS`).
    prior_sigma_um : mapping of `int` to `float`, optional
        Standard deviation of a Gaussian prior per Noll index, um (the bound is then the posterior
        covariance of a MAP estimate).
    fisher : `numpy.ndarray`, optional
        A Fisher matrix from `fisher_matrix` for the same pair, parameters and options (saves the model
        evaluation when several bounds are wanted).

    Returns
    -------
    bound : `CramerRaoBound`

    Raises
    ------
    InputError
        If a Noll index or nuisance group is unknown, or a prior sigma is not positive.
    """
    options = options or ForwardOptions()
    noll = tuple(options.noll)
    free = tuple(noll) if free_noll is None else tuple(sorted(free_noll))
    unknown = sorted(set(free) - set(noll)) + sorted(set(prior_sigma_um or {}) - set(noll))
    if unknown:
        raise InputError(f"Noll indices {unknown} are not among the model's {noll}", value=unknown)
    bad = sorted(set(fixed_nuisance) - set(NUISANCE_GROUPS))
    if bad:
        raise InputError(f"unknown nuisance groups {bad}; known: {NUISANCE_GROUPS}", value=bad)
    if fisher is None:
        fisher = fisher_matrix(pair, params, telescope=telescope, options=options)
    fisher = np.array(fisher, dtype=float)
    nd = 2
    nblur = len(params) - 4 * nd - len(noll)
    dz0 = 4 * nd + nblur
    groups = {
        "flux": range(0, nd),
        "offset": range(nd, 3 * nd),
        "background": range(3 * nd, 4 * nd),
        "fwhm": range(4 * nd, dz0),
    }
    keep = [i for g, idx in groups.items() if g not in fixed_nuisance for i in idx]
    keep += [dz0 + noll.index(j) for j in free]
    for j, sigma in (prior_sigma_um or {}).items():
        if not sigma > 0:
            raise InputError(f"prior sigma for Z{j} must be > 0, got {sigma}", value=sigma)
        fisher[dz0 + noll.index(j), dz0 + noll.index(j)] += 1.0 / sigma**2
    sub = fisher[np.ix_(keep, keep)]
    # Scale to unit diagonal before inverting: fluxes (~1e5) and Zernikes (~1e-2 um) differ by 1e7.
    scale = 1.0 / np.sqrt(np.maximum(np.diag(sub), 1e-300))
    cov_sub = np.linalg.pinv(sub * scale[:, None] * scale[None, :]) * scale[:, None] * scale[None, :]
    cov = np.zeros((len(noll), len(noll)))
    pos = [keep.index(dz0 + noll.index(j)) for j in free]
    idx = [noll.index(j) for j in free]
    cov[np.ix_(idx, idx)] = cov_sub[np.ix_(pos, pos)]
    return CramerRaoBound(
        noll=noll, covariance_um2=cov, free_noll=free, fixed_nuisance=tuple(sorted(fixed_nuisance))
    )
