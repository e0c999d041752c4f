"""Wavefront from a pair of donuts by the transport-of-intensity equation (TIE), after Xin et al. 2015.

The algorithm
-------------
Each donut is mapped back onto the pupil with the current wavefront estimate (image-to-pupil mapping with
the Jacobian of the mapping as intensity factor, the "compensation"). The compensated intra- and extra-focal
pupil images differ only through the part of the wavefront that the estimate misses; that difference is the
right-hand side of the TIE, solved for annular Zernike coefficients ("exp": series expansion, Gureyev &
Nugent 1996; "fft": Fourier Poisson solver with Neumann boundary iterations, Roddier & Roddier 1993). A
fraction ``gain`` of the solution is added to the compensation and the loop repeats, with the highest
compensated Noll index following ``comp_sequence`` (4, 4, 6, 6, 13, ... then all), until the estimate changes
by less than ``converge_tol_um`` or ``max_iter`` is reached. With ``start_um`` the compensation starts at that
estimate instead of zero; the sequence then applies to the corrections added on top of it.

Centring: each donut's flux centroid is matched, to sub-pixel precision, to the centroid of its model donut
(the mean mapped position over the lit pupil). The two exposures may be pointed differently, so tilts are not
measurable and never reported; they are nevertheless solved for and compensated, which moves both model
donuts together: coma and tilt are nearly degenerate on an annulus, and letting the TIE signal itself fix the
common position keeps centroid errors out of coma (re-centring both donuts on their centroids at every
iteration, as cwfs and ts_wep do with templates, converged to wrong answers for large M2 decenters).

Optical models of the pupil-to-image mapping: ``paraxial`` (linear), ``onAxis`` (exact on axis for a fast
beam, analytic) and ``offAxis`` (the design's ray-traced mapping from `TieGeometry.design`, so that
distortion, vignetting and the design's own aberrations are part of the model).

Conventions
-----------
- Stamps: ``stamp[row, col]`` with row = detector y and col = detector x (FACTS.md section 1), electrons,
  background subtracted, the donut near the centre; any size that holds the donut.
- Field angles: degrees, batoid's frame.
- Zernikes: annular with the geometry's obscuration, Noll indices given explicitly, micrometres.
  `TieResult.zernikes_um` is the total in-focus wavefront (the design's intrinsic aberrations included);
  `TieResult.deviation_um` subtracts the design's intrinsic part when the geometry has a design.
- A positive coefficient displaces rays by ``-(distance / R) dW/du`` on the detector (batoid's ``zernikeTA``
  sign), with ``distance = f - offset`` (intra) or ``f + offset`` (extra) as in cwfs.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import zernikes
from ..errors import EstimationError, InputError
from ..reprs import summary_repr
from .tie_geometry import TieGeometry
from .tie_mapping import PupilGrid, SideModel, build_side, pupil_grid
from .tie_solvers import FftPoissonSolver, exp_solve

__all__ = ["DEFAULT_COMP_SEQUENCE", "Model", "Solver", "TieResult", "solve_tie"]

_log = logging.getLogger(__name__)

Model = Literal["onAxis", "paraxial", "offAxis"]
Solver = Literal["exp", "fft"]

DEFAULT_COMP_SEQUENCE = (4, 4, 6, 6, 13, 13, 13, 13, 22, 22, 22, 22)
"""Highest compensated Noll index at each iteration (cwfs / ts_wep); all solved terms afterwards."""

_TILTS = (2, 3)


@dataclasses.dataclass(frozen=True, eq=False)
class TieResult:
    """Outcome of `solve_tie`.

    Attributes
    ----------
    noll : `tuple` of `int`
        Noll indices of the coefficients.
    zernikes_um : `numpy.ndarray`, shape ``(len(noll),)``
        Total in-focus wavefront (intrinsic design aberrations included), micrometres (read-only).
    intrinsic_um : `numpy.ndarray` or None
        The design's intrinsic in-focus wavefront at the donut (mean of the two field angles), micrometres,
        or None when the geometry has no design.
    converged : `bool`
        True if the estimate settled within the tolerance before ``max_iter`` iterations.
    caustic : `bool`
        True if the compensation folded the pupil mapping (a caustic); the estimate is the last one before.
    iterations : `int`
        Number of TIE iterations run.
    message : `str`
        How the loop ended, in words.
    solver, model : `str`
        The TIE solver and optical model used.
    history_um : `numpy.ndarray`, shape ``(iterations, len(noll))``
        Total wavefront estimate after each iteration, micrometres.
    intra_pupil, extra_pupil : `numpy.ndarray` or None
        Final compensated images on the pupil grid (row = v, col = u), normalised to unit sum, NaN outside
        the computation domain; only with ``keep_images=True``.
    """

    noll: tuple[int, ...]
    zernikes_um: NDArray[np.float64]
    intrinsic_um: NDArray[np.float64] | None
    converged: bool
    caustic: bool
    iterations: int
    message: str
    solver: str
    model: str
    history_um: NDArray[np.float64]
    intra_pupil: NDArray[np.float64] | None = None
    extra_pupil: NDArray[np.float64] | None = None

    def __repr__(self) -> str:
        """A one-line summary: arrays as their shape and dtype (`reprs.summary_repr`)."""
        return summary_repr(self)

    @property
    def deviation_um(self) -> NDArray[np.float64]:
        """Wavefront minus the design's intrinsic part, micrometres (needs a geometry with a design)."""
        if self.intrinsic_um is None:
            raise InputError("this TIE result has no intrinsic Zernikes: the geometry had no design")
        return self.zernikes_um - self.intrinsic_um


def _check_stamp(stamp: ArrayLike, role: str, geometry: TieGeometry) -> NDArray[np.float64]:
    arr = np.asarray(stamp)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(
            f"{role} stamp must be a non-empty 2-D array, got shape {arr.shape}", value=arr.shape
        )
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{role} stamp must hold real numbers, got dtype {arr.dtype}", value=arr.dtype)
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputError(
            f"{role} stamp has {int(bad.sum())} non-finite pixels (NaN/inf); interpolate or mask them first",
            value=int(bad.sum()),
        )
    need = 2.0 * geometry.donut_radius_px + 8
    if min(arr.shape) < need:
        raise InputError(
            f"{role} stamp is {arr.shape[0]}x{arr.shape[1]} px, too small for a {geometry.name} donut "
            f"(diameter about {2 * geometry.donut_radius_px:.0f} px): need at least {need:.0f} px a side",
            value=arr.shape,
            allowed=need,
        )
    total = float(arr.sum())
    if not total > 0:
        raise InputError(
            f"{role} stamp has non-positive total flux ({total:.4g} e-): empty stamp or background "
            "over-subtracted",
            value=total,
        )
    return arr


def _check_options(
    geometry: TieGeometry,
    noll: Iterable[int],
    solver: str,
    model: str,
    max_iter: int,
    comp_sequence: Sequence[int],
    gain: float,
    converge_tol_um: float,
    boundary_px: int,
) -> tuple[int, ...]:
    if not isinstance(geometry, TieGeometry):
        raise InputError(f"geometry must be a TieGeometry, got {type(geometry).__name__}", value=geometry)
    noll_t = zernikes.check_noll(noll)
    if set(noll_t) & {1, *_TILTS}:
        raise InputError(
            "Noll 1-3 (piston, tilts) cannot be measured: each donut is centred on its own; use noll >= 4",
            value=noll_t,
            allowed=(4, zernikes.MAX_NOLL),
        )
    if solver not in ("exp", "fft"):
        raise InputError(f"unknown TIE solver {solver!r}", value=solver, allowed=("exp", "fft"))
    if model not in ("onAxis", "paraxial", "offAxis"):
        raise InputError(
            f"unknown optical model {model!r}", value=model, allowed=("onAxis", "paraxial", "offAxis")
        )
    if model == "offAxis" and solver == "fft":
        raise InputError(
            "the fft solver is validated only with the onAxis and paraxial models (it misses the published "
            "offAxis case by 25 nm); use solver='exp' with model='offAxis'",
            value=(solver, model),
        )
    if model == "offAxis" and geometry.design is None:
        raise InputError(
            f"the offAxis model needs a design (pupil maps) but geometry {geometry.name!r} has none",
            value=model,
        )
    if not (isinstance(max_iter, int | np.integer) and max_iter >= 1):
        raise InputError(f"max_iter must be a positive integer, got {max_iter!r}", value=max_iter)
    seq = list(comp_sequence)
    if any(int(j) != j or j < 1 for j in seq) or any(b < a for a, b in itertools.pairwise(seq)):
        raise InputError(f"comp_sequence must be non-decreasing Noll indices, got {seq}", value=seq)
    if not 0.0 < gain <= 1.0:
        raise InputError(f"gain must lie in (0, 1], got {gain}", value=gain, allowed=(0.0, 1.0))
    if not converge_tol_um >= 0:
        raise InputError(f"converge_tol_um must be >= 0, got {converge_tol_um}", value=converge_tol_um)
    if not (isinstance(boundary_px, int | np.integer) and 0 <= boundary_px <= 5):
        raise InputError(f"boundary_px must be an integer in 0..5, got {boundary_px!r}", value=boundary_px)
    return noll_t


def _as_field(field: tuple[float, float], role: str) -> tuple[float, float]:
    try:
        fx, fy = (float(v) for v in field)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"field_{role}_deg must be a pair (x, y) in degrees, got {field!r}", value=field
        ) from exc
    if not (np.isfinite(fx) and np.isfinite(fy)) or np.hypot(fx, fy) > 10.0:
        raise InputError(f"field_{role}_deg={field!r} is not a plausible field angle in degrees", value=field)
    return fx, fy


def solve_tie(
    intra: ArrayLike,
    extra: ArrayLike,
    *,
    geometry: TieGeometry,
    field_intra_deg: tuple[float, float],
    field_extra_deg: tuple[float, float],
    noll: Iterable[int] = range(4, 23),
    solver: Solver = "exp",
    model: Model = "onAxis",
    max_iter: int = 30,
    comp_sequence: Sequence[int] = DEFAULT_COMP_SEQUENCE,
    gain: float = 0.6,
    converge_tol_um: float = 5e-4,
    boundary_px: int = 1,
    keep_images: bool = False,
    strict: bool = False,
    start_um: ArrayLike | None = None,
) -> TieResult:
    """Estimate the wavefront from an intra/extra-focal donut pair with the TIE.

    Parameters
    ----------
    intra, extra : array-like of float, 2-D
        Donut stamps, ``stamp[row = y, col = x]``, electrons, background subtracted, donut near the centre.
    geometry : `TieGeometry`
        The instrument (`TieGeometry.auxtel`, `TieGeometry.lsst_published`, ...).
    field_intra_deg, field_extra_deg : `tuple` of `float`
        Field angle ``(x, y)`` of each donut, degrees (batoid frame).
    noll : iterable of `int`
        Noll indices to report (>= 4; default Z4-Z22).
    solver : {"exp", "fft"}
        Series expansion in annular Zernikes, or FFT Poisson solver.
    model : {"onAxis", "paraxial", "offAxis"}
        Optical model of the pupil-to-image mapping; ``offAxis`` needs ``geometry.design``.
    max_iter : `int`
        Maximum number of TIE iterations.
    comp_sequence : sequence of `int`
        Highest Noll index compensated at each iteration; all terms after the sequence ends.
    gain : `float`
        Fraction of each new solution added to the compensation.
    converge_tol_um : `float`
        Converged when every coefficient changes by less than this between iterations (micrometres), once
        all terms are compensated.
    boundary_px : `int`
        Width of the ring of pupil pixels beyond the pupil edges that is kept (sampled at the edge).
    keep_images : `bool`
        Return the final compensated pupil images in the result.
    strict : `bool`
        Raise `EstimationError` (carrying the result) instead of returning a result that did not converge.
    start_um : array-like of `float`, shape ``(len(noll),)``, optional
        Initial estimate, in the convention of `TieResult.zernikes_um` (total in-focus wavefront, design
        included), micrometres; default zero. The loop compensates it fully from the first iteration and
        follows ``comp_sequence`` for its own corrections, so a start at the answer should stay there
        (e.g. a forward-model solution plus ``geometry.design.intrinsic_zernikes_um``).

    Returns
    -------
    result : `TieResult`

    Raises
    ------
    InputError
        Bad stamps (empty, non-finite, too small, no flux) or options.
    EstimationError
        If ``strict`` and the loop did not converge or hit a caustic; or if no light falls on the pupil.
    """
    noll_t = _check_options(
        geometry, noll, solver, model, max_iter, comp_sequence, gain, converge_tol_um, boundary_px
    )
    images = {
        "intra": _check_stamp(intra, "intra", geometry),
        "extra": _check_stamp(extra, "extra", geometry),
    }
    fields = {"intra": _as_field(field_intra_deg, "intra"), "extra": _as_field(field_extra_deg, "extra")}
    solve_noll = tuple(sorted(set(_TILTS) | set(noll_t)))
    grid = pupil_grid(geometry, solve_noll, boundary_px)
    sides = [
        build_side(
            images[s], s, fields[s], geometry=geometry, model=model, grid=grid, boundary_px=boundary_px
        )
        for s in ("intra", "extra")
    ]
    report = np.array([solve_noll.index(j) for j in noll_t])
    mean_field = tuple(0.5 * (a + b) for a, b in zip(fields["intra"], fields["extra"], strict=True))
    intrinsic = (
        None
        if geometry.design is None
        else np.asarray(geometry.design.intrinsic_zernikes_um(*mean_field, noll_t), dtype=float)
    )
    offset_um = intrinsic if (model == "offAxis" and intrinsic is not None) else np.zeros(len(noll_t))
    start_m = np.zeros(len(solve_noll))
    if start_um is not None:
        start = np.asarray(start_um, dtype=float)
        if start.shape != (len(noll_t),) or not np.all(np.isfinite(start)):
            raise InputError(
                f"start_um must hold {len(noll_t)} finite values (one per Noll index), "
                f"got shape {start.shape}",
                value=start.shape,
            )
        # The loop works relative to the optical model's reference (the design for offAxis).
        start_m[report] = (start - offset_um) * 1e-6

    loop = _run_loop(
        sides,
        grid,
        solve_noll,
        solver=solver,
        max_iter=int(max_iter),
        comp_sequence=tuple(comp_sequence),
        gain=float(gain),
        tol_m=converge_tol_um * 1e-6,
        start_m=start_m,
    )
    history = loop.history_m[:, report] * 1e6 + offset_um
    # Before any iteration (a caustic at the first) the best estimate is the start.
    total = loop.best_m[report] * 1e6 + offset_um
    for arr in (total, history):
        arr.setflags(write=False)
    if intrinsic is not None:
        intrinsic.setflags(write=False)
    pupils = (grid.to_image(loop.images[0]), grid.to_image(loop.images[1])) if keep_images else (None, None)
    result = TieResult(
        noll=noll_t,
        zernikes_um=total,
        intrinsic_um=intrinsic,
        converged=loop.converged,
        caustic=loop.caustic,
        iterations=loop.iterations,
        message=loop.message,
        solver=solver,
        model=model,
        history_um=history,
        intra_pupil=pupils[0],
        extra_pupil=pupils[1],
    )
    _log.debug("TIE %s/%s on %s: %s", solver, model, geometry.name, loop.message)
    if strict and not loop.converged:
        raise EstimationError(f"TIE ({solver}, {model}) failed: {loop.message}", result=result)
    return result


@dataclasses.dataclass
class _LoopOutcome:
    best_m: NDArray[np.float64]
    history_m: NDArray[np.float64]
    images: tuple[NDArray[np.float64], NDArray[np.float64]]
    converged: bool
    caustic: bool
    iterations: int
    message: str


def _run_loop(
    sides: list[SideModel],
    grid: PupilGrid,
    solve_noll: tuple[int, ...],
    *,
    solver: str,
    max_iter: int,
    comp_sequence: tuple[int, ...],
    gain: float,
    tol_m: float,
    start_m: NDArray[np.float64],
) -> _LoopOutcome:
    """The compensation loop; coefficients in metres over ``solve_noll``, starting from ``start_m``."""
    noll_arr = np.array(solve_noll)
    # Tilts: solved and compensated (moving both model donuts together), never reported nor tested for
    # convergence (the pointing of each exposure is arbitrary).
    tilt = np.isin(noll_arr, _TILTS)
    jmax = int(noll_arr.max())
    n = len(solve_noll)
    # Compensation = start + corrections; the sequence truncates the corrections only, so that a start is
    # compensated in full from the first iteration (from zero this is the published loop).
    corr = np.zeros(n)
    resid = np.zeros(n)
    best = start_m.copy()
    history: list[NDArray[np.float64]] = []
    images = (np.zeros(grid.npoint), np.zeros(grid.npoint))
    # Ray displacement per unit wavefront slope, in pupil units: the TIE's scale (1/m).
    k_scale = -(sides[0].kappa + sides[1].kappa) / grid.scale_px
    mask = sides[0].mask & sides[1].mask
    fft = FftPoissonSolver.build(mask, grid) if solver == "fft" else None
    last_change = np.inf

    def outcome(
        iterations: int, message: str, *, converged: bool = False, caustic: bool = False
    ) -> _LoopOutcome:
        # The state at the time of the call: best estimate, history, last compensated images.
        history_m = np.array(history).reshape(-1, n)
        return _LoopOutcome(best, history_m, images, converged, caustic, iterations, message)

    for it in range(max_iter):
        jcomp = comp_sequence[it] if it < len(comp_sequence) else jmax
        corr = corr + gain * resid
        corr[noll_arr > jcomp] = 0.0
        comp = start_m + corr
        compensated = []
        for side in sides:
            img, folded = side.compensate(comp, solve_noll)
            if folded:
                return outcome(
                    it,
                    f"caustic at iteration {it + 1}: the {side.side} pupil mapping folds (Jacobian <= 0); "
                    f"estimate from iteration {it} kept",
                    caustic=True,
                )
            compensated.append(img * mask)
        sums = [float(c.sum()) for c in compensated]
        if min(sums) <= 0:
            return outcome(
                it,
                f"no light on the pupil at iteration {it + 1} (sums {sums[0]:.3g}, {sums[1]:.3g}): the model "
                f"donut left the stamp; estimate from iteration {it} kept",
            )
        # Each image is divided by its donut's flux (not by its sum over the pupil mask): exposures may differ
        # in flux, and light that a vignetted mask cuts off must not be renormalised into the pupil.
        i1, i2 = compensated[0] / sides[0].flux, compensated[1] / sides[1].flux
        images = (i1, i2)
        if fft is None:
            resid = exp_solve(i1, i2, grid.bases, k_scale)
        else:
            resid = fft(i1, i2, k_scale, iteration=it)
        new_best = comp + resid
        last_change = float(np.max(np.abs(new_best - best)[~tilt]))
        best = new_best
        history.append(best.copy())
        if jcomp >= jmax and last_change < tol_m:
            return outcome(
                it + 1,
                f"converged after {it + 1} iterations (last change {last_change * 1e9:.2g} nm)",
                converged=True,
            )
    return outcome(
        max_iter,
        f"not converged after {max_iter} iterations (last change {last_change * 1e9:.3g} nm, "
        f"tolerance {tol_m * 1e9:.3g} nm)",
    )
