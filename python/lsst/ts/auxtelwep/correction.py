"""From measured wavefront deviations to the M2 hexapod offsets that null them.

The model: for a small misalignment ``m`` of M2 (hexapod frame, `instrument.HexapodState` order
x, y, z mm, u, v deg), the in-focus deviation from the design seen by a donut at field ``f`` is
``d(f) = S(f) m`` with ``S`` the batoid sensitivity (`instrument.AuxTel.sensitivity`, detector frame,
camera rotation included). Stacking every donut's deviation, the correction is the weighted least-squares
``delta = -argmin |W (S m - d)|``. This is the full correction: gains and step limits belong to whoever
applies it (the CSC's configuration), so that one place owns them.

Decenter and tilt are degenerate for near-axis stars (FACTS.md section 2): a tilt's coma is matched by a
decenter's to a few nm across the LATISS field. By default (``axes="auto"``) x, y, z are solved first, with
u = v = 0, which nulls coma by decentering about the coma-free point, as the ops script does; u and v are
added only when, on what x, y, z leave, the donuts' field spread pins them down to ``uv_sigma_max_deg``
*and* the tilt found is significant (``uv_min_significance`` sigmas). The significance test keeps an aligned
telescope from wandering along the coma-free line on noise. Each deviation's error gets ``systematic_um``
(1 nm) added in quadrature, the model's own error: a bright donut's fit quotes 0.1 nm, and against that
the few nm by which the model and the estimator can be off read as a significant tilt (one donut at the
chip's edge, 0.2 mm of decenter: 0.004 deg of tilt and 36 um of decenter error).

Focus is seen in Z4 alone: M2 piston moves every other term at least 500 times less (Z11 by 0.008 um per mm,
Z4 by 4.2), so from terms without Z4 z would be fitted to a nanometre of noise as tenths of a millimetre.
Without Z4 among the terms used z is not solved (left at zero and named in ``solved_axes``), as u and v are
not when the field does not pin them down.

The deviations are measured at the donuts' pixels, through the design's mapping. Moving M2 moves the image
(~548 px per mm of decenter), so the star seen at a pixel changes with it; the linear model includes that
(`instrument.SensitivityMap`, ``follow_image``: 3 nm of Z4 at the chip's edge for 0.2 mm, read as 0.8 um
of focus without it). Simulations that know their stars' own fields say so (``fields_from_pixels=False``).
The pipeline reports the Zernikes at the stars' fields afterwards (`estimation.refer_to_stars`, with the
misalignment solved here); the correction is made from the deviations at the pixels' fields, before that.

The sensitivity is linear; M2 motion is not quite. Decentering M2 also defocuses, as the square of the
decenter: the linear solution leaves 0.2 um of focus at 1 mm, 1.3 um at 2.8 mm (measured at pixels). When
the linear solution decenters by more than ``refine_above_mm``, it is refined against the optical model
itself (chord iterations: batoid's deviation at the solution, following each donut's star, and the
sensitivity for the step; ~5 ms per donut and step, two or three steps), which leaves < 0.1 um
(`tests/test_correction.py`). Below the threshold the linear model is right to 0.02 um, and nothing is
traced. Deviations that imply more than `PLAUSIBLE_MISALIGNMENT` (10 mm of decenter, 5 mm of focus, 1 deg
of tilt) are refused: no donut pair shows such a state, and nanometres given for micrometres do.

For comparison the ops-script rule (ts_externalscripts latiss_base_align, FACTS.md section 2) is also
evaluated when Z4, Z7 and Z8 are among the terms used: ``[coma_x, coma_y, focus] = [-Z8, Z7, Z4]`` nm,
rotated by ``-camera_angle``, times the published matrix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import InputError, as_config
from .instrument import MAX_NOLL, PUBLISHED_SENSITIVITY_MM_PER_NM, AuxTel, HexapodState

__all__ = [
    "PLAUSIBLE_MISALIGNMENT",
    "CorrectionConfig",
    "HexapodCorrection",
    "compute_correction",
    "ops_script_correction",
]

_AXES = HexapodState.AXES
#: Largest misalignment a correction may imply: decenter (mm), focus (mm), tilt (deg). At 10 mm of decenter
#: the coma is ~1.8 um and at 5 mm of focus Z4 is ~21 um: donuts no longer look like rings; beyond, the
#: deviations were given in the wrong unit.
PLAUSIBLE_MISALIGNMENT = (10.0, 5.0, 1.0)
#: Noll indices the ops-script rule reads.
_OPS_TERMS = (4, 7, 8)


class CorrectionConfig(BaseModel):
    """How measured Zernikes become a hexapod offset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axes: Literal["auto", "xyz", "xyzuv", "z"] = Field(
        "auto",
        description="Axes to solve: x, y, z only; all five; all five when the field constrains u, v; or "
        "focus alone (z, from Z4: also what is solved when the camera angle is unknown).",
    )
    noll: tuple[int, ...] = Field(
        (4, 5, 6, 7, 8, 9, 10, 11), description="Noll indices used in the fit (those M2 motion changes)."
    )
    uv_sigma_max_deg: float = Field(
        0.005, gt=0, description="With axes='auto', solve u, v only when their 1-sigma error is below this."
    )
    uv_min_significance: float = Field(
        3.0,
        ge=0,
        description="With axes='auto', solve u, v only when the tilt found exceeds this many sigmas.",
    )
    systematic_um: float = Field(
        0.001,
        ge=0,
        description="Error added in quadrature to every measured deviation, um: the model's own (the "
        "estimator's bias, the linear model's, ~1 nm), which a bright donut's errors (0.1 nm) leave out.",
    )
    refine_above_mm: float | None = Field(
        0.3,
        ge=0,
        description="Refine the linear solution against the optical model when its decenter exceeds this, mm "
        "(None: never). Below 0.3 mm the linear model is right to 0.1 um of focus.",
    )
    refine_max_steps: int = Field(4, ge=1, description="Most chord steps of that refinement.")
    ops_gains: tuple[float, float, float] = Field(
        (0.5, 0.5, 0.9), description="Gains of the ops-script rule (x, y, z), reported for comparison."
    )

    @field_validator("noll")
    @classmethod
    def _check_noll(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        # Here, not in compute_correction: there an index that is never measured is ignored in silence.
        if not value or len(set(value)) != len(value) or min(value) < 4 or max(value) > MAX_NOLL:
            raise ValueError(
                f"noll must be distinct indices in 4..{MAX_NOLL}, got {value}: Z1-Z3 cannot drive the "
                "hexapod (piston is not measured; tip and tilt are where the image lands, which the "
                f"estimators fit as offsets), and the optical model's Zernikes stop at Z{MAX_NOLL}"
            )
        return tuple(sorted(value))


@dataclasses.dataclass(frozen=True)
class HexapodCorrection:
    """A hexapod offset to apply to M2, with how it was obtained.

    Attributes
    ----------
    offset : `HexapodState`
        The offset that nulls the measured deviation (full: no gain, no limit), hexapod frame.
    solved_axes : `tuple` of `str`
        Axes that were solved (the others are zero).
    sigma : `HexapodState`
        1-sigma uncertainty of the solved offset per axis (0 for axes not solved, and for every axis when
        the deviations came without errors: unknown).
    residual_rms_um : `float`
        RMS of the wavefront left unexplained by the solution, micrometres.
    ops_offset : `HexapodState` or `None`
        The ops-script rule's offset for the same measurement (x, y, z only, with its gains), for comparison;
        None when Z4, Z7 or Z8 is not among the terms used (the rule needs all three) or only focus is
        solved (``axes="z"``: its x, y need the camera angle).
    """

    offset: HexapodState
    solved_axes: tuple[str, ...]
    sigma: HexapodState
    residual_rms_um: float
    ops_offset: HexapodState | None

    def as_dict(self) -> dict[str, float]:
        """The offset as ``{"x_mm", "y_mm", "z_mm", "u_deg", "v_deg"}``."""
        return _axis_dict(self.offset)

    def sigma_dict(self) -> dict[str, float]:
        """The 1-sigma uncertainties with the keys of `as_dict` (0 for the axes not solved)."""
        return _axis_dict(self.sigma)


def _axis_dict(state: HexapodState) -> dict[str, float]:
    return {"x_mm": state.x, "y_mm": state.y, "z_mm": state.z, "u_deg": state.u, "v_deg": state.v}


def compute_correction(
    noll: Sequence[int],
    deviations_um: ArrayLike,
    errors_um: ArrayLike,
    fields_deg: ArrayLike,
    *,
    telescope: AuxTel,
    config: CorrectionConfig | Mapping[str, Any] | None = None,
    fields_from_pixels: bool = True,
) -> HexapodCorrection:
    """Solve for the hexapod offset that nulls the measured deviations.

    Parameters
    ----------
    noll : sequence of `int`
        Noll indices of the columns of ``deviations_um``.
    deviations_um : array-like, shape (n_donuts, len(noll))
        In-focus wavefront deviation from the design measured at each donut, micrometres.
    errors_um : array-like, same shape
        1-sigma uncertainties of ``deviations_um`` (non-positive or non-finite entries are ignored).
    fields_deg : array-like, shape (n_donuts, 2)
        Field angle ``(x, y)`` of each donut, degrees (batoid frame).
    telescope : `AuxTel`
        The aligned telescope with the camera angle of the exposures (its hexapod state is the linearisation
        point, normally the nominal one).
    config : `CorrectionConfig` or mapping, optional
        Axes and Noll indices used (or a mapping of the fields); defaults when omitted.
    fields_from_pixels : `bool`
        ``fields_deg`` are where the donuts sit on the detector, through the design's mapping, and the
        deviations are against the design there (as `stamps.cut_pairs` and the estimators make them). A
        decentred M2 moves the image, so the stars seen there are elsewhere; the model follows them.
        False: the stars' own fields (simulations that know them).

    Returns
    -------
    correction : `HexapodCorrection`

    Raises
    ------
    InputError
        If the shapes disagree, no Noll index the correction uses was measured, or nothing is finite.
    """
    config = as_config("config", config, CorrectionConfig)
    noll_arr = np.asarray(noll, dtype=int)
    dev = np.atleast_2d(np.asarray(deviations_um, dtype=float))
    err = np.atleast_2d(np.asarray(errors_um, dtype=float))
    fields = np.atleast_2d(np.asarray(fields_deg, dtype=float))
    if dev.shape != err.shape or dev.shape[1] != noll_arr.size or fields.shape != (dev.shape[0], 2):
        raise InputError(
            f"shapes disagree: deviations {dev.shape}, errors {err.shape}, fields {fields.shape}, "
            f"noll {noll_arr.size}"
        )
    # Focus alone is read from Z4 alone: the coma a decenter leaves would only inflate its chi-square.
    used = np.isin(noll_arr, (4,) if config.axes == "z" else config.noll)
    if not used.any():
        raise InputError(
            f"none of the measured Noll indices {noll_arr.tolist()} is used by the correction "
            f"{list(config.noll)}",
            value=noll_arr.tolist(),
            allowed=config.noll,
        )
    noll_used = noll_arr[used]
    dev, err = dev[:, used], err[:, used]
    # Errors that are missing or zero get the median error, so one bad value cannot dominate the weights;
    # with none at all the donuts weigh the same (any common value) and the solution's errors are unknown.
    good_err = np.isfinite(err) & (err > 0)
    floor = np.median(err[good_err]) if good_err.any() else 0.01
    err = np.hypot(np.where(good_err, err, floor), config.systematic_um)
    finite = np.isfinite(dev)
    if not finite.any():
        raise InputError("no finite wavefront deviation to correct")

    # The model's Zernikes are fitted to the terms measured (a transverse-aberration fit to Z4-Z11 alone
    # differs from the Z4-Z11 of a Z4-Z22 fit: 0.2 % in coma), and only then restricted to those used.
    sensitivity = telescope.sensitivity_map(noll=noll_arr).at(
        fields[:, 0], fields[:, 1], follow_image=fields_from_pixels
    )
    rows = sensitivity[:, used, :].reshape(-1, 5)
    target = dev.reshape(-1)
    weights = 1.0 / err.reshape(-1)
    keep = finite.reshape(-1)
    design = rows[keep] * weights[keep, None]
    model = _Deviations(telescope, fields, noll_arr, used, follow_image=fields_from_pixels)

    def solve(columns: Sequence[int], predicted: NDArray[np.float64]) -> tuple[NDArray, NDArray]:
        """Weighted least-squares step on ``columns`` from what ``predicted`` leaves, and its covariance."""
        return _lstsq(design, (target - predicted)[keep] * weights[keep], columns)

    def refined(solution: NDArray, predicted: NDArray, axes: tuple[str, ...]) -> tuple[NDArray, NDArray]:
        return _refine(solution, predicted, axes, solve, model, config.refine_max_steps, rows)

    # x, y, z first (z only with Z4: module docstring), refined against the optical model when the decenter
    # is large; u and v are then judged on what x, y, z leave at that point, where the model is right.
    axes: tuple[str, ...] = (
        ("z",) if config.axes == "z" else ("x", "y", "z") if 4 in noll_used else ("x", "y")
    )
    solution, cov = solve([_AXES.index(axis) for axis in axes], np.zeros_like(target))
    predicted = rows @ solution
    refine = config.refine_above_mm is not None and np.hypot(*solution[:2]) > config.refine_above_mm
    if refine:
        solution, predicted = refined(solution, predicted, axes)
    if config.axes in ("auto", "xyzuv"):
        with_tilt = (*axes, "u", "v")
        step, cov_tilt = solve([_AXES.index(axis) for axis in with_tilt], predicted)
        left = (target - predicted - rows @ step)[keep] * weights[keep]
        scale = _chi2_scale(left, len(with_tilt))
        if config.axes == "xyzuv" or _tilt_is_constrained(step, cov_tilt * scale, config):
            solution, cov, axes = solution + step, cov_tilt, with_tilt
            predicted = predicted + rows @ step
            if refine:
                solution, predicted = refined(solution, predicted, axes)
    residual = predicted[keep] - target[keep]
    # Scaled by the reduced chi^2 when above 1, so the errors are honest when the quoted Zernike errors are
    # too small.
    cov = cov * _chi2_scale(residual * weights[keep], len(axes))
    _check_plausible(solution)
    offset = HexapodState.from_array(0.0 - solution)  # not -solution: unsolved axes stay +0.0, not -0.0
    sigma = HexapodState.from_array(
        np.sqrt(np.clip(np.diag(cov), 0, None)) if good_err.any() else np.zeros(5)
    )
    mean_dev = np.nanmean(dev, axis=0)
    return HexapodCorrection(
        offset=offset,
        solved_axes=axes,
        sigma=sigma,
        residual_rms_um=float(np.sqrt(np.mean(residual**2))),
        ops_offset=ops_script_correction(
            noll_used, mean_dev, camera_angle_deg=telescope.camera_angle_deg, gains=config.ops_gains
        )
        if set(_OPS_TERMS) <= set(noll_used.tolist()) and config.axes != "z"
        else None,
    )


def _check_plausible(misalignment: NDArray[np.float64]) -> None:
    """Refuse a misalignment no donut could show (`PLAUSIBLE_MISALIGNMENT`): a unit mistake, not a state."""
    x, y, z, u, v = misalignment
    decenter_mm, focus_mm, tilt_deg = PLAUSIBLE_MISALIGNMENT
    if np.hypot(x, y) > decenter_mm or abs(z) > focus_mm or np.hypot(u, v) > tilt_deg:
        implied = HexapodState.from_array(0.0 - misalignment)
        raise InputError(
            f"the deviations ask for a correction of {implied} (mm, deg), beyond any misalignment donuts "
            f"can show (decenter {decenter_mm} mm, focus {focus_mm} mm, tilt {tilt_deg} deg); deviations are "
            "in micrometres (were nanometres given?)",
            value=implied.as_array().tolist(),
        )


def _lstsq(
    design: NDArray[np.float64], rhs: NDArray[np.float64], columns: Sequence[int]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Weighted least squares on some axes: the five-axis solution and covariance (zero elsewhere)."""
    columns = list(columns)
    sub = design[:, columns]
    cov_sub = np.linalg.pinv(sub.T @ sub)
    sol = np.zeros(5)
    cov = np.zeros((5, 5))
    sol[columns] = cov_sub @ sub.T @ rhs
    cov[np.ix_(columns, columns)] = cov_sub
    return sol, cov


def _chi2_scale(weighted_residual: NDArray[np.float64], n_axes: int) -> float:
    """Reduced chi^2 of a fit of ``n_axes`` parameters, or 1 when below 1 or without degrees of freedom."""
    dof = weighted_residual.size - n_axes
    return max(float(np.sum(weighted_residual**2)) / dof, 1.0) if dof > 0 else 1.0


def _tilt_is_constrained(
    step: NDArray[np.float64], cov: NDArray[np.float64], config: CorrectionConfig
) -> bool:
    """Whether the donuts pin u, v down and find a significant tilt (``axes="auto"``)."""
    uv_sigma = np.sqrt(np.clip(np.diag(cov)[3:], 0, None))
    pinned = bool(np.all(uv_sigma < config.uv_sigma_max_deg))
    return pinned and bool(np.hypot(*step[3:]) > config.uv_min_significance * np.hypot(*uv_sigma))


@dataclasses.dataclass(frozen=True)
class _Deviations:
    """The deviations the optical model predicts at each donut for a misalignment (flattened, used terms).

    A donut's field comes from its pixel through the design's mapping, but a decentred M2 moves the image
    (~548 px per mm): the star whose donut sits there is elsewhere on the sky, and its wavefront differs
    (the measured deviation is that wavefront minus the design at the pixel's field: 40 nm of Z4 at
    2.8 mm). With ``follow_image`` the model follows the star that lands on each donut's pixel.
    """

    telescope: AuxTel
    fields: NDArray[np.float64]
    noll: NDArray[np.int64]
    used: NDArray[np.bool_]
    follow_image: bool

    def __call__(self, state: NDArray[np.float64]) -> NDArray[np.float64]:
        telescope = self.telescope
        moved = telescope.with_hexapod(telescope.hexapod + HexapodState.from_array(state))
        out = []
        for fx, fy in self.fields:
            star = np.array([fx, fy], dtype=float)
            if self.follow_image:
                # One step back along the image's motion (nearly uniform over the chip: enough).
                landed = telescope.pixel_to_field(*moved.chief_ray_pixel(fx, fy))
                seen = telescope.pixel_to_field(*telescope.chief_ray_pixel(fx, fy))
                star = star - (np.array(landed, dtype=float) - np.array(seen, dtype=float))
            wavefront = moved.zernikes(float(star[0]), float(star[1]), noll=self.noll)
            out.append((wavefront - telescope.zernikes(float(fx), float(fy), noll=self.noll))[self.used])
        return np.concatenate(out)


def _refine(
    solution: NDArray[np.float64],
    predicted: NDArray[np.float64],
    axes: tuple[str, ...],
    solve: Callable[[Sequence[int], NDArray[np.float64]], tuple[NDArray[np.float64], NDArray[np.float64]]],
    model: _Deviations,
    max_steps: int,
    rows: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Chord iterations of the misalignment against the optical model; returns it and its deviations.

    Each step traces the deviation the model predicts at the current solution and moves by the linear
    solution (``solve``, on ``axes``) of what is left, so it converges to the model's own answer whatever
    the sensitivity's error. Returns the solution and the deviations the model predicts there.

    Raises
    ------
    InputError
        If the model has no answer there: the deviations imply M2 so far off (centimetres) that the stars'
        light misses the detector, which real donuts cannot show (deviations in nm given for um do).
    """
    columns = [_AXES.index(axis) for axis in axes]
    try:
        for _ in range(max_steps):
            predicted = model(solution)
            step, _ = solve(columns, predicted)
            solution = solution + step
            if np.max(np.abs(step)) < 1e-4:  # 0.1 um: the model's own answer, far below any error
                break
    except InputError as exc:
        implied = HexapodState.from_array(-solution)
        raise InputError(
            f"the deviations ask for a correction of {implied} (mm, deg), where the optical model has no "
            f"image ({exc}); deviations are in micrometres (were nanometres given?)",
            value=implied.as_array().tolist(),
        ) from exc
    # The last step is small: its effect on the prediction is linear.
    return solution, predicted + rows @ step


def ops_script_correction(
    noll: Sequence[int],
    deviations_um: ArrayLike,
    *,
    camera_angle_deg: float,
    gains: Sequence[float] = (0.5, 0.5, 0.9),
) -> HexapodState:
    """The ops script's rule (FACTS.md section 2) applied to one mean deviation.

    Parameters
    ----------
    noll : sequence of `int`
        Noll indices of ``deviations_um``; must include 4, 7 and 8.
    deviations_um : array-like, shape (len(noll),)
        Mean in-focus deviation, micrometres.
    camera_angle_deg : `float`
        Camera angle relative to the hexapod frame (instrument.py convention); the ops script's rotation
        angle ``90 - bore_sight_angle`` is its negative.
    gains : sequence of 3 `float`
        Gains on x, y, z.

    Returns
    -------
    offset : `HexapodState`
        x, y, z offsets in mm (u = v = 0).
    """
    noll_list = [int(n) for n in noll]
    missing = set(_OPS_TERMS) - set(noll_list)
    if missing:
        raise InputError(f"the ops rule needs Z4, Z7 and Z8; missing Noll {sorted(missing)}", value=noll_list)
    dev = np.asarray(deviations_um, dtype=float) * 1000.0
    z4, z7, z8 = (dev[noll_list.index(j)] for j in (4, 7, 8))
    zern = np.array([-z8, z7, z4])
    angle = np.deg2rad(-camera_angle_deg)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]]
    )
    offset = (zern @ rot) @ PUBLISHED_SENSITIVITY_MM_PER_NM * np.asarray(gains, dtype=float)
    return HexapodState(x=float(offset[0]), y=float(offset[1]), z=float(offset[2]))
