"""The closed-loop demo night (``auxtelwep demo``) with AuxTelWEP and the simulated observatory on DDS.

What runs (all DDS peers on one isolated domain: a random ``LSST_DDS_DOMAIN_ID`` and a unique partition
prefix, unless the environment sets them)::

    this process:  SimulatedATCamera, SimulatedATOODS, SimulatedATAOS, SimulatedATHexapod
                   (sim.observatory, around one simulated M2) and the NightScript (sim.night_script)
    child process: the AuxTelWEP CSC (run_auxtelwep --configdir <out>/config), log in <out>/csc.log

The script brings AuxTelWEP to ENABLED with the demo's configuration override, starts its closed loop and
takes interleaved triplets; AuxTelWEP measures each one and sends its correction through ATAOS ``offset``,
which moves the simulated M2, so the next triplet sees what is left. The initial M2 misalignment is random
(seeded; decenter up to 0.5 mm, focus up to 0.15 mm): with ``--draw hard`` (default) the first draw that the
ops script's rule needs 3 or more iterations for (`sim.night_script.ops_rule_run`), with ``--draw any`` the
first draw, or ``--initial x,y,z``.

The demo's CSC runs with the shipped correction defaults: full gain (the model-based sensitivity is good to
about 1 %), steps up to 0.6 mm in x, y and 0.2 mm in z.
The report folder is described in `lsst.ts.auxtelwep.report`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console

from .errors import AuxTelWepError, InputError
from .instrument import HexapodState
from .report import DemoReport, ReportFiles, build_summary, triplet_panels, write_report
from .sal import DEFAULT_PARTITION_PREFIX, Domain, Remote, State, dds_environment
from .sim.night import DEFAULT_POINTING, make_catalog, write_catalog
from .sim.night_script import NightScript, NightScriptConfig, OpsRuleRun, TripletOutcome, ops_rule_run
from .sim.observatory import SceneConfig, SimulatedObservatory, SimulatedTelescope
from .sim.signature import DetectorSignature, write_calibrations

__all__ = ["DemoOptions", "draw_misalignment", "parse_initial", "run_demo"]

_log = logging.getLogger(__name__)

#: Name of the demo's configuration override in ``<out>/config``.
OVERRIDE_NAME = "demo.yaml"
#: Time allowed for the CSC process to exit after exitControl, seconds.
CSC_EXIT_TIMEOUT_S = 20.0
#: Largest decenter and focus of a drawn misalignment, mm.
MAX_DECENTER_MM, MAX_FOCUS_MM = 0.5, 0.15
#: Draws tried by ``--draw hard`` before taking the last one.
MAX_DRAWS = 200


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    """Options of `run_demo` (the command-line options of ``auxtelwep demo``).

    Attributes
    ----------
    n_triplets : `int`
        Triplets to take.
    seeing_arcsec : `float`
        Kolmogorov FWHM.
    seed : `int`
        Seed of the misalignment draw, the star field, the detector and every exposure.
    initial : `HexapodState` or None
        Initial misalignment (mm); None draws one (``draw``).
    draw : `str`
        ``"hard"`` or ``"any"`` (module docstring).
    out : `pathlib.Path` or None
        Report folder; default ``./report/demo-<timestamp>``.
    n_stars : `int`
        Stars in the field.
    exptime_s : `float`
        Exposure time of the defocused images, s.
    keep_data : `bool`
        Keep the raws under ``<out>/data`` (about 75 MB each) instead of a temporary folder.
    stamps : `bool`
        Draw the stamp figures (runs the pipeline's stages again on two triplets).
    result_timeout_s : `float`
        Time allowed for AuxTelWEP's result of one triplet, s.
    camera_angle_deg : `float`
        Camera rotation relative to the hexapod (instrument.py convention): the simulated mount publishes it
        as elevation - Nasmyth-2, and the raws are rendered with it.
    """

    n_triplets: int = 4
    seeing_arcsec: float = 1.0
    seed: int = 0
    initial: HexapodState | None = None
    draw: str = "hard"
    out: Path | None = None
    n_stars: int = 6
    exptime_s: float = 20.0
    keep_data: bool = False
    stamps: bool = True
    result_timeout_s: float = 300.0
    camera_angle_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.draw not in ("hard", "any"):
            raise InputError(
                f"draw={self.draw!r} must be 'hard' or 'any'", value=self.draw, allowed=("hard", "any")
            )
        if self.n_triplets < 1 or not self.seeing_arcsec > 0 or self.n_stars < 1:
            raise InputError(
                f"need triplets >= 1, seeing > 0 and stars >= 1; got {self.n_triplets}, "
                f"{self.seeing_arcsec}, {self.n_stars}",
                value=(self.n_triplets, self.seeing_arcsec, self.n_stars),
            )


def parse_initial(text: str) -> HexapodState:
    """Parse ``--initial "x,y,z"`` (mm) into a `HexapodState`.

    Parameters
    ----------
    text : `str`
        ``"x,y,z"``, mm.

    Raises
    ------
    InputError
        If ``text`` is not three comma-separated numbers.
    """
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not all(np.isfinite(values)):
        raise InputError(f"--initial {text!r}: expected three numbers 'x,y,z' in mm", value=text)
    return HexapodState(*values)


def draw_misalignment(
    rng: np.random.Generator, *, hard: bool, camera_angle_deg: float = 0.0
) -> tuple[HexapodState, OpsRuleRun]:
    """Draw an M2 misalignment (decenter uniform over a 0.5 mm disc, focus uniform in +-0.15 mm).

    With ``hard``, draws until the ops rule (with the camera at ``camera_angle_deg``) needs 3 or more
    iterations (or does not converge in 5), at most `MAX_DRAWS` times. Returns the misalignment and the ops
    rule's run from it.

    Parameters
    ----------
    rng : `numpy.random.Generator`
        Random generator.
    hard : `bool`
        Draw again until the ops rule needs at least 3 iterations.
    camera_angle_deg : `float`, optional
        Camera angle of the ops rule's runs, degrees.
    """
    for _ in range(MAX_DRAWS):
        radius = MAX_DECENTER_MM * np.sqrt(rng.uniform())
        angle = rng.uniform(0.0, 2.0 * np.pi)
        state = HexapodState(
            x=float(radius * np.cos(angle)),
            y=float(radius * np.sin(angle)),
            z=float(rng.uniform(-MAX_FOCUS_MM, MAX_FOCUS_MM)),
        )
        run = ops_rule_run(state, camera_angle_deg=camera_angle_deg)
        if not hard or run.iterations is None or run.iterations >= 3:
            break
    return state, run


def csc_override(
    data_root: Path, state_dir: Path, *, refcat: Path, calibs: Path, timeout_s: float
) -> dict[str, Any]:
    """The demo's AuxTelWEP configuration override (module docstring).

    Parameters
    ----------
    data_root : `pathlib.Path`
        Data root the simulated ATOODS ingests into.
    state_dir : `pathlib.Path`
        Directory of the CSC's journal.
    refcat : `pathlib.Path`
        Reference catalog.
    calibs : `pathlib.Path`
        Calibration directory.
    timeout_s : `float`
        ``process_timeout_s``, seconds.

    Returns
    -------
    override : `dict` [`str`, `object`]
        Configuration fields, with ``correction.auto_apply`` on.
    """
    return {
        "data_root": str(data_root),
        "state_dir": str(state_dir),
        "refcat_path": str(refcat),
        "calibs_dir": str(calibs),
        "process_timeout_s": float(timeout_s),
        "correction": {"auto_apply": True},
    }


@contextlib.contextmanager
def _isolated_dds() -> Iterator[tuple[str, str]]:
    """Pick a random DDS domain id and a unique partition prefix unless ``LSST_DDS_DOMAIN_ID`` is set.

    A user who sets the domain id wants to watch the demo from other tools: the partition prefix is then
    left as the environment has it. The environment is restored on exit.
    """
    domain_id = prefix = None
    if os.environ.get("LSST_DDS_DOMAIN_ID") is None:
        domain_id = random.SystemRandom().randint(100, 229)
        prefix = os.environ.get("LSST_DDS_PARTITION_PREFIX", f"auxtelwep-demo-{uuid.uuid4().hex[:8]}")
    with dds_environment(domain_id, prefix):
        yield (
            os.environ["LSST_DDS_DOMAIN_ID"],
            os.environ.get("LSST_DDS_PARTITION_PREFIX", DEFAULT_PARTITION_PREFIX),
        )


class _CscProcess:
    """AuxTelWEP in a child process (``run_auxtelwep``), its output in a log file."""

    def __init__(self, config_dir: Path, log_path: Path) -> None:
        self.config_dir = config_dir
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        code = (
            "import logging; logging.basicConfig(level=logging.INFO, "
            "format='%(asctime)s %(levelname)s %(name)s: %(message)s'); "
            "from lsst.ts.auxtelwep.csc import run_auxtelwep; run_auxtelwep()"
        )
        args = [sys.executable, "-c", code, "--configdir", str(self.config_dir), "--state", "standby"]
        with open(self.log_path, "ab") as log_file:
            self.proc = await asyncio.create_subprocess_exec(*args, stdout=log_file, stderr=log_file)

    async def stop(self, remote: Remote) -> None:
        """Disable, standby and exitControl; terminate the process if it does not exit in time."""
        if self.proc is not None and self.proc.returncode is not None:
            return
        for name in ("stopClosedLoop", "disable", "standby", "exitControl"):
            try:
                await getattr(remote, f"cmd_{name}").start(timeout=10.0)
            except Exception as exc:  # whatever state it is in, we still want it gone
                _log.debug("AuxTelWEP %s: %s", name, exc)
        if self.proc is None:
            return
        try:
            await asyncio.wait_for(self.proc.wait(), CSC_EXIT_TIMEOUT_S)
        except TimeoutError:
            _log.warning("AuxTelWEP did not exit in %.0f s; terminating it", CSC_EXIT_TIMEOUT_S)
            self.proc.terminate()
            await self.proc.wait()


def _progress_line(outcome: TripletOutcome) -> str:
    o = outcome
    head = f"[bold]#{o.index}[/bold] {o.group_id}"
    if o.rejected_reason:
        return f"{head} [red]rejected[/red]: {o.rejected_reason}  ({o.total_s:.1f} s)"
    z = "  ".join(f"Z{j} {o.zernike_nm(j):+6.0f}" for j in (4, 7, 8))
    c = o.correction or HexapodState()
    left = o.hexapod_after
    tilt = ""
    if max(abs(left.u), abs(left.v), abs(c.u), abs(c.v)) >= 5e-4:  # only when tilts were solved
        tilt = f" | tilt u {left.u:+.4f} v {left.v:+.4f} deg (correction {c.u:+.4f}, {c.v:+.4f})"
    return (
        f"{head}  {z} nm | correction x {c.x:+.3f} y {c.y:+.3f} z {c.z:+.4f} | "
        f"left x {left.x:+.3f} y {left.y:+.3f} z {left.z:+.4f} mm{tilt}  "
        f"({o.total_s:.1f} s, WEP {o.wep_time_s:.1f} s)"
    )


async def run_demo(
    options: DemoOptions,
    *,
    console: Console | None = None,
    csc_factory: Callable[[Path], Any] | None = None,
) -> tuple[DemoReport, ReportFiles]:
    """Play a closed-loop demo night and write its report folder.

    Parameters
    ----------
    options : `DemoOptions`
    console : `rich.console.Console`, optional
        Where progress goes (default: a console on stdout).
    csc_factory : callable, optional
        ``config_dir -> CSC`` to run AuxTelWEP in this process (tests); default: a child process.

    Returns
    -------
    report : `lsst.ts.auxtelwep.report.DemoReport`
    files : `lsst.ts.auxtelwep.report.ReportFiles`
    """
    console = console or Console()
    t_start = time.monotonic()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (options.out or Path("report") / f"demo-{stamp}").resolve()
    config_dir = out / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "state", ignore_errors=True)  # a fresh journal: OBSIDs restart at 1 every demo
    data_root = out / "data" if options.keep_data else Path(tempfile.mkdtemp(prefix="auxtelwep-demo-"))
    (data_root / "raw").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(options.seed)
    if options.initial is not None:
        initial = options.initial
        ops_run = ops_rule_run(initial, camera_angle_deg=options.camera_angle_deg)
    else:
        initial, ops_run = draw_misalignment(
            rng, hard=options.draw == "hard", camera_angle_deg=options.camera_angle_deg
        )
    ops_text = ops_run.iterations or "more than 5"
    console.print(
        f"initial M2 misalignment x {initial.x:+.3f} y {initial.y:+.3f} z {initial.z:+.4f} mm "
        f"(ops rule with perfect measurements: {ops_text} iteration(s))"
    )
    try:
        scene, pipeline_options = _prepare_data(options, data_root)
        (config_dir / OVERRIDE_NAME).write_text(
            yaml.safe_dump(
                csc_override(data_root, out / "state", timeout_s=options.result_timeout_s, **pipeline_options)
            )
        )
        with _isolated_dds() as (domain_id, prefix):
            console.print(f"DDS domain {domain_id}, partition prefix {prefix}; report in {out}")
            outcomes = await _play(options, scene, initial, data_root, config_dir, out, console, csc_factory)
        first = last = None
        if options.stamps and outcomes:
            console.print(
                "drawing donut stamps of the first and last triplet (running the pipeline again)..."
            )
            panel_options = {
                "refcat": str(pipeline_options["refcat"]),
                "calibs_dir": str(pipeline_options["calibs"]),
            }
            first = await asyncio.to_thread(_panels, data_root, outcomes[0], panel_options)
            last = (
                await asyncio.to_thread(_panels, data_root, outcomes[-1], panel_options)
                if len(outcomes) > 1
                else None
            )
        summary = build_summary(
            outcomes,
            initial=initial,
            rule=NightScriptConfig().rule,
            ops_run=ops_run,
            wall_s=time.monotonic() - t_start,
        )
        report = DemoReport(
            settings=_settings(options, initial, out, data_root),
            ops_baseline={
                "iterations": ops_run.iterations,
                "path": [dataclasses.asdict(s) for s in ops_run.path],
                "corrections": [dataclasses.asdict(s) for s in ops_run.corrections],
            },
            triplets=[o.to_dict() for o in outcomes],
            summary=summary,
        )
        files = write_report(out, report, outcomes, first=first, last=last)
    finally:
        if not options.keep_data:
            shutil.rmtree(data_root, ignore_errors=True)
    _print_summary(console, report, files)
    return report, files


def _prepare_data(options: DemoOptions, data_root: Path) -> tuple[SceneConfig, dict[str, Path]]:
    """Star field, detector, reference catalog and calibration products of the night."""
    seeds = np.random.SeedSequence(options.seed).spawn(3)
    # Raws without CAMANGLE, as real ones: AuxTelWEP takes each image's angle from the simulated mount.
    pointing = dataclasses.replace(
        DEFAULT_POINTING, camera_angle_deg=options.camera_angle_deg, camera_angle_in_header=False
    )
    catalog = make_catalog(
        pointing,
        seed=int(seeds[0].generate_state(1)[0]),
        n_stars=options.n_stars,
        radius_deg=0.045,
        mag_range=(9.5, 11.5),
    )
    refcat = write_catalog(catalog, data_root / "refcat.ecsv")
    signature = DetectorSignature.typical(seed=options.seed)
    calibs = data_root / "calibs"
    write_calibrations(signature, calibs, rng=np.random.default_rng(seeds[1]))
    scene = SceneConfig(
        pointing=pointing,
        catalog=catalog,
        signature=signature,
        seed=int(seeds[2].generate_state(1)[0]),
        seeing_arcsec=options.seeing_arcsec,
        exptime_s=options.exptime_s,
        dayobs=datetime.date.today().strftime("%Y%m%d"),
    )
    return scene, {"refcat": refcat, "calibs": calibs}


async def _play(
    options: DemoOptions,
    scene: SceneConfig,
    initial: HexapodState,
    data_root: Path,
    config_dir: Path,
    out: Path,
    console: Console,
    csc_factory: Callable[[Path], Any] | None,
) -> list[TripletOutcome]:
    """Start the peers and AuxTelWEP, run the night script, stop AuxTelWEP; return the outcomes."""
    telescope = SimulatedTelescope(initial)
    csc_process = None
    csc = None
    if csc_factory is None:
        csc_process = _CscProcess(config_dir, out / "csc.log")
        await csc_process.start()
    else:
        csc = csc_factory(config_dir)
        await csc.start_task
    group_prefix = f"demo{datetime.datetime.now().strftime('%H%M%S')}"
    config = NightScriptConfig(
        n_triplets=options.n_triplets,
        override=OVERRIDE_NAME,
        result_timeout_s=options.result_timeout_s,
        group_prefix=group_prefix,
    )
    async with SimulatedObservatory(telescope, scene, data_root) as observatory, Domain() as domain:
        if logging.getLogger().getEffectiveLevel() > logging.INFO:
            for peer in observatory.peers:  # their INFO lines would drown the progress lines
                peer.log.setLevel(logging.WARNING)
        script = NightScript(
            domain,
            observatory.camera,
            telescope,
            config=config,
            on_triplet=lambda outcome: console.print(_progress_line(outcome)),
        )
        try:
            with console.status("starting AuxTelWEP (configuration, worker process)..."):
                await _unless_exited(script.prepare_csc(), csc_process, out)
            console.print(
                f"AuxTelWEP {State.ENABLED.name}, closed loop running; {options.n_triplets} triplets"
            )
            outcomes = await _unless_exited(script.run(), csc_process, out)
        finally:
            if csc_process is not None:
                await csc_process.stop(script.wep)
            elif csc is not None:
                await csc.close()
            await script.close()
    return outcomes


async def _unless_exited(work: Any, csc_process: _CscProcess | None, out: Path) -> Any:
    """Await ``work``; raise `AuxTelWepError` if the CSC process exits first (its log says why)."""
    if csc_process is None or csc_process.proc is None:
        return await work
    task = asyncio.ensure_future(work)
    exited = asyncio.ensure_future(csc_process.proc.wait())
    try:
        await asyncio.wait({task, exited}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        raise AuxTelWepError(
            f"AuxTelWEP exited with status {csc_process.proc.returncode} during the demo; "
            f"see {out / 'csc.log'}"
        )
    finally:
        exited.cancel()


def _panels(data_root: Path, outcome: TripletOutcome, pipeline_options: dict[str, Any]) -> Any:
    dayobs = outcome.obsids[0].split("_")[2]
    raw = [data_root / "raw" / dayobs / f"{obsid}.fits" for obsid in outcome.obsids]
    return triplet_panels(raw[0], raw[1], raw[2], pipeline_options=pipeline_options)


def _settings(options: DemoOptions, initial: HexapodState, out: Path, data_root: Path) -> dict[str, Any]:
    settings = dataclasses.asdict(options)
    settings.update(
        initial=dataclasses.asdict(initial),
        out=str(out),
        data_root=str(data_root) if options.keep_data else "(temporary, removed)",
        domain_id=os.environ.get("LSST_DDS_DOMAIN_ID", ""),
    )
    return settings


def _print_summary(console: Console, report: DemoReport, files: ReportFiles) -> None:
    s = report.summary
    ops = s.ops_rule_iterations or "more than 5"
    verdict = "[green]converged[/green]" if s.converged_iteration else "[red]did not converge[/red]"
    console.rule("summary")
    console.print(
        f"{verdict} at iteration {s.converged_iteration or '-'} (ops script's rule on the computed "
        f"correction: |z| < {s.focus_limit_mm} mm, decenter < {s.decenter_limit_mm} mm); "
        f"ops rule from the same start: {ops}"
    )
    console.print(f"corrections until the true misalignment met the limits: {s.corrections_to_truth}")
    console.print(
        f"time per triplet {s.mean_triplet_s:.1f} s (exposures {s.mean_exposures_s:.1f} s, waiting for "
        f"AuxTelWEP {s.mean_wait_s:.1f} s, WEP {s.mean_wep_s:.1f} s); demo {s.wall_s:.0f} s"
    )
    console.print(f"report: {files.results.parent}")
