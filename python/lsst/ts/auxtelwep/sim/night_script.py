"""The observing script of a simulated wavefront night, and the ops script's rule as a baseline.

`NightScript` drives a night the way ts_externalscripts ``latiss_base_align`` does, one triplet at a time:

1. ATAOS ``offset z=+dz`` (M2 toward M1), take the intra-focal image;
2. ATAOS ``offset z=-(2 dz + extra_focal_offset)``, take the extra-focal image;
3. ATAOS ``offset z=+(dz + extra_focal_offset)`` (back in focus), take the in-focus image;
4. wait for AuxTelWEP's result for the triplet's ``groupId`` (``wavefrontError`` or
   ``rejectedWavefrontError``) and, in closed loop, for its correction to reach ATAOS.

The script never computes a correction: AuxTelWEP does, and applies it through ATAOS ``offset`` when its
closed loop runs. What the script records per triplet (`TripletOutcome`) comes from the CSC's events plus
the simulation's truth (`~lsst.ts.auxtelwep.sim.observatory.SimulatedTelescope`).

Convergence follows the ops script (`ConvergenceRule`): a correction with ``|z| < 0.004 mm`` and
``sqrt(x^2 + y^2) < 0.2 mm`` ends its loop, so the iteration that *measures* a small enough correction is
the one that counts. `ops_rule_run` plays the ops script's own loop (published matrix, gains 0.5/0.5/0.9,
the "large defocus" rule, at most 5 iterations) on noise-free ray-traced Zernikes: the number of iterations
the ops rule would need from the same misalignment, if its measurements were perfect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..correction import ops_script_correction
from ..errors import InputError
from ..instrument import EXTRA_FOCUS_Z_MM, INTRA_FOCUS_Z_MM, AuxTel, HexapodState, Role
from ..sal import Domain, Remote, State
from .observatory import SimulatedATCamera, SimulatedTelescope
from .optics import true_zernikes

__all__ = [
    "ConvergenceRule",
    "NightScript",
    "NightScriptConfig",
    "OpsRuleRun",
    "TripletOutcome",
    "converged_iteration",
    "ops_rule_run",
]

_log = logging.getLogger(__name__)

_CSC_EVENTS = (
    "summaryState",
    "wavefrontError",
    "rejectedWavefrontError",
    "hexapodCorrection",
    "wepDuration",
    "closedLoopState",
    "donutDetection",
)
#: closedLoopState values (closed_loop.ClosedLoopState) that end the wait for a correction.
_LOOP_WAITING_IMAGE, _LOOP_IDLE, _LOOP_ERROR = 2, 1, 6


@dataclasses.dataclass(frozen=True)
class ConvergenceRule:
    """The ops script's stopping rule on a hexapod correction (or a residual misalignment).

    Attributes
    ----------
    focus_mm : `float`
        Largest ``|z|``, mm.
    decenter_mm : `float`
        Largest ``sqrt(x^2 + y^2)``, mm.
    """

    focus_mm: float = 0.004
    decenter_mm: float = 0.2

    def met(self, state: HexapodState) -> bool:
        """True when ``state`` (mm) is inside both limits.

        Parameters
        ----------
        state : `HexapodState`
            A correction or residual misalignment; only x, y and z are tested.
        """
        return abs(state.z) < self.focus_mm and math.hypot(state.x, state.y) < self.decenter_mm


@dataclasses.dataclass(frozen=True)
class NightScriptConfig:
    """Options of `NightScript`.

    Attributes
    ----------
    n_triplets : `int`
        Triplets to take (>= 1).
    dz_mm : `float`
        Defocus of the intra-focal image, mm.
    extra_focal_offset_mm : `float`
        Extra defocus of the extra-focal image, mm (the images then have the same size).
    closed_loop : `bool`
        Put AuxTelWEP in closed loop (``startClosedLoop``) and wait for each correction to be applied.
    stop_when_converged : `bool`
        Stop after the first triplet whose correction meets ``rule``.
    rule : `ConvergenceRule`
    override : `str`
        Configuration override for AuxTelWEP's ``start`` when it is in STANDBY.
    state_timeout_s, command_timeout_s : `float`
        Time limits of AuxTelWEP's state commands (configuration starts worker processes) and of the ATAOS
        offsets and ``startClosedLoop``, s.
    result_timeout_s, apply_timeout_s : `float`
        Time from the in-focus image to AuxTelWEP's result, and from the result to the correction reaching
        ATAOS, s.
    group_prefix : `str`
        ``groupId`` of triplet k is ``<group_prefix>-<k:03d>`` (no ``:``).
    csc_identity : `str`
        Identity of AuxTelWEP's commands (``name[:index]``): how its ATAOS offsets are recognised.
    """

    n_triplets: int = 4
    dz_mm: float = INTRA_FOCUS_Z_MM
    extra_focal_offset_mm: float = -EXTRA_FOCUS_Z_MM - INTRA_FOCUS_Z_MM
    closed_loop: bool = True
    stop_when_converged: bool = False
    rule: ConvergenceRule = ConvergenceRule()
    override: str = ""
    state_timeout_s: float = 120.0
    command_timeout_s: float = 30.0
    result_timeout_s: float = 300.0
    apply_timeout_s: float = 60.0
    group_prefix: str = "wep"
    csc_identity: str = "AuxTelWEP"

    def __post_init__(self) -> None:
        if self.n_triplets < 1 or not self.dz_mm > 0 or ":" in self.group_prefix:
            raise InputError(
                f"NightScriptConfig needs n_triplets >= 1, dz_mm > 0 and no ':' in group_prefix; got "
                f"{self.n_triplets}, {self.dz_mm}, {self.group_prefix!r}",
                value=(self.n_triplets, self.dz_mm, self.group_prefix),
            )


@dataclasses.dataclass(frozen=True)
class TripletOutcome:
    """What one triplet gave: AuxTelWEP's answer and the simulation's truth.

    Attributes
    ----------
    index, group_id, obsids : `int`, `str`, `tuple` of `str`
        1-based triplet number, ``groupId``, intra/extra/in-focus OBSIDs.
    hexapod_before, hexapod_after : `HexapodState`
        True in-focus M2 misalignment before the triplet and after its correction (mm, deg).
    noll : `tuple` of `int`
        Noll indices of ``zernikes_um`` (empty when rejected).
    zernikes_um, zernikes_err_um : `tuple` of `float`
        ``wavefrontError``: in-focus deviation and its error, micrometres.
    true_zernikes_um : `tuple` of `float`
        Truth at the same Noll indices: mean over the on-chip stars of the intra image (``ta`` kind).
    donut_count, reduced_chi2, algorithm : `int`, `float`, `str`
        From ``wavefrontError``.
    correction, solved_axes : `HexapodState` or None, `str`
        ``hexapodCorrection`` for the group as AuxTelWEP computed it (before the closed loop's gains and
        limits; ``applied`` says what was sent).
    camera_angle_deg : `float`
        ``hexapodCorrection.cameraAngle``: the camera angle AuxTelWEP computed it in (NaN: unknown).
    applied : `HexapodState`
        Sum of the ATAOS offsets AuxTelWEP sent during this triplet (what really moved M2).
    rejected_reason : `str`
        ``rejectedWavefrontError.reason`` ('' when accepted).
    wep_time_s : `float`
        ``wepDuration.calcTime`` (NaN when not received).
    exposures_s, wait_s, total_s : `float`
        Wall time of the three exposures (offsets included), of the wait for the result and correction,
        and of the whole triplet, seconds.
    """

    index: int
    group_id: str
    obsids: tuple[str, str, str]
    hexapod_before: HexapodState
    hexapod_after: HexapodState
    noll: tuple[int, ...]
    zernikes_um: tuple[float, ...]
    zernikes_err_um: tuple[float, ...]
    true_zernikes_um: tuple[float, ...]
    donut_count: int
    reduced_chi2: float
    algorithm: str
    correction: HexapodState | None
    solved_axes: str
    camera_angle_deg: float
    applied: HexapodState
    rejected_reason: str
    wep_time_s: float
    exposures_s: float
    wait_s: float
    total_s: float

    def zernike_nm(self, j: int) -> float:
        """Measured Noll ``j`` in nm (NaN when not measured).

        Parameters
        ----------
        j : `int`
            Noll index.
        """
        return 1000.0 * self.zernikes_um[self.noll.index(j)] if j in self.noll else math.nan

    def true_zernike_nm(self, j: int) -> float:
        """True Noll ``j`` in nm (NaN when not measured).

        Parameters
        ----------
        j : `int`
            Noll index.
        """
        return 1000.0 * self.true_zernikes_um[self.noll.index(j)] if j in self.noll else math.nan

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (hexapod states as ``{x, y, z, u, v}``)."""
        return dataclasses.asdict(self)


def converged_iteration(outcomes: Sequence[TripletOutcome], rule: ConvergenceRule) -> int | None:
    """1-based index of the first triplet whose computed correction meets ``rule`` (None if none).

    Parameters
    ----------
    outcomes : sequence of `TripletOutcome`
        The triplets, in the order taken.
    rule : `ConvergenceRule`
        Limits the correction must be inside; rejected triplets and triplets without a correction never meet
        it.
    """
    for outcome in outcomes:
        if outcome.correction is not None and not outcome.rejected_reason and rule.met(outcome.correction):
            return outcome.index
    return None


@dataclasses.dataclass(frozen=True)
class OpsRuleRun:
    """The ops script's loop played on noise-free Zernikes.

    Attributes
    ----------
    iterations : `int` or None
        1-based iteration whose correction met the rule (None: not within ``max_iter``).
    path : `tuple` of `HexapodState`
        Misalignment at the start of each iteration (mm).
    corrections : `tuple` of `HexapodState`
        Offset the rule computed at each iteration (mm).
    """

    iterations: int | None
    path: tuple[HexapodState, ...]
    corrections: tuple[HexapodState, ...]


def ops_rule_run(
    initial: HexapodState,
    *,
    camera_angle_deg: float = 0.0,
    fields_deg: Sequence[tuple[float, float]] = ((0.0, 0.0),),
    max_iter: int = 5,
    large_defocus_mm: float = 0.12,
    gains: Sequence[float] = (0.5, 0.5, 0.9),
    rule: ConvergenceRule | None = None,
) -> OpsRuleRun:
    """Iterate the ops script's rule from ``initial`` with perfect measurements.

    Each iteration measures the true in-focus deviation (batoid ``ta`` Zernikes, mean over ``fields_deg``),
    computes ``correction.ops_script_correction`` and, as latiss_base_align does: stops if it meets
    ``rule`` (that iteration counts); applies ``+large_defocus_mm`` in z alone if ``|z|`` exceeds it
    (whatever the sign, the script's known defect); else applies x, y, z.

    Parameters
    ----------
    initial : `HexapodState`
        Misalignment, mm (u, v are kept and never corrected by the rule).
    camera_angle_deg : `float`
        Camera angle (instrument.py convention).
    fields_deg : sequence of (x, y)
        Field angles (deg) whose mean deviation is the measurement.
    max_iter : `int`
        Iterations allowed (ops default 5).
    large_defocus_mm : `float`
        The script's ``large_defocus``.
    gains : sequence of 3 `float`
        Gains on x, y, z.
    rule : `ConvergenceRule`, optional
        Default `ConvergenceRule()`.
    """
    rule = rule or ConvergenceRule()
    noll = (4, 7, 8)
    state = initial
    path: list[HexapodState] = []
    corrections: list[HexapodState] = []
    for iteration in range(1, max_iter + 1):
        path.append(state)
        telescope = AuxTel(hexapod=state).with_camera_angle(camera_angle_deg)
        measured = np.mean([true_zernikes(telescope, fx, fy, noll=noll) for fx, fy in fields_deg], axis=0)
        step = ops_script_correction(noll, measured, camera_angle_deg=camera_angle_deg, gains=gains)
        corrections.append(step)
        if rule.met(step):
            return OpsRuleRun(iteration, tuple(path), tuple(corrections))
        if abs(step.z) > large_defocus_mm:
            step = HexapodState(z=large_defocus_mm)
        state = state + step
    return OpsRuleRun(None, tuple(path), tuple(corrections))


class NightScript:
    """Drive AuxTelWEP and the simulated observatory through a night of triplets (module docstring).

    Parameters
    ----------
    domain : `~lsst.ts.auxtelwep.sal.Domain`
        The script's domain (its identity is on the commands it sends).
    camera : `~lsst.ts.auxtelwep.sim.observatory.SimulatedATCamera`
        Camera in this process (cameras have no commands in our interface subset).
    telescope : `~lsst.ts.auxtelwep.sim.observatory.SimulatedTelescope`
        The truth, read for the outcomes only.
    config : `NightScriptConfig`
    on_triplet : callable, optional
        Called with each `TripletOutcome` as soon as it is complete (progress display).

    Notes
    -----
    Use as ``async with NightScript(...) as script: outcomes = await script.run()``.
    """

    def __init__(
        self,
        domain: Domain,
        camera: SimulatedATCamera,
        telescope: SimulatedTelescope,
        *,
        config: NightScriptConfig,
        on_triplet: Callable[[TripletOutcome], None] | None = None,
    ) -> None:
        self.domain = domain
        self.camera = camera
        self.telescope = telescope
        self.config = config
        self.on_triplet = on_triplet
        self.outcomes: list[TripletOutcome] = []
        self.ataos = Remote(domain, "ATAOS", include=["summaryState", "hexapodCorrectionCompleted"])
        self.wep = Remote(domain, "AuxTelWEP", include=list(_CSC_EVENTS))
        self._by_group: dict[str, dict[str, Any]] = {}
        self._loop_states: list[tuple[float, int]] = []
        self._changed = asyncio.Event()
        for name in ("wavefrontError", "rejectedWavefrontError", "hexapodCorrection", "wepDuration"):
            getattr(self.wep, f"evt_{name}").callback = self._make_group_callback(name)
        self.wep.evt_closedLoopState.callback = self._on_loop_state

    def _make_group_callback(self, name: str) -> Callable[[Any], None]:
        def callback(data: Any) -> None:
            entry = self._by_group.setdefault(data.groupId, {})
            entry.setdefault(name, []).append((time.monotonic(), data))
            self._changed.set()

        return callback

    def _on_loop_state(self, data: Any) -> None:
        self._loop_states.append((time.monotonic(), int(data.state)))
        self._changed.set()

    async def __aenter__(self) -> NightScript:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the script's remotes (not the domain)."""
        await self.wep.close()
        await self.ataos.close()

    # --- AuxTelWEP state -------------------------------------------------------------------------------

    async def prepare_csc(self) -> None:
        """Bring AuxTelWEP to ENABLED (from STANDBY, DISABLED or FAULT) and start its closed loop if asked."""
        cfg = self.config
        state = State((await self.wep.evt_summaryState.aget(timeout=cfg.state_timeout_s)).summaryState)
        steps = {
            State.FAULT: ["standby", "start", "enable"],
            State.STANDBY: ["start", "enable"],
            State.DISABLED: ["enable"],
            State.ENABLED: [],
        }
        if state not in steps:
            raise InputError(f"AuxTelWEP is {state!r}; cannot bring it to ENABLED", value=state.name)
        for name in steps[state]:
            kwargs = {"configurationOverride": cfg.override} if name == "start" else {}
            _log.info("AuxTelWEP: %s %s", name, kwargs or "")
            await getattr(self.wep, f"cmd_{name}").set_start(timeout=cfg.state_timeout_s, **kwargs)
        if cfg.closed_loop:
            await self.wep.cmd_startClosedLoop.start(timeout=cfg.command_timeout_s)

    async def stop_csc_loop(self) -> None:
        """Send ``stopClosedLoop`` (errors are logged, not raised: used while shutting down)."""
        try:
            await self.wep.cmd_stopClosedLoop.start(timeout=self.config.command_timeout_s)
        except Exception as exc:
            _log.warning("stopClosedLoop failed: %s", exc)

    # --- the night -------------------------------------------------------------------------------------

    async def run(self) -> list[TripletOutcome]:
        """Take the configured triplets (or fewer, if converged and ``stop_when_converged``)."""
        for k in range(1, self.config.n_triplets + 1):
            outcome = await self.run_triplet(k)
            self.outcomes.append(outcome)
            if self.on_triplet is not None:
                self.on_triplet(outcome)
            if self.config.stop_when_converged and converged_iteration([outcome], self.config.rule):
                break
        return self.outcomes

    async def _offset_z(self, dz: float) -> None:
        await self.ataos.cmd_offset.set_start(z=dz, timeout=self.config.command_timeout_s)

    async def run_triplet(self, index: int) -> TripletOutcome:
        """Take one triplet and wait for AuxTelWEP's answer; return the outcome.

        Parameters
        ----------
        index : `int`
            1-based triplet number; the group id is ``<group_prefix>-<index:03d>``.
        """
        cfg = self.config
        group_id = f"{cfg.group_prefix}-{index:03d}"
        t0 = time.monotonic()
        before = self.telescope.hexapod
        dz, extra = cfg.dz_mm, cfg.extra_focal_offset_mm
        await self._offset_z(dz)
        intra = await self.camera.take_image(Role.INTRA, group_id=group_id)
        await self._offset_z(-(2 * dz + extra))
        extra_image = await self.camera.take_image(Role.EXTRA, group_id=group_id)
        await self._offset_z(dz + extra)
        infocus = await self.camera.take_image(Role.INFOCUS, group_id=group_id)
        t_images = time.monotonic()
        entry = await self._wait_answer(group_id, since_s=t_images)
        t_end = time.monotonic()
        return self._outcome(
            index, group_id, (intra.obsid, extra_image.obsid, infocus.obsid), before, entry, intra.truth,
            t_images=t_images, t0=t0, t_end=t_end,
        )  # fmt: skip

    async def _wait_answer(self, group_id: str, *, since_s: float) -> dict[str, Any]:
        """Wait for the group's result and, in closed loop, for its correction to be applied."""
        cfg = self.config
        deadline = since_s + cfg.result_timeout_s
        result_at: float | None = None
        while True:
            entry = self._by_group.get(group_id, {})
            if "rejectedWavefrontError" in entry:
                return entry
            if "wavefrontError" in entry:
                if result_at is None:
                    result_at = entry["wavefrontError"][0][0]
                    deadline = time.monotonic() + cfg.apply_timeout_s
                if not cfg.closed_loop or self._correction_done(entry, result_at):
                    return entry
            state = self.wep.evt_summaryState.get()
            if state is not None and state.summaryState != State.ENABLED:
                _log.warning("group %s: AuxTelWEP left ENABLED (%r)", group_id, State(state.summaryState))
                return {**entry, "timeout": f"AuxTelWEP is {State(state.summaryState).name}, not ENABLED"}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                what = "a result" if result_at is None else "its correction to be applied"
                _log.warning("group %s: no answer in time (waited for %s)", group_id, what)
                entry = dict(entry)
                if result_at is None:
                    entry["timeout"] = f"no result within {cfg.result_timeout_s} s"
                return entry
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.5))
            except TimeoutError:
                pass

    def _correction_done(self, entry: dict[str, Any], result_at: float) -> bool:
        """True once the group's correction was applied, or the loop will not apply it: back to waiting
        for images after the result (refused, or not significant), or stopped (IDLE, ERROR)."""
        corrections = entry.get("hexapodCorrection", [])
        if any(data.applied for _, data in corrections):
            return True
        if self._loop_states and self._loop_states[-1][1] in (_LOOP_IDLE, _LOOP_ERROR):
            return True
        later = [state for t, state in self._loop_states if t >= result_at]
        return bool(corrections) and bool(later) and later[-1] == _LOOP_WAITING_IMAGE

    def _outcome(
        self,
        index: int,
        group_id: str,
        obsids: tuple[str, str, str],
        before: HexapodState,
        entry: dict[str, Any],
        truth: Any,
        *,
        t0: float,
        t_images: float,
        t_end: float,
    ) -> TripletOutcome:
        wfe = entry["wavefrontError"][-1][1] if "wavefrontError" in entry else None
        # The correction as computed (applied=false), not the step sent after the loop's gains and limits.
        samples = [data for _, data in entry.get("hexapodCorrection", [])]
        computed = [data for data in samples if not data.applied]
        corr = (computed or samples or [None])[0]
        rejected = entry["rejectedWavefrontError"][-1][1].reason if "rejectedWavefrontError" in entry else ""
        if not rejected and wfe is None:
            rejected = entry.get("timeout", "no result")
        duration = entry["wepDuration"][-1][1].calcTime if "wepDuration" in entry else math.nan
        noll: tuple[int, ...] = ()
        values: tuple[float, ...] = ()
        errors: tuple[float, ...] = ()
        if wfe is not None:
            n = int(wfe.numZernikes)
            noll = tuple(int(j) for j in wfe.nollZernikeIndices[:n])
            values = tuple(float(v) for v in wfe.nollZernikeValues[:n])
            errors = tuple(float(v) for v in wfe.nollZernikeErrors[:n])
        applied = HexapodState()
        for move in self.telescope.moves_by(self.config.csc_identity, since_s=t_images):
            applied = applied + move.delta
        return TripletOutcome(
            index=index,
            group_id=group_id,
            obsids=obsids,
            hexapod_before=before,
            hexapod_after=self.telescope.hexapod,
            noll=noll,
            zernikes_um=values,
            zernikes_err_um=errors,
            true_zernikes_um=_true_mean(truth, noll),
            donut_count=int(wfe.donutCount) if wfe is not None else 0,
            reduced_chi2=float(wfe.reducedChi2) if wfe is not None else math.nan,
            algorithm=str(wfe.algorithm) if wfe is not None else "",
            correction=None if corr is None else HexapodState(corr.x, corr.y, corr.z, corr.u, corr.v),
            solved_axes=str(corr.solvedAxes) if corr is not None else "",
            camera_angle_deg=float(corr.cameraAngle) if corr is not None else math.nan,
            applied=applied,
            rejected_reason=rejected,
            wep_time_s=float(duration),
            exposures_s=t_images - t0,
            wait_s=t_end - t_images,
            total_s=t_end - t0,
        )


def _true_mean(truth: Any, noll: Sequence[int]) -> tuple[float, ...]:
    """Mean true deviation (``ta``) over the on-chip stars of an image's truth, at ``noll``."""
    if not noll:
        return ()
    index = [truth.noll.index(j) if j in truth.noll else -1 for j in noll]
    rows = [s.zernikes_um["ta"] for s in truth.stars if s.on_chip] or [
        s.zernikes_um["ta"] for s in truth.stars
    ]
    if not rows:
        return tuple(math.nan for _ in noll)
    mean = np.mean(np.asarray(rows, dtype=float), axis=0)
    return tuple(float(mean[i]) if i >= 0 else math.nan for i in index)
