"""From measured wavefront deviations to the M2 hexapod offsets that null them.

The model: for a small misalignment ``m`` of M2 (hexapod frame, `instrument.HexapodState` order
x, y, z mm, u, v deg), the in-focus deviation from the design seen by a donut at field ``f`` is
``d(f) = S(f) m`` with ``S`` the batoid sensitivity (`instrument.AuxTel.sensitivity`, detector frame,
camera rotation included). Stacking every donut's deviation, the correction is the weighted least-squares
``delta = -argmin |W (S m - d)|``. This is the full correction: gains and step limits belong to whoever
applies it (the CSC's configuration), so that one place owns them.

Decenter and tilt are degenerate for near-axis stars (FACTS.md section 2): a tilt's coma is matched by a
decenter's to a few nm across the LATISS field. By default (``axes="auto"``) the five-axis solution is
used only when the donuts' field spread pins u and v down to ``uv_sigma_max_deg`` *and* the tilt found is
significant (``uv_min_significance`` sigmas); otherwise x, y, z are solved with u = v = 0, which nulls coma
by decentering about the coma-free point, as the ops script does. The significance test keeps an aligned
telescope from wandering along the coma-free line on noise.

The sensitivity is linear; M2 motion is not quite. Decentering M2 also defocuses, as the square of the
decenter: the linear solution of a 1 mm decenter leaves 0.9 um of focus, of 2.8 mm 7 um (the 2 um focus
target is reached only below ~1.5 mm). When the linear solution decenters by more than
``refine_above_mm``, it is refined against the optical model itself (chord iterations: batoid's deviation at
the solution, the sensitivity for the step; ~5 ms per donut and step, two or three steps), which leaves
< 0.1 um (`tests/test_correction.py`). The refinement also follows the image: M2 decentred by millimetres
moves it by ~538 px per mm, so the star whose donut sits at a pixel is elsewhere on the sky, and the
deviation measured there is its wavefront minus the design at the pixel's field (40 nm of Z4 at 2.8 mm, 10 um
of focus if ignored; `tests/test_pipeline.py`). Below the threshold the linear model is right to < 0.1 um of
focus and 0.5 % of the decenter, and nothing is traced.

For comparison the ops-script rule (ts_externalscripts latiss_base_align, FACTS.md section 2) is also
evaluated: ``[coma_x, coma_y, focus] = [-Z8, Z7, Z4]`` nm, rotated by ``-camera_angle``, times the
published matrix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field

from .errors import InputError
from .guarded_warnings import guarded_warnings
from .instrument import PUBLISHED_SENSITIVITY_MM_PER_NM, AuxTel, HexapodState

__all__ = [
    "CorrectionConfig",
    "HexapodCorrection",
    "compute_correction",
    "ops_script_correction",
]

_AXES = HexapodState.AXES


class CorrectionConfig(BaseModel):
    """How measured Zernikes become a hexapod offset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axes: Literal["auto", "xyz", "xyzuv"] = Field(
        "auto",
        description="Axes to solve: x, y, z only; all five; or all five when the field constrains u, v.",
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
        1-sigma uncertainty of the solved offset per axis (0 for axes not solved).
    residual_rms_um : `float`
        RMS of the wavefront left unexplained by the solution, micrometres.
    ops_offset : `HexapodState`
        The ops-script rule's offset for the same measurement (x, y, z only, with its gains), for comparison.
    """

    offset: HexapodState
    solved_axes: tuple[str, ...]
    sigma: HexapodState
    residual_rms_um: float
    ops_offset: HexapodState

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
    config: CorrectionConfig | None = None,
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
    config : `CorrectionConfig`, optional
        Axes and Noll indices used; defaults when omitted.
    fields_from_pixels : `bool`
        ``fields_deg`` are where the donuts sit on the detector, through the design's mapping, and the
        deviations are against the design there (as `stamps.cut_pairs` and the estimators make them). A
        decentred M2 moves the image, so the stars seen there are elsewhere; the refinement follows them.
        False: the stars' own fields (simulations that know them).

    Returns
    -------
    correction : `HexapodCorrection`

    Raises
    ------
    InputError
        If the shapes disagree, no Noll index the correction uses was measured, or nothing is finite.
    """
    config = config or CorrectionConfig()
    noll_arr = np.asarray(noll, dtype=int)
    dev = np.atleast_2d(np.asarray(deviations_um, dtype=float))
    err = np.atleast_2d(np.asarray(errors_um, dtype=float))
    fields = np.atleast_2d(np.asarray(fields_deg, dtype=float))
    if dev.shape != err.shape or dev.shape[1] != noll_arr.size or fields.shape != (dev.shape[0], 2):
        raise InputError(
            f"shapes disagree: deviations {dev.shape}, errors {err.shape}, fields {fields.shape}, "
            f"noll {noll_arr.size}"
        )
    used = np.isin(noll_arr, config.noll)
    if not used.any():
        raise InputError(
            f"none of the measured Noll indices {noll_arr.tolist()} is used by the correction "
            f"{list(config.noll)}",
            value=noll_arr.tolist(),
            allowed=config.noll,
        )
    noll_used = noll_arr[used]
    dev, err = dev[:, used], err[:, used]
    # Errors that are missing or zero get the median error, so one bad value cannot dominate the weights.
    good_err = np.isfinite(err) & (err > 0)
    floor = np.median(err[good_err]) if good_err.any() else 0.01
    err = np.where(good_err, np.maximum(err, 1e-4), floor)
    finite = np.isfinite(dev)
    if not finite.any():
        raise InputError("no finite wavefront deviation to correct")

    # The model's Zernikes are fitted to the terms measured (a transverse-aberration fit to Z4-Z11 alone
    # differs from the Z4-Z11 of a Z4-Z22 fit: 0.2 % in coma), and only then restricted to those used.
    sensitivity = telescope.sensitivity_map(noll=noll_arr).at(fields[:, 0], fields[:, 1])
    rows = sensitivity[:, used, :].reshape(-1, 5)
    target = dev.reshape(-1)
    weights = 1.0 / err.reshape(-1)
    keep = finite.reshape(-1)
    design = rows[keep] * weights[keep, None]
    rhs = target[keep] * weights[keep]

    solution, cov, axes = _solve(design, rhs, config)
    predicted = rows @ solution
    if config.refine_above_mm is not None and np.hypot(*solution[:2]) > config.refine_above_mm:
        solution, predicted = _refine(
            solution,
            axes,
            rows,
            target,
            weights,
            keep,
            telescope,
            fields,
            (noll_arr, used),
            config,
            follow_image=fields_from_pixels,
        )
    residual = predicted[keep] - target[keep]
    offset = HexapodState.from_array(0.0 - solution)  # not -solution: unsolved axes stay +0.0, not -0.0
    sigma = HexapodState.from_array(np.sqrt(np.clip(np.diag(cov), 0, None)))
    mean_dev = np.nanmean(dev, axis=0)
    return HexapodCorrection(
        offset=offset,
        solved_axes=axes,
        sigma=sigma,
        residual_rms_um=float(np.sqrt(np.mean(residual**2))),
        ops_offset=ops_script_correction(
            noll_used, mean_dev, camera_angle_deg=telescope.camera_angle_deg, gains=config.ops_gains
        ),
    )


def _lstsq(
    design: NDArray[np.float64], rhs: NDArray[np.float64], columns: Sequence[int]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Weighted least squares on some axes: the five-axis solution and covariance (zero elsewhere)."""
    columns = list(columns)
    sub = design[:, columns]
    cov_sub = np.linalg.pinv(sub.T @ sub)
    sol_sub = cov_sub @ sub.T @ rhs
    # Scale by the reduced chi^2 when there are more equations than unknowns, so the errors are
    # honest when the quoted Zernike errors are too small.
    dof = sub.shape[0] - len(columns)
    if dof > 0:
        chi2 = float(np.sum((sub @ sol_sub - rhs) ** 2)) / dof
        cov_sub = cov_sub * max(chi2, 1.0)
    sol = np.zeros(5)
    cov = np.zeros((5, 5))
    sol[columns] = sol_sub
    cov[np.ix_(columns, columns)] = cov_sub
    return sol, cov


def _solve(
    design: NDArray[np.float64], rhs: NDArray[np.float64], config: CorrectionConfig
) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[str, ...]]:
    """Weighted least squares over five or three axes; returns solution, covariance and solved axes."""
    if config.axes in ("xyzuv", "auto"):
        sol, cov = _lstsq(design, rhs, range(5))
        uv_sigma = np.sqrt(np.diag(cov)[3:])
        pinned = np.all(uv_sigma < config.uv_sigma_max_deg)
        significant = np.hypot(*sol[3:]) > config.uv_min_significance * np.hypot(*uv_sigma)
        if config.axes == "xyzuv" or (pinned and significant):
            return sol, cov, _AXES
    sol, cov = _lstsq(design, rhs, range(3))
    return sol, cov, _AXES[:3]


def _refine(
    solution: NDArray[np.float64],
    axes: tuple[str, ...],
    rows: NDArray[np.float64],
    target: NDArray[np.float64],
    weights: NDArray[np.float64],
    keep: NDArray[np.bool_],
    telescope: AuxTel,
    fields: NDArray[np.float64],
    terms: tuple[NDArray[np.int64], NDArray[np.bool_]],
    config: CorrectionConfig,
    *,
    follow_image: bool,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Chord iterations of the misalignment against the optical model; returns it and its deviations.

    Each step traces the deviation the model predicts at the current solution and moves by the linear
    solution of what is left, so it converges to the model's own answer whatever the sensitivity's error.
    """
    columns = [_AXES.index(axis) for axis in axes]
    noll, used = terms
    points = [(float(fx), float(fy)) for fx, fy in fields]
    design = rows[keep] * weights[keep, None]

    # A donut's field comes from its pixel through the design's mapping, but a decentred M2 moves the image
    # (~538 px per mm): the star whose donut sits there is elsewhere on the sky, and its wavefront differs
    # (the measured deviation is that wavefront minus the design at the pixel's field: 40 nm of Z4 at
    # 2.8 mm). The model therefore follows the star that lands on each donut's pixel in the trial state.
    def deviations(state: NDArray[np.float64]) -> NDArray[np.float64]:
        moved = telescope.with_hexapod(telescope.hexapod + HexapodState.from_array(state))
        out = []
        for fx, fy in points:
            star = np.array([fx, fy])
            if follow_image:
                # One step back along the image's motion (nearly uniform over the chip: enough).
                landed = telescope.pixel_to_field(*moved.chief_ray_pixel(fx, fy))
                seen = telescope.pixel_to_field(*telescope.chief_ray_pixel(fx, fy))
                star = star - (np.array(landed, dtype=float) - np.array(seen, dtype=float))
            wavefront = moved.zernikes(float(star[0]), float(star[1]), noll=noll)
            out.append((wavefront - telescope.zernikes(fx, fy, noll=noll))[used])
        return np.concatenate(out)

    linear = solution
    try:
        # batoid warns (empty means) on the way to a state whose rays all miss the detector.
        with guarded_warnings(ignore=(RuntimeWarning,)):
            for _ in range(config.refine_max_steps):
                predicted = deviations(solution)
                step, _ = _lstsq(design, (target - predicted)[keep] * weights[keep], columns)
                solution = solution + step
                if np.max(np.abs(step)) < 1e-4:  # 0.1 um: the model's own answer, far below any error
                    break
    except InputError:
        # A measurement that implies M2 centimetres away is beyond the model: the linear answer stands
        # (and whoever applies it limits the step).
        return linear, rows @ linear
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
    missing = {4, 7, 8} - set(noll_list)
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
