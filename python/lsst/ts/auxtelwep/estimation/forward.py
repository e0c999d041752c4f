"""Joint forward-model fit of an intra/extra donut pair (danish optics), fast enough for the closed loop.

The model (`forward_model.DonutSetModel`) gives its Jacobian analytically, so a Gauss-Newton step costs about
one model evaluation instead of one per parameter. The fit runs in stages:

1. *Start*: the seed (a TIE solution, or zero), and when no seed is given the best of a small grid in Z4
   evaluated on binned stamps (large focus errors otherwise stall in a local minimum).
2. *Coarse*: all terms on stamps binned ``coarse_binning`` x ``coarse_binning`` (4x fewer pixels), loose
   tolerance.
3. *Polish*: all terms on stamps binned ``polish_binning`` x ``polish_binning`` (default 2) from the coarse
   solution, with the requested tolerances. With 1" of seeing spread over ~10 px, 2 x 2 binning loses no
   measurable accuracy (bright, faint and large-aberration pairs within 0.1 nm of full resolution) and
   saves 40 % of the fit. The reduced chi-square, the model images and the residuals of the result are
   those of full resolution.

Fitted: one wavefront deviation ``dz`` from the design shared by both donuts (it is the in-focus deviation,
the mean of what the intra and extra donuts see), one Kolmogorov FWHM, and per donut a flux, an offset and a
constant background. The noise model is ``variance + max(model, 0) / gain`` (background variance of the
stamp plus the source's Poisson term); masked pixels have zero weight.

The optimiser is `scipy.optimize.least_squares` (trust region, ``x_scale="jac"``); its verdict (status,
message, evaluations) is kept for every stage. A fit that fails raises `EstimationError` with the partial
`ForwardFitResult` attached.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import EstimationError, InputError
from ..instrument import DEFAULT_NOLL, AuxTel, Role
from ..reprs import summary_repr
from ..stamps import DonutPair
from .forward_model import DonutSetModel, DonutSpec, ModelEvaluation, bin_stamp, design_references
from .lm import LMResult, levenberg_marquardt

__all__ = ["FitStage", "ForwardFitResult", "ForwardOptions", "fit_pair"]

_log = logging.getLogger(__name__)

_FWHM_BOUNDS_ARCSEC = (0.1, 8.0)
_DONUT_LEVEL = (
    0.1  # the donut, for `ForwardFitResult.structure_fraction`: model above this fraction of its peak
)


@dataclasses.dataclass(frozen=True)
class ForwardOptions:
    """Options of `fit_pair`.

    Attributes
    ----------
    noll : `tuple` of `int`
        Noll indices of the fitted deviation.
    polish_binning : `int`
        Binning of the final stage (1: full resolution).
    coarse_binning : `int`
        Binning of the coarse stage (1: no coarse stage).
    coarse_step_tol : `float`
        Step tolerance of the coarse stage, standard deviations (see `lm`).
    step_tol : `float`
        Step tolerance of the final stage, standard deviations.
    coarse_zernike_tol_um, zernike_tol_um : `float`
        A stage also stops when its last step moved no Zernike by more than this (and stayed within ten
        step tolerances): bright donuts have errors of tenths of a nm, and their statistical tolerance
        would ask for hundredths, far below the model's systematic floor (~0.3 nm, doc/estimation.md).
    chi2_tol : `float`
        Chi-square gain below which a stage stops, in reduced units.
    max_nfev : `int`
        Evaluations allowed per stage.
    z4_grid_um : `tuple` of `float`
        Z4 offsets tried on the binned stamps when no start is given (empty: start from zero).
    fwhm_start_arcsec : `float`
        Starting seeing FWHM, arcsec.
    blur_per_donut : `bool`
        Fit one seeing FWHM per exposure (default: the two exposures are a minute apart; on the real
        LATISS pair they differ, 1.4" and 2.0") instead of one for the pair.
    model_error_fraction : `float`
        Fractional model error added to the noise: variance ``+ (fraction * model)**2``. Zero (pure
        photon and background noise) for simulations; real donuts carry speckle from the turbulence of
        each exposure that no smooth model reproduces (see doc/estimation.md).
    diffraction_band_m : `tuple` of `float`
        Wavelengths (metres) of a diffraction model of the donut (see `DonutSetModel`), empty for the
        geometric model. On the real LATISS pair diffraction over 620-720 nm lowers the reduced chi-square
        from 347 to 261 (doc/estimation.md); ray-traced simulations have no diffraction and need none.
    min_valid_fraction : `float`
        Smallest fraction of a donut's flux the optical model must map at the solution (below it, the
        solution lies in a caustic and the fit is refused).
    """

    noll: tuple[int, ...] = DEFAULT_NOLL
    polish_binning: int = 2
    coarse_binning: int = 4
    coarse_step_tol: float = 1.0
    step_tol: float = 0.1
    coarse_zernike_tol_um: float = 0.002
    zernike_tol_um: float = 0.0001
    chi2_tol: float = 0.1
    max_nfev: int = 40
    z4_grid_um: tuple[float, ...] = (-0.45, -0.3, -0.15, 0.0, 0.15, 0.3, 0.45)
    fwhm_start_arcsec: float = 1.0
    blur_per_donut: bool = True
    model_error_fraction: float = 0.0
    diffraction_band_m: tuple[float, ...] = ()
    min_valid_fraction: float = 0.9

    def __post_init__(self) -> None:
        if not 1 <= self.coarse_binning <= 8:
            raise InputError(f"coarse_binning={self.coarse_binning} outside 1..8", value=self.coarse_binning)
        if not 1 <= self.polish_binning <= 4:
            raise InputError(f"polish_binning={self.polish_binning} outside 1..4", value=self.polish_binning)
        if not self.noll or min(self.noll) < 4 or max(self.noll) > 28:
            raise InputError(f"noll must lie in 4..28, got {self.noll}", value=self.noll, allowed=(4, 28))
        if any(not 300e-9 < w < 1100e-9 for w in self.diffraction_band_m):
            raise InputError(
                f"diffraction_band_m must hold wavelengths in metres within 300-1100 nm, got "
                f"{self.diffraction_band_m}",
                value=self.diffraction_band_m,
            )


@dataclasses.dataclass(frozen=True)
class FitStage:
    """The optimiser's report for one stage.

    Attributes
    ----------
    name : `str`
        ``"grid"``, ``"coarse"`` or ``"polish"``.
    binning : `int`
        Stamp pixels per model pixel.
    nfev, njev : `int`
        Model and Jacobian evaluations.
    status : `int`
        `scipy.optimize.least_squares` status (0: evaluation budget exhausted; < 0: error).
    message : `str`
        The optimiser's message.
    chi2_reduced : `float`
        Chi-square per degree of freedom at the end of the stage.
    elapsed_s : `float`
        Wall time, seconds.
    """

    name: str
    binning: int
    nfev: int
    njev: int
    status: int
    message: str
    chi2_reduced: float
    elapsed_s: float


@dataclasses.dataclass(frozen=True)
class ForwardFitResult:
    """Result of a forward-model fit of one donut pair.

    Attributes
    ----------
    noll : `tuple` of `int`
        Noll indices of ``zernikes_um``.
    zernikes_um, zernikes_err_um : `numpy.ndarray`, shape (len(noll),)
        In-focus wavefront deviation from the design and its 1-sigma uncertainty (from the Jacobian at the
        solution, scaled by the reduced chi-square), micrometres.
    fwhm_arcsec : `numpy.ndarray`, shape (1,) or (2,)
        Fitted Kolmogorov FWHM (one for the pair, or intra and extra), arcsec.
    fluxes, backgrounds : `numpy.ndarray`, shape (2,)
        Intra, extra flux (stamp units) and residual background (stamp units per pixel).
    offsets_px : `numpy.ndarray`, shape (2, 2)
        ``[[dx, dy] intra, [dx, dy] extra]``: donut centre relative to the stamp centre, pixels.
    chi2_reduced : `float`
        Chi-square per degree of freedom of the final stage, both stamps.
    chi2_reduced_per_stamp : `tuple` of `float`
        The same per stamp (intra, extra).
    structure_fraction : `tuple` of `float`
        Per stamp (intra, extra): the RMS of the residual beyond the photon and background noise, relative
        to the model, over the donut (model above 10 % of its peak). Unlike the chi-square it does not grow
        with the flux: it measures structure the model does not hold (turbulence speckle, wavefront
        structure beyond the fitted terms). A lower bound: what noise alone could leave is subtracted, so
        0 means none detected (always, for faint donuts). 0 on ray-traced simulations, 0.21 on the real
        LATISS pair, whose estimates then carry 10-30 nm of systematic error (doc/estimation.md, "Real
        data").
    success : `bool`
        True when the final stage converged and the solution is usable.
    status : `int`
        Final stage's optimiser status.
    message : `str`
        Final stage's optimiser message, or why the fit was refused.
    nfev, njev : `int`
        Model and Jacobian evaluations over all stages.
    stages : `tuple` of `FitStage`
        Per-stage reports.
    elapsed_s : `float`
        Wall time of the whole fit, seconds.
    residuals : `numpy.ndarray` or `None`, shape (2, n, n)
        Normalised residuals ``(data - model) / sigma`` of the final stage (0 on masked pixels), when asked.
    models : `numpy.ndarray` or `None`, shape (2, n, n)
        Model images of the final stage, when asked.
    """

    noll: tuple[int, ...]
    zernikes_um: NDArray[np.float64]
    zernikes_err_um: NDArray[np.float64]
    fwhm_arcsec: NDArray[np.float64]
    fluxes: NDArray[np.float64]
    backgrounds: NDArray[np.float64]
    offsets_px: NDArray[np.float64]
    chi2_reduced: float
    chi2_reduced_per_stamp: tuple[float, ...]
    structure_fraction: tuple[float, ...]
    success: bool
    status: int
    message: str
    nfev: int
    njev: int
    stages: tuple[FitStage, ...]
    elapsed_s: float
    residuals: NDArray[np.float64] | None = None
    models: NDArray[np.float64] | None = None

    def __repr__(self) -> str:
        """A one-line summary: arrays as their shape and dtype (`reprs.summary_repr`)."""
        return summary_repr(self)


@dataclasses.dataclass
class _StageData:
    """Stamps of one stage (binned or not) and the model that goes with them."""

    model: DonutSetModel
    images: NDArray[np.float64]  # (nd, n, n)
    variances: NDArray[np.float64]  # background-only
    good: NDArray[np.bool_]
    gain: float
    ndata: int
    model_error_fraction: float = 0.0


def _stage_data(
    pair: DonutPair,
    specs: Sequence[DonutSpec],
    *,
    noll: Sequence[int],
    binning: int,
    telescope: AuxTel,
    options: ForwardOptions,
) -> _StageData:
    images, variances, goods = [], [], []
    offset = 0.0
    for stamp in (pair.intra, pair.extra):
        bad = stamp.mask | ~np.isfinite(stamp.image) | ~np.isfinite(stamp.variance)
        image = np.where(bad, 0.0, stamp.image.astype(np.float64))
        variance = np.where(bad, 1.0, stamp.variance.astype(np.float64))
        image_b, offset = bin_stamp(image, binning)
        variance_b, _ = bin_stamp(variance, binning)
        bad_b, _ = bin_stamp(bad, binning, reduce="any")
        images.append(image_b)
        variances.append(variance_b)
        goods.append(~bad_b)
    model = DonutSetModel(
        specs,
        noll=noll,
        npix=images[0].shape[0],
        binning=binning,
        origin_offset_px=offset,
        telescope=telescope,
        blur_per_donut=options.blur_per_donut,
        diffraction_band_m=options.diffraction_band_m,
    )
    good = np.array(goods)
    return _StageData(
        model=model,
        images=np.array(images),
        variances=np.array(variances),
        good=good,
        gain=pair.gain,
        ndata=int(good.sum()),
        model_error_fraction=options.model_error_fraction,
    )


class _Objective:
    """Residuals and Jacobian for the solver (weights from the current model, held fixed in the Jacobian)."""

    def __init__(self, data: _StageData) -> None:
        self.data = data

    def weights(self, sources: NDArray) -> NDArray:
        src = np.maximum(sources, 0.0)
        var = self.data.variances + src / self.data.gain
        if self.data.model_error_fraction:
            var = var + (self.data.model_error_fraction * src) ** 2
        return np.where(self.data.good, 1.0 / np.sqrt(np.maximum(var, 1e-12)), 0.0)

    def chi(self, params: NDArray) -> NDArray:
        return self.residuals(self.data.model.evaluate(params, jacobian=False))

    def residuals(self, ev: ModelEvaluation) -> NDArray:
        """Weighted residuals of a model evaluation already at hand."""
        return (self.data.images - ev.images) * self.weights(ev.sources)

    def chi_and_jac(self, params: NDArray) -> tuple[NDArray, NDArray]:
        ev = self.data.model.evaluate(params, jacobian=True)
        w = self.weights(ev.sources)
        jac = ev.jacobian
        jac *= -w.astype(np.float32)
        return (self.data.images - ev.images) * w, jac.reshape(jac.shape[0], -1)


def _start_params(data: _StageData, *, fwhm: float, dz: NDArray) -> NDArray:
    nd = data.model.nd
    flux = np.maximum([data.images[d][data.good[d]].sum() for d in range(nd)], 1.0)
    return np.concatenate([flux, np.zeros(3 * nd), np.full(data.model.nblur, fwhm), dz])


def _bounds(model: DonutSetModel) -> tuple[NDArray, NDArray]:
    lower = np.full(model.nparams, -np.inf)
    upper = np.full(model.nparams, np.inf)
    lower[: model.nd] = 0.0
    lower[model.blur_slice], upper[model.blur_slice] = _FWHM_BOUNDS_ARCSEC
    return lower, upper


def _run_stage(
    name: str,
    data: _StageData,
    p0: NDArray,
    *,
    step_tol: float,
    zernike_tol_um: float,
    chi2_tol: float,
    max_nfev: int,
    free: slice = slice(None),
) -> tuple[NDArray, FitStage, LMResult]:
    """One optimiser stage from ``p0``, on the parameters ``free`` selects (the others stay at ``p0``).

    ``free`` is a slice, so that the Jacobian's rows are taken as a view (no copy of 28 x 130 000 values).
    """
    objective = _Objective(data)
    t0 = time.perf_counter()
    lower, upper = _bounds(data.model)
    # Only the Zernikes are held to an absolute tolerance: the other parameters serve them.
    x_tol = np.full(len(p0), np.inf)
    x_tol[data.model.dz_slice] = zernike_tol_um
    n_free = len(p0[free])

    def with_held(x: NDArray) -> NDArray:
        params = p0.copy()
        params[free] = x
        return params

    def chi_and_jac(x: NDArray) -> tuple[NDArray, NDArray]:
        chi, jac = objective.chi_and_jac(with_held(x))
        return chi, jac[free]

    res = levenberg_marquardt(
        lambda x: objective.chi(with_held(x)),
        chi_and_jac,
        p0[free],
        lower=lower[free],
        upper=upper[free],
        ndof=max(data.ndata - n_free, 1),
        step_tol=step_tol,
        chi2_tol=chi2_tol,
        max_nfev=max_nfev,
        x_tol=x_tol[free],
    )
    stage = FitStage(
        name=name,
        binning=data.model.binning,
        nfev=res.nfev,
        njev=res.njev,
        status=res.status,
        message=res.message,
        chi2_reduced=float(res.chi2 / max(data.ndata - n_free, 1)),
        elapsed_s=time.perf_counter() - t0,
    )
    _log.debug("%s stage: %s", name, stage)
    return with_held(res.x), stage, res


def _grid_start(
    data: _StageData, p0: NDArray, grid: Sequence[float], noll: Sequence[int]
) -> tuple[NDArray, FitStage]:
    """Pick the Z4 offset of ``grid`` with the lowest chi-square (fluxes refitted linearly)."""
    t0 = time.perf_counter()
    nd = data.model.nd
    j4 = data.model.dz_slice.start + list(noll).index(4)
    objective = _Objective(data)
    best, best_cost = p0, np.inf
    for z4 in grid:
        p = p0.copy()
        p[j4] += z4
        ev = data.model.evaluate(p, jacobian=False)
        # Linear least squares for the flux of each donut at this shape.
        for d in range(nd):
            shape = ev.sources[d] / max(p[d], 1e-12)
            g = data.good[d]
            denom = float(np.sum(shape[g] ** 2))
            if denom > 0:
                p[d] = max(float(np.sum(shape[g] * data.images[d][g]) / denom), 1e-6)
        cost = float(np.sum(objective.chi(p) ** 2))
        if cost < best_cost:
            best, best_cost = p, cost
    stage = FitStage(
        name="grid",
        binning=data.model.binning,
        nfev=len(grid),
        njev=0,
        status=1,
        message=f"best Z4 offset {best[j4] - p0[j4]:+.2f} um of {list(grid)}",
        chi2_reduced=best_cost / max(data.ndata - len(p0), 1),
        elapsed_s=time.perf_counter() - t0,
    )
    return best, stage


def _structure_fraction(
    image: NDArray, model: NDArray, source: NDArray, background_variance: NDArray, good: NDArray, gain: float
) -> float:
    """RMS of the residual beyond the noise, relative to the model, over the donut (`ForwardFitResult`)."""
    donut = good & (source > _DONUT_LEVEL * source.max())
    if not donut.any():
        return float("nan")
    noise = background_variance[donut] + source[donut] / gain
    excess = float(np.sum((image[donut] - model[donut]) ** 2 - noise))
    # What noise alone could leave: 3 sigma of the excess, plus 5 % of the noise for a gain or background
    # variance that is slightly off. Faint donuts thus report 0 rather than a calibration error.
    allowance = 3.0 * float(np.sqrt(2.0 * np.sum(noise**2))) + 0.05 * float(np.sum(noise))
    return float(np.sqrt(max(excess - allowance, 0.0) / np.sum(source[donut] ** 2)))


def pair_specs(pair: DonutPair, telescope: AuxTel, jmax: int) -> tuple[DonutSpec, DonutSpec]:
    """Design references of the intra and extra donuts of ``pair`` (see `design_references`).

    Parameters
    ----------
    pair : `DonutPair`
        The pair; each stamp's field angle (batoid frame, degrees) is used.
    telescope : `AuxTel`
        Supplies the wavelength (the design is the aligned telescope).
    jmax : `int`
        Highest Noll index of the references (at most 28).
    """
    specs = []
    for role in (Role.INTRA, Role.EXTRA):
        fx, fy = pair.stamp(role).field_deg
        specs.append(
            DonutSpec(
                reference_um=design_references(telescope, role, fx, fy, jmax=jmax),
                field_x_deg=fx,
                field_y_deg=fy,
            )
        )
    return specs[0], specs[1]


def fit_pair(
    pair: DonutPair,
    *,
    telescope: AuxTel,
    options: ForwardOptions | None = None,
    start_um: NDArray | None = None,
    keep_images: bool = False,
    fit_zernikes: bool = True,
) -> ForwardFitResult:
    """Fit the wavefront deviation of one intra/extra pair with the forward model.

    Parameters
    ----------
    pair : `DonutPair`
        Background-subtracted, centred stamps with variances and masks.
    telescope : `AuxTel`
        Geometry and wavelength of the model (its hexapod state is ignored: the reference is the design).
    options : `ForwardOptions`, optional
        Terms, stages and tolerances.
    start_um : `numpy.ndarray`, shape (len(options.noll),), optional
        Starting deviation (e.g. a TIE solution), micrometres. Without it, the fit starts from the best Z4
        of ``options.z4_grid_um``.
    keep_images : `bool`
        Keep the model images and normalised residuals in the result.
    fit_zernikes : `bool`
        False: hold the Zernikes at ``start_um`` and fit only the flux, offsets, background and seeing, to see
        how well a given wavefront (e.g. another estimator's) explains the stamps; its errors are then NaN.

    Returns
    -------
    result : `ForwardFitResult`

    Raises
    ------
    EstimationError
        If the fit did not converge, ended in a caustic or the model could not be drawn; ``result`` holds
        the `ForwardFitResult` when there is one.
    """
    options = options or ForwardOptions()
    noll = tuple(options.noll)
    t0 = time.perf_counter()
    if start_um is None and not fit_zernikes:
        raise InputError("holding the Zernikes (fit_zernikes=False) needs start_um")
    dz0 = np.zeros(len(noll)) if start_um is None else np.asarray(start_um, dtype=float).copy()
    if dz0.shape != (len(noll),):
        raise InputError(
            f"start_um has shape {dz0.shape}, expected ({len(noll)},) for noll {noll}", value=dz0
        )
    specs = pair_specs(pair, telescope, max(22, max(noll)))
    stages: list[FitStage] = []
    stage_data = functools.partial(_stage_data, pair, specs, noll=noll, telescope=telescope, options=options)
    full = stage_data(binning=1)
    params = _start_params(full, fwhm=options.fwhm_start_arcsec, dz=dz0)
    # The Zernikes are the last parameters: holding them leaves a leading slice free.
    free = slice(None) if fit_zernikes else slice(0, full.model.dz_slice.start)
    if options.coarse_binning > 1:
        coarse = stage_data(binning=options.coarse_binning)
        if start_um is None and options.z4_grid_um:
            params, stage = _grid_start(coarse, params, options.z4_grid_um, noll)
            stages.append(stage)
        params, stage, _ = _run_stage(
            "coarse",
            coarse,
            params,
            step_tol=options.coarse_step_tol,
            zernike_tol_um=options.coarse_zernike_tol_um,
            chi2_tol=options.chi2_tol,
            max_nfev=options.max_nfev,
            free=free,
        )
        stages.append(stage)
    elif start_um is None and options.z4_grid_um:
        params, stage = _grid_start(full, params, options.z4_grid_um, noll)
        stages.append(stage)
    polish = stage_data(binning=options.polish_binning) if options.polish_binning > 1 else full
    params, stage, res = _run_stage(
        "polish",
        polish,
        params,
        step_tol=options.step_tol,
        zernike_tol_um=options.zernike_tol_um,
        chi2_tol=options.chi2_tol,
        max_nfev=options.max_nfev,
        free=free,
    )
    stages.append(stage)
    return _result(full, params, res, tuple(stages), noll, options, t0, keep_images, free)


def _result(
    data: _StageData,
    params: NDArray,
    res: LMResult,
    stages: tuple[FitStage, ...],
    noll: tuple[int, ...],
    options: ForwardOptions,
    t0: float,
    keep_images: bool,
    free: slice,
) -> ForwardFitResult:
    nd = data.model.nd
    objective = _Objective(data)
    ev = data.model.evaluate(params, jacobian=False)
    chi = objective.residuals(ev).reshape(data.images.shape)
    n_free = len(params[free])
    dof = max(data.ndata - n_free, 1)
    chi2r = float(np.sum(chi**2) / dof)
    per_stamp = tuple(
        float(np.sum(chi[d] ** 2) / max(data.good[d].sum() - n_free / nd, 1)) for d in range(nd)
    )
    structure = tuple(
        _structure_fraction(
            data.images[d], ev.images[d], ev.sources[d], data.variances[d], data.good[d], data.gain
        )
        for d in range(nd)
    )
    sigma = np.full(len(params), np.nan)  # NaN for the parameters held
    try:
        cov = np.linalg.pinv(res.normal_matrix) * max(chi2r, 1.0)
        sigma[free] = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        pass
    err = sigma[data.model.dz_slice]
    final = stages[-1]
    reasons = []
    if final.status <= 0:
        reasons.append(f"optimiser did not converge (status {final.status}: {final.message})")
    low = [f"{v:.3f}" for v in ev.valid_fraction if v < options.min_valid_fraction]
    if low:
        reasons.append(
            f"the solution is in a caustic: the model maps only {', '.join(low)} of the flux "
            f"(need {options.min_valid_fraction})"
        )
    if not np.all(np.isfinite(params)):
        reasons.append("non-finite parameters")
    result = ForwardFitResult(
        noll=noll,
        zernikes_um=params[data.model.dz_slice].copy(),
        zernikes_err_um=err,
        fwhm_arcsec=params[data.model.blur_slice].copy(),
        fluxes=params[:nd].copy(),
        backgrounds=params[3 * nd : 4 * nd].copy(),
        offsets_px=np.stack([params[nd : 2 * nd], params[2 * nd : 3 * nd]], axis=1),
        chi2_reduced=chi2r,
        chi2_reduced_per_stamp=per_stamp,
        structure_fraction=structure,
        success=not reasons,
        status=final.status,
        message="; ".join(reasons) if reasons else final.message,
        nfev=sum(s.nfev for s in stages),
        njev=sum(s.njev for s in stages),
        stages=stages,
        elapsed_s=time.perf_counter() - t0,
        residuals=chi if keep_images else None,
        models=ev.images if keep_images else None,
    )
    if reasons:
        raise EstimationError(f"forward fit failed: {result.message}", result=result)
    return result
