"""The closed loop: its state machine (the ``closedLoopState`` event) and the correction step rules.

A step turns a hexapod correction (the offsets that, applied to M2, null the measured wavefront deviation)
into the offset sent to ATAOS::

    step = gains * correction          (axes not solved by the pipeline are zero)
    step = clip(step, -max_step, +max_step)
    step = clip(total + step, -max_total, +max_total) - total
    x, y, u, v of step = the same axes of gains * correction, times the smallest ratio the clips left
    among them (decenter and tilt balance each other's coma: the lateral step keeps its direction)

where ``total`` is the sum already sent in the current epoch (since the CSC was enabled; restarting the loop
does not reset it), so the telescope never strays more than ``max_total`` from where the CSC found it (an axis
already beyond, because the limit was lowered, may only move back). Units: mm for x, y, z; degrees for u, v.

The loop sends a correction only if it is significant as a whole (`correction_significance`): judged axis by
axis, the verdict would depend on the frame of the axes, and with decenter and tilt nearly degenerate the
tilt could go without the decenter that balances it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from .config import AxisValues
from .errors import InputError, check_type
from .instrument import HexapodState
from .significance import gaussian_sigmas

__all__ = [
    "ClosedLoop",
    "ClosedLoopState",
    "CorrectionStep",
    "IllegalLoopTransitionError",
    "correction_significance",
    "plan_step",
]


class ClosedLoopState(enum.IntEnum):
    """State of the closed loop; the values are those of the ``closedLoopState`` event."""

    IDLE = 1  # the loop is not running (runWEP and issueCorrection still work)
    WAITING_IMAGE = 2  # running: waiting for the images of the next triplet
    PROCESSING = 3  # running: a triplet is in the pipeline
    WAITING_APPLY = 4  # running: a correction is ready and waits for issueCorrection (auto_apply off)
    APPLYING_CORRECTION = 5  # running: the ATAOS offset command is in flight
    ERROR = 6  # the last step failed (ATAOS refused or timed out); startClosedLoop or stopClosedLoop


_S = ClosedLoopState
_ALLOWED: dict[ClosedLoopState, frozenset[ClosedLoopState]] = {
    _S.IDLE: frozenset({_S.WAITING_IMAGE}),
    _S.WAITING_IMAGE: frozenset({_S.PROCESSING, _S.IDLE}),
    _S.PROCESSING: frozenset({_S.WAITING_APPLY, _S.APPLYING_CORRECTION, _S.WAITING_IMAGE, _S.IDLE, _S.ERROR}),
    _S.WAITING_APPLY: frozenset({_S.APPLYING_CORRECTION, _S.PROCESSING, _S.IDLE}),
    _S.APPLYING_CORRECTION: frozenset({_S.WAITING_IMAGE, _S.ERROR, _S.IDLE}),
    _S.ERROR: frozenset({_S.WAITING_IMAGE, _S.IDLE}),
}

_WHY: dict[tuple[ClosedLoopState, ClosedLoopState], str] = {
    (_S.IDLE, _S.PROCESSING): "the loop is not running; startClosedLoop first (runWEP works without it)",
    (_S.IDLE, _S.APPLYING_CORRECTION): "the loop is not running; issueCorrection applies outside the loop "
    "without changing its state",
    (_S.IDLE, _S.WAITING_APPLY): "the loop is not running, so no correction waits for it",
    (_S.IDLE, _S.ERROR): "the loop is not running, so it cannot fail",
    (_S.WAITING_IMAGE, _S.APPLYING_CORRECTION): "no triplet was processed since the last step",
    (_S.WAITING_IMAGE, _S.WAITING_APPLY): "no triplet was processed since the last step",
    (_S.WAITING_IMAGE, _S.ERROR): "nothing is in flight that could fail",
    (_S.PROCESSING, _S.PROCESSING): "one triplet at a time: the current one must finish first",
    (_S.WAITING_APPLY, _S.WAITING_IMAGE): "a correction is waiting: issue it or stop the loop",
    (_S.WAITING_APPLY, _S.ERROR): "nothing is in flight that could fail",
    (_S.APPLYING_CORRECTION, _S.PROCESSING): "the offset is still in flight; wait for its ack",
    (_S.APPLYING_CORRECTION, _S.WAITING_APPLY): "the offset is already in flight",
    (_S.APPLYING_CORRECTION, _S.APPLYING_CORRECTION): "the offset is already in flight; never send it twice",
    (_S.ERROR, _S.PROCESSING): "the loop stopped on an error; startClosedLoop to resume",
    (_S.ERROR, _S.WAITING_APPLY): "the loop stopped on an error; startClosedLoop to resume",
    (_S.ERROR, _S.APPLYING_CORRECTION): "the loop stopped on an error; startClosedLoop to resume",
}


class IllegalLoopTransitionError(InputError):
    """A move of the closed loop that its state machine does not allow."""


class ClosedLoop:
    """The closed loop's state, with checked moves (``state`` starts IDLE)."""

    def __init__(self) -> None:
        self.state = ClosedLoopState.IDLE

    @property
    def running(self) -> bool:
        """True unless IDLE."""
        return self.state is not ClosedLoopState.IDLE

    def can_move(self, new: ClosedLoopState) -> bool:
        """Return True if `move` to ``new`` would not raise (staying put is allowed unless it means doing
        the same thing twice, like processing or sending while already doing so).

        Parameters
        ----------
        new : `ClosedLoopState`
            State to go to.
        """
        return (new is self.state and (new, new) not in _WHY) or new in _ALLOWED[self.state]

    def move(self, new: ClosedLoopState) -> bool:
        """Go to ``new``; return True if the state changed.

        Parameters
        ----------
        new : `ClosedLoopState`
            State to go to.

        Raises
        ------
        IllegalLoopTransitionError
            With a message specific to the illegal move.
        """
        if self.can_move(new):
            changed = new is not self.state
            self.state = new
            return changed
        why = _WHY.get((self.state, new), "not a transition of the closed loop")
        raise IllegalLoopTransitionError(
            f"closed loop cannot go from {self.state.name} to {new.name}: {why}",
            value=new.name,
            allowed=sorted(s.name for s in _ALLOWED[self.state]),
        )


@dataclasses.dataclass(frozen=True)
class CorrectionStep:
    """The offset to send and how the rules changed it.

    Attributes
    ----------
    offset : `HexapodState`
        What to send to ATAOS (mm, mm, mm, deg, deg).
    clipped_axes : `tuple` of `str`
        Axes reduced by ``max_step`` or ``max_total``.
    message : `str`
        One line for the log ('' when nothing was clipped).
    """

    offset: HexapodState
    clipped_axes: tuple[str, ...]
    message: str


#: The axes that move the image sideways (x, y, u, v), as opposed to focus (z).
_LATERAL = np.array([axis != "z" for axis in HexapodState.AXES])


def plan_step(
    correction: HexapodState,
    *,
    gains: ArrayLike | AxisValues,
    max_step: ArrayLike | AxisValues,
    max_total: ArrayLike | AxisValues,
    total: ArrayLike | HexapodState,
    solved_axes: Sequence[str] = HexapodState.AXES,
) -> CorrectionStep:
    """Apply gains and limits to a correction (rules in the module docstring).

    Parameters
    ----------
    correction : `HexapodState`
        The full correction (mm, mm, mm, deg, deg; finite, as every `HexapodState`).
    gains, max_step, max_total, total : array-like of float, shape (5,), `config.AxisValues` or `HexapodState`
        Per axis x, y, z, u, v: gains (unitless), limits (>= 0) and the sum already sent (mm or deg).
    solved_axes : sequence of `str`
        Axes the pipeline solved; the others are not moved.

    Raises
    ------
    InputError
        If an array does not have 5 values, a value is not finite, a limit is negative or an axis name is
        unknown.
    """
    check_type("correction", correction, HexapodState)
    arrays = {}
    for name, value in (("gains", gains), ("max_step", max_step), ("max_total", max_total), ("total", total)):
        if isinstance(value, AxisValues | HexapodState):
            value = value.as_array()
        arr = np.asarray(value, dtype=float).reshape(-1)
        if arr.shape != (5,):
            raise InputError(f"{name} needs 5 values (x, y, z, u, v), got {arr.size}", value=arr)
        arrays[name] = arr
    not_finite = [name for name, arr in arrays.items() if not np.all(np.isfinite(arr))]
    if not_finite:
        raise InputError(f"{', '.join(not_finite)} not finite: nothing is sent", value=not_finite)
    if (arrays["max_step"] < 0).any() or (arrays["max_total"] < 0).any():
        raise InputError(
            "max_step and max_total must be >= 0", value=(arrays["max_step"], arrays["max_total"])
        )
    unknown = sorted(set(solved_axes) - set(HexapodState.AXES))
    if unknown:
        raise InputError(f"unknown solved axes {unknown}", value=unknown, allowed=HexapodState.AXES)
    solved = np.array([axis in solved_axes for axis in HexapodState.AXES])
    wanted = np.where(solved, correction.as_array() * arrays["gains"], 0.0)
    step = np.clip(wanted, -arrays["max_step"], arrays["max_step"])
    # Room left before the total limit; where the total is already beyond it (limits lowered since),
    # the bound is 0 on that side: such an axis may only move back.
    room_high = np.maximum(arrays["max_total"] - arrays["total"], 0.0)
    room_low = np.minimum(-arrays["max_total"] - arrays["total"], 0.0)
    step = np.clip(step, room_low, room_high)
    # Decenter and tilt act together (a tilt's coma balances a decenter's): clipping one axis more than
    # another would turn the lateral step off the line the correction is on, so x, y, u, v all shrink by
    # the factor the most limited of them needs. Focus is independent and clipped alone.
    moving = _LATERAL & (wanted != 0)
    if moving.any():
        scale = float(np.min(step[moving] / wanted[moving]))
        step = np.where(_LATERAL, wanted * scale, step)
    clipped = ~np.isclose(step, wanted, rtol=0.0, atol=1e-12)
    axes = tuple(a for a, c in zip(HexapodState.AXES, clipped, strict=True) if c)
    message = ""
    if axes:
        detail = ", ".join(
            f"{a} {w:+.4f} -> {s:+.4f}"
            for a, w, s, c in zip(HexapodState.AXES, wanted, step, clipped, strict=True)
            if c
        )
        message = f"correction clipped by max_step/max_total: {detail}"
    return CorrectionStep(offset=HexapodState.from_array(step), clipped_axes=axes, message=message)


def correction_significance(correction: HexapodState, sigma: HexapodState) -> float:
    """How far a correction is from zero given its errors, in Gaussian sigma, over its axes as a whole.

    The chi-square of the non-zero axes (value over 1-sigma error, errors taken as independent) is turned
    into the two-sided normal deviate of the same tail probability: one axis at 2 sigma gives 2.0, three
    axes at 2 sigma each 2.7, and pure noise exceeds 2.0 in 4.6 % of the cases whatever the number of axes.

    Parameters
    ----------
    correction : `HexapodState`
        The correction (offset), mm and degrees.
    sigma : `HexapodState`
        Its 1-sigma error per axis, same units (0 for an axis not solved, whose offset is 0).

    Returns
    -------
    significance : `float`
        Gaussian sigma; ``inf`` if an axis that moves has no error (0: unknown), 0 if nothing moves.
    """
    values, errors = correction.as_array(), sigma.as_array()
    moving = values != 0
    if not moving.any():
        return 0.0
    if not np.all(errors[moving] > 0):
        return math.inf
    chi2 = float(np.sum((values[moving] / errors[moving]) ** 2))
    return float(gaussian_sigmas(chi2, int(moving.sum())))
