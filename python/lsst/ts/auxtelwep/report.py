"""The report folder of a closed-loop demo night: JSON of every result, convergence and stamp figures.

Layout (``auxtelwep demo --out DIR``)::

    DIR/results.json        `DemoReport`: settings, ops-rule baseline, every triplet's outcome, summary
    DIR/summary.md          the summary for people (what converged, when, how fast)
    DIR/convergence.png     M2 misalignment left (x, y, z mm) and measured Z4/Z7/Z8 (nm) per iteration
    DIR/stamps_first.png    donut stamps of the first triplet: data, model, residual, wavefront map
    DIR/stamps_last.png     the same for the last triplet
    DIR/csc.log             the CSC process's log (written by the demo command)

Iteration ``k`` of the convergence figure is triplet ``k``: the misalignment its images saw and the Zernikes
AuxTelWEP measured from them; the last point is the misalignment left after the last correction.

Stamp panels come from `triplet_panels`, which runs the pipeline's stages on the triplet's raws again
(ISR, detection, cut-outs, then the forward-model fit with its model images kept), because the CSC's events
carry numbers, not images.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
from numpy.typing import NDArray

from .errors import AuxTelWepError, InputError
from .plots import plot_convergence, plot_stamps
from .sim.night_script import ConvergenceRule, OpsRuleRun, TripletOutcome, converged_iteration

__all__ = [
    "DemoReport",
    "DemoSummary",
    "ReportFiles",
    "StampPanels",
    "build_summary",
    "convergence_history",
    "triplet_panels",
    "write_report",
]

_log = logging.getLogger(__name__)

#: Donut pairs drawn per triplet in the stamp figures.
MAX_PAIRS_DRAWN = 2


class DemoSummary(pydantic.BaseModel):
    """The numbers a person wants from a demo night.

    ``converged_iteration`` follows the ops script: the first triplet whose correction (as AuxTelWEP computed
    it) has ``|z| < focus_mm`` and ``sqrt(x^2 + y^2) < decenter_mm``. ``corrections_to_truth`` counts the
    corrections applied before the true misalignment met the same limits.
    """

    model_config = pydantic.ConfigDict(frozen=True)
    n_triplets: int
    n_rejected: int
    converged_iteration: int | None
    corrections_to_truth: int | None
    ops_rule_iterations: int | None
    initial_misalignment_mm: tuple[float, float, float]
    final_misalignment_mm: tuple[float, float, float]
    mean_triplet_s: float
    mean_exposures_s: float
    mean_wait_s: float
    mean_wep_s: float
    wall_s: float
    focus_limit_mm: float
    decenter_limit_mm: float


class DemoReport(pydantic.BaseModel):
    """Contents of ``results.json``."""

    model_config = pydantic.ConfigDict(frozen=True)
    schema_version: int = 1
    settings: dict[str, Any]
    ops_baseline: dict[str, Any]
    triplets: list[dict[str, Any]]
    summary: DemoSummary

    @classmethod
    def read(cls, path: str | Path) -> DemoReport:
        """Read ``results.json`` (or the folder holding it).

        Parameters
        ----------
        path : `str` or `pathlib.Path`
            The ``results.json`` file, or the report folder holding it.

        Raises
        ------
        InputError
            If the file cannot be read or does not validate.
        """
        path = Path(path)
        path = path / "results.json" if path.is_dir() else path
        try:
            return cls.model_validate_json(path.read_text())
        except (OSError, pydantic.ValidationError) as exc:
            raise InputError(f"{path}: not a readable demo report ({exc})", value=str(path)) from exc


@dataclasses.dataclass(frozen=True)
class StampPanels:
    """What one stamp figure shows.

    Attributes
    ----------
    stamps : `list` of `dict`
        For `plots.plot_stamps`: ``data``, optional ``model`` (same shape), ``label``.
    noll : `tuple` of `int`
        Noll indices of ``coefs_um`` (empty: no wavefront map).
    coefs_um : `tuple` of `float`
        Wavefront to draw as a map, micrometres.
    note : `str`
        Said in the title (e.g. why there is no model).
    """

    stamps: list[dict[str, Any]]
    noll: tuple[int, ...] = ()
    coefs_um: tuple[float, ...] = ()
    note: str = ""


@dataclasses.dataclass(frozen=True)
class ReportFiles:
    """Paths of what `write_report` wrote (None: not written)."""

    results: Path
    summary: Path
    convergence: Path
    stamps_first: Path | None
    stamps_last: Path | None


def _xyz(state: Any) -> tuple[float, float, float]:
    return (float(state.x), float(state.y), float(state.z))


def build_summary(
    outcomes: Sequence[TripletOutcome],
    *,
    initial: Any,
    rule: ConvergenceRule,
    ops_run: OpsRuleRun,
    wall_s: float,
) -> DemoSummary:
    """Summarise the outcomes of a night (see `DemoSummary`).

    Parameters
    ----------
    outcomes : sequence of `TripletOutcome`
        The triplets of the night, in order.
    initial : `HexapodState`
        The initial M2 misalignment.
    rule : `ConvergenceRule`
        The ops script's stopping rule.
    ops_run : `OpsRuleRun`
        The ops rule's run from ``initial`` with perfect measurements (its ``iterations``).
    wall_s : `float`
        Wall time of the whole demo, seconds.

    Raises
    ------
    InputError
        If there are no outcomes.
    """
    if not outcomes:
        raise InputError("no triplet was taken: nothing to summarise", value=0)
    to_truth = 0 if rule.met(outcomes[0].hexapod_before) else None
    if to_truth is None:
        met = [n for n, o in enumerate(outcomes, start=1) if rule.met(o.hexapod_after)]
        to_truth = met[0] if met else None

    def mean(values: Sequence[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        return float(np.mean(finite)) if finite else math.nan

    return DemoSummary(
        n_triplets=len(outcomes),
        n_rejected=sum(bool(o.rejected_reason) for o in outcomes),
        converged_iteration=converged_iteration(outcomes, rule),
        corrections_to_truth=to_truth,
        ops_rule_iterations=ops_run.iterations,
        initial_misalignment_mm=_xyz(initial),
        final_misalignment_mm=_xyz(outcomes[-1].hexapod_after),
        mean_triplet_s=mean([o.total_s for o in outcomes]),
        mean_exposures_s=mean([o.exposures_s for o in outcomes]),
        mean_wait_s=mean([o.wait_s for o in outcomes]),
        mean_wep_s=mean([o.wep_time_s for o in outcomes]),
        wall_s=float(wall_s),
        focus_limit_mm=rule.focus_mm,
        decenter_limit_mm=rule.decenter_mm,
    )


def convergence_history(outcomes: Sequence[TripletOutcome]) -> list[dict[str, float]]:
    """Entries for `plots.plot_convergence`: one per triplet, then the misalignment left at the end.

    Each entry has ``x``, ``y``, ``z`` (true misalignment seen by the triplet, mm) and ``z4``, ``z7``,
    ``z8`` (measured, nm; NaN when rejected, and in the last entry).

    Parameters
    ----------
    outcomes : sequence of `TripletOutcome`
        The triplets of the night, in order.
    """
    history = []
    for outcome in outcomes:
        x, y, z = _xyz(outcome.hexapod_before)
        entry = {"x": x, "y": y, "z": z}
        entry.update({f"z{j}": outcome.zernike_nm(j) for j in (4, 7, 8)})
        history.append(entry)
    if outcomes:
        x, y, z = _xyz(outcomes[-1].hexapod_after)
        history.append({"x": x, "y": y, "z": z, "z4": math.nan, "z7": math.nan, "z8": math.nan})
    return history


def write_report(
    out_dir: str | Path,
    report: DemoReport,
    outcomes: Sequence[TripletOutcome],
    *,
    first: StampPanels | None = None,
    last: StampPanels | None = None,
) -> ReportFiles:
    """Write the report folder (module docstring); return the paths.

    Parameters
    ----------
    out_dir : `str` or `pathlib.Path`
        Folder (created).
    report : `DemoReport`
    outcomes : sequence of `TripletOutcome`
        The triplets (for the figures).
    first, last : `StampPanels`, optional
        Stamp figures of the first and last triplet (skipped when None).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    results.write_text(report.model_dump_json(indent=1))
    summary = out / "summary.md"
    summary.write_text(summary_markdown(report))
    s = report.summary
    verdict = f"converged at triplet {s.converged_iteration}" if s.converged_iteration else "not converged"
    title = (
        f"closed loop from x, y, z = {_fmt3(s.initial_misalignment_mm)} mm: {verdict} "
        f"(ops rule: {s.ops_rule_iterations or 'more than 5'})\n"
        "point k: what triplet k+1 saw; last point: after the last correction"
    )
    convergence = plot_convergence(convergence_history(outcomes), out / "convergence.png", title=title)
    paths = []
    for name, panels, outcome in (
        ("stamps_first.png", first, outcomes[0] if outcomes else None),
        ("stamps_last.png", last, outcomes[-1] if outcomes else None),
    ):
        if panels is None or outcome is None or not panels.stamps:
            paths.append(None)
            continue
        head = f"triplet {outcome.index} ({outcome.group_id})"
        paths.append(
            plot_stamps(
                panels.stamps,
                out / name,
                noll=panels.noll or None,
                coefs_um=panels.coefs_um or None,
                title=f"{head}: {panels.note}" if panels.note else head,
            )
        )
    return ReportFiles(results, summary, convergence, paths[0], paths[1])


def summary_markdown(report: DemoReport) -> str:
    """The summary for people, as Markdown.

    Parameters
    ----------
    report : `DemoReport`
        The report (``summary`` and ``triplets``).
    """
    s = report.summary
    lines = [
        "# AuxTelWEP closed-loop demo",
        "",
        f"- initial M2 misalignment: x, y, z {_fmt3(s.initial_misalignment_mm)} mm",
        f"- converged (ops script's rule on the computed correction: |z| < {s.focus_limit_mm} mm, "
        f"decenter < {s.decenter_limit_mm} mm) at iteration **{s.converged_iteration or 'never'}**; "
        f"the ops rule with perfect measurements needs **{s.ops_rule_iterations or 'more than 5'}**",
        f"- corrections until the TRUE misalignment met the same limits: {_maybe(s.corrections_to_truth)}",
        f"- misalignment left: x, y, z {_fmt3(s.final_misalignment_mm)} mm",
        f"- per triplet: {s.mean_triplet_s:.1f} s ({s.mean_exposures_s:.1f} s for the three exposures, "
        f"{s.mean_wait_s:.1f} s waiting for AuxTelWEP, of which {s.mean_wep_s:.1f} s processing)",
        f"- {s.n_triplets} triplets, {s.n_rejected} rejected; whole demo {s.wall_s:.0f} s",
        "",
        "| # | group | Z4 nm | Z7 nm | Z8 nm | correction x, y, z mm | applied x, y, z mm | left x, y, z mm "
        "|",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in report.triplets:
        noll, values = t["noll"], t["zernikes_um"]
        z = {j: 1000.0 * values[noll.index(j)] if j in noll else math.nan for j in (4, 7, 8)}
        corr = t["correction"]
        lines.append(
            f"| {t['index']} | {t['group_id']} | {z[4]:+.0f} | {z[7]:+.0f} | {z[8]:+.0f} | "
            f"{_triple(corr) if corr else t['rejected_reason'] or '-'} | {_triple(t['applied'])} | "
            f"{_triple(t['hexapod_after'])} |"
        )
    return "\n".join(lines) + "\n"


def _maybe(value: int | None) -> str:
    return "never" if value is None else str(value)


def _fmt3(values: Sequence[float]) -> str:
    return ", ".join(f"{v:+.4f}" for v in values)


def _triple(state: Mapping[str, float]) -> str:
    return _fmt3([state["x"], state["y"], state["z"]])


def triplet_panels(
    intra: Path,
    extra: Path,
    infocus: Path | None,
    *,
    pipeline_options: Mapping[str, Any],
    max_pairs: int = MAX_PAIRS_DRAWN,
) -> StampPanels:
    """Stamps of a triplet with the forward model's images, by running the pipeline's stages again.

    Parameters
    ----------
    intra, extra, infocus : `pathlib.Path`
        Raw files of the triplet.
    pipeline_options : mapping
        Options of `lsst.ts.auxtelwep.pipeline.PipelineConfig` (as the CSC passes them).
    max_pairs : `int`
        Donut pairs drawn (the first ones of the catalog).

    Returns
    -------
    panels : `StampPanels`
        Data, model and residual of each drawn donut, and the mean fitted wavefront. If a stage fails,
        whatever could be drawn, with the reason in ``note``.
    """
    try:  # imported here: the report folder is useful without the pipeline
        from .calibs import load_calibrations
        from .detection import detect_donuts
        from .estimation.forward import ForwardOptions, fit_pair
        from .exposure import camera_angle_from_header, read_exposure, read_raw
        from .instrument import AuxTel
        from .isr import run_isr
        from .pipeline import PipelineConfig
        from .refcat import load_refcat
        from .stamps import cut_pairs
    except ImportError as exc:
        return StampPanels([], note=f"pipeline unavailable ({exc})")
    try:
        config = PipelineConfig.model_validate(dict(pipeline_options))
        calibrations = None
        if config.apply_isr and config.calibs_dir is not None:
            calibrations = load_calibrations(config.calibs_dir, config.isr)

        def load(path: Path) -> Any:
            return (
                run_isr(read_raw(path), calibrations, config.isr) if config.apply_isr else read_exposure(path)
            )

        images = [load(p) if p is not None else None for p in (intra, extra, infocus)]
        # Detection and stamps do not depend on the angle (the aligned design is round): 0 when unknown.
        telescope = AuxTel().with_camera_angle(camera_angle_from_header(images[0].header) or 0.0)
        telescope = telescope.with_wavelength(config.wavelength_nm * 1e-9)
        refcat = load_refcat(config.refcat) if config.refcat is not None else None
        catalog = detect_donuts(
            images[0],
            images[1],
            infocus=images[2],
            refcat=refcat,
            config=config.detection,
            telescope=telescope,
        )
        pairs = cut_pairs(images[0], images[1], catalog)[:max_pairs]
    except (AuxTelWepError, pydantic.ValidationError) as exc:
        return StampPanels([], note=f"could not cut stamps: {exc}")
    stamps: list[dict[str, Any]] = []
    fitted: list[NDArray[np.float64]] = []
    noll: tuple[int, ...] = ()
    notes = []
    for pair in pairs:
        try:
            fit = fit_pair(pair, telescope=telescope, options=ForwardOptions(), keep_images=True)
        except AuxTelWepError as exc:
            fit = getattr(exc, "result", None)
            notes.append(f"donut {pair.index}: {exc}")
        models = getattr(fit, "models", None)
        for k, (label, stamp) in enumerate((("intra", pair.intra), ("extra", pair.extra))):
            panel: dict[str, Any] = {
                "data": np.where(stamp.mask, np.nan, stamp.image),
                "label": f"{label} #{pair.index}",
            }
            if models is not None:
                panel["model"] = models[k]
            stamps.append(panel)
        if fit is not None and fit.success:
            fitted.append(np.asarray(fit.zernikes_um))
            noll = tuple(fit.noll)
    coefs = tuple(float(v) for v in np.mean(fitted, axis=0)) if fitted else ()
    return StampPanels(stamps, noll if coefs else (), coefs, "; ".join(notes))
