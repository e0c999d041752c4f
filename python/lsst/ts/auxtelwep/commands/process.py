"""``auxtelwep process``: one triplet of raw files to Zernikes and a hexapod correction."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from . import count_of, output_file

__all__ = [
    "STRUCTURE_NOTE_LEVEL",
    "add_pipeline_options",
    "hexapod_text",
    "pipeline_config",
    "register",
    "run",
    "zernike_cells",
]

#: Residual structure (`ForwardFitResult.structure_fraction`) above which the summary adds a note: ray-traced
#: simulations give 0, 20 nm of wavefront beyond Z22 0.06-0.08, 40 nm 0.11-0.14, the real LATISS pair 0.21.
STRUCTURE_NOTE_LEVEL = 0.05


def register(subparsers: Any) -> None:
    """Add the ``process`` subcommand.

    Parameters
    ----------
    subparsers : `argparse._SubParsersAction`
        The subcommands of the ``auxtelwep`` parser (`cli.build_parser`).
    """
    parser = subparsers.add_parser(
        "process",
        help="estimate the wavefront and hexapod correction from an intra/extra pair of raws",
        description="Run ISR, donut detection, wavefront estimation and the hexapod correction on raw files "
        "and print a summary. Pixel positions are 0-based in the assembled frame (x = column).",
    )
    parser.add_argument("intra", type=Path, help="intra-focal raw (or ISR'd image with --no-isr)")
    parser.add_argument("extra", type=Path, help="extra-focal raw (or ISR'd image with --no-isr)")
    parser.add_argument("--infocus", type=Path, help="in-focus raw of the same group (for astrometry)")
    parser.add_argument(
        "--camera-angle",
        type=float,
        metavar="DEG",
        help="camera rotation vs the hexapod frame during the exposures, deg: the mount's elevation - "
        "Nasmyth-2 angle (default: header CAMANGLE; without either only focus is solved)",
    )
    add_pipeline_options(parser)
    parser.add_argument("--no-isr", action="store_true", help="inputs are already ISR'd single-image files")
    parser.add_argument("--json", type=output_file, help="write the result as JSON")
    parser.add_argument(
        "--plot", type=output_file, help="write stamps, model residuals and the wavefront map (PNG)"
    )
    parser.set_defaults(func=run)


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that configure the pipeline (shared by ``process`` and ``reprocess``).

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The subcommand's parser; gets ``--calibs``, ``--refcat``, ``--mode``, ``--algorithm`` and
        ``--config``.
    """
    parser.add_argument("--calibs", type=Path, help="calibration directory (bias, dark, flat, amps.ecsv)")
    parser.add_argument("--refcat", type=Path, help="reference catalog (ECSV/FITS/Parquet: ra, dec, mag)")
    parser.add_argument("--mode", choices=("auto", "wcs", "refit", "template"), help="donut detection mode")
    parser.add_argument("--algorithm", choices=("danish", "tie+danish", "tie"), help="wavefront estimator")
    parser.add_argument("--config", type=Path, help="pipeline configuration YAML (PipelineConfig fields)")


def pipeline_config(args: argparse.Namespace) -> Any:
    """The `pipeline.PipelineConfig` the options of `add_pipeline_options` (and ``--no-isr``) describe.

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed arguments: ``config``, ``calibs``, ``refcat``, ``mode``, ``algorithm``, ``command`` and, if
        present, ``no_isr``.

    Returns
    -------
    config : `pipeline.PipelineConfig`
        Without calibration products, the bias, dark and flat steps of ISR are off unless the YAML says
        otherwise.

    Raises
    ------
    ConfigurationError
        If the YAML file cannot be read, is not a mapping, or the result does not validate.
    """
    import yaml

    from ..pipeline import PipelineConfig

    data: dict[str, Any] = {}
    if args.config is not None:
        try:
            data = yaml.safe_load(args.config.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"{args.config}: cannot read the configuration ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigurationError(
                f"{args.config}: the configuration must be a mapping of PipelineConfig fields"
            )
    if getattr(args, "no_isr", False):
        data["apply_isr"] = False
    if args.calibs is not None and data.get("apply_isr", True) is False:
        # Not an error: the images are processed all the same, but whoever gave the directory expects it used.
        print(
            f"auxtelwep {args.command}: warning: --calibs {args.calibs} is ignored: the images are taken as "
            "already ISR'd (--no-isr or apply_isr: false)",
            file=sys.stderr,
        )
    elif args.calibs is not None:
        data["calibs_dir"] = str(args.calibs)
    if args.refcat is not None:
        data["refcat"] = str(args.refcat)
    if args.mode is not None:
        data.setdefault("detection", {})["mode"] = args.mode
    if args.algorithm is not None:
        data.setdefault("estimation", {})["algorithm"] = args.algorithm
    if data.get("apply_isr", True) and "calibs_dir" not in data:
        # Without calibration products only the steps that need none can run (overscan, saturation).
        isr = data.setdefault("isr", {})
        for step in ("doBias", "doDark", "doFlat"):
            isr.setdefault(step, False)
    try:
        return PipelineConfig.model_validate(data)
    except ValueError as exc:
        raise ConfigurationError(f"invalid pipeline configuration: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    """Process one triplet and print a summary; return the exit status.

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed ``process`` arguments: ``intra``, ``extra``, ``infocus``, ``camera_angle``, ``json``, ``plot``
        and the pipeline options (`pipeline_config`).
    """
    from ..pipeline import Triplet, process

    config = pipeline_config(args)
    result = process(
        Triplet(args.intra, args.extra, args.infocus, camera_angle_deg=args.camera_angle),
        config=config,
        keep_pairs=args.plot is not None,
    )
    summary = result.to_json_dict()
    if args.json is not None:  # first: the file is the result that lasts, whatever happens to stdout
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(summary)
    if args.plot is not None:
        from ..pipeline import model_stamps
        from ..plots import plot_stamps

        plot_stamps(
            model_stamps(result, config=config),
            args.plot,
            noll=result.estimate.noll,
            coefs_um=result.estimate.um,
            errors_um=result.estimate.um_err,
            notes=_figure_notes(summary),
            title=f"{result.intra_obsid} + {result.extra_obsid}: mode {result.catalog.mode}, "
            f"{result.estimate.algorithm} estimate",
            # Said on the figure: the models draw the reported estimate, not a fit of their own.
            model_label=f"model of the reported\n{result.estimate.algorithm} Zernikes",
        )
        print(f"figure: {args.plot}")
    return 0


def _figure_notes(summary: dict[str, Any]) -> str:
    zernikes = summary["zernikes"]
    return "\n".join(
        [
            f"donuts used: {zernikes['donuts_used']}",
            f"hexapod correction (solved {', '.join(summary['hexapod_solved_axes'])}):",
            *(f"  {text}" for text in _hexapod_cells(summary)),
            f"total {summary['timing_s']['total']:.2f} s",
        ]
    )


def hexapod_text(summary: dict[str, Any]) -> str:
    """The correction of a ``process --json`` summary with 1-sigma errors, naming the axes not solved.

    Parameters
    ----------
    summary : `dict` [`str`, `object`]
        A ``process --json`` summary (keys ``hexapod``, ``hexapod_err``, ``hexapod_solved_axes``).

    Returns
    -------
    text : `str`
        E.g. ``"x -0.2416±0.0021 mm  y +0.1010±0.0021 mm  z -0.0492±0.0012 mm; u, v not solved"``.
    """
    solved = summary["hexapod_solved_axes"]
    unsolved = [axis for axis in ("x", "y", "z", "u", "v") if axis not in solved]
    tail = f"; {', '.join(unsolved)} not solved" if unsolved else ""
    return "  ".join(_hexapod_cells(summary)) + tail


def zernike_cells(zernikes: dict[str, Any], noll: Collection[int] | None = None) -> list[str]:
    """``"Z4=-208.0±0.1"`` (nm) per term of a summary's ``zernikes``, or per term of ``noll`` measured.

    Parameters
    ----------
    zernikes : `dict`
        The ``zernikes`` of a ``process --json`` summary.
    noll : collection of `int`, optional
        Only these terms, those of them measured (default: every term).

    Returns
    -------
    cells : `list` of `str`
    """
    return [
        f"Z{n}={v * 1000:+.1f}±" + ("?" if e is None else f"{e * 1000:.1f}")  # None: no error known
        for n, v, e in zip(zernikes["noll"], zernikes["um"], zernikes["um_err"], strict=True)
        if noll is None or n in noll
    ]


def _hexapod_cells(summary: dict[str, Any]) -> list[str]:
    """``"x -0.2416±0.0021 mm"`` per solved axis."""
    hexapod, errors = summary["hexapod"], summary["hexapod_err"]
    cells = []
    for key, value in hexapod.items():
        if key[0] in summary["hexapod_solved_axes"]:
            axis, unit = key.split("_")
            error = "?" if errors.get(key) is None else f"{errors[key]:.4f}"  # None: unknown
            cells.append(f"{axis} {value:+.4f}±{error} {unit}")
    return cells


def _donut_line(index: int, donut: dict[str, Any]) -> str:
    x, y = donut["intra_xy"]
    head = f"  donut {index} at ({x:.0f}, {y:.0f})"
    if not donut["used"]:
        return f"{head} rejected: {donut['reason']}"
    details = []
    if donut.get("snr") and None not in donut["snr"]:
        details.append("SNR {:.0f}/{:.0f}".format(*donut["snr"]))
    if donut.get("fwhm_arcsec"):
        details.append("FWHM " + "/".join(f'{v:.2f}"' for v in donut["fwhm_arcsec"]))
    if donut.get("reduced_chi2") is not None:
        details.append(f"reduced chi2 {donut['reduced_chi2']:.2f}")
    structure = donut.get("structure_fraction") or []
    if structure and None not in structure:
        details.append("residual structure " + "/".join(f"{100 * v:.0f}%" for v in structure))
    return f"{head}: " + ", ".join(details) if details else head


def _rejection_summary(rejected: list[dict[str, Any]], *, listed: int = 3) -> str:
    """Detection's rejections by reason, most frequent first, with positions when there are few."""
    by_reason: dict[str, list[str]] = {}
    for r in rejected:
        x, y = r["xy"]
        by_reason.setdefault(r["reason"], []).append(f"{r['role']} ({x:.0f}, {y:.0f})")
    parts = []
    for reason, where in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        parts.append(f"{len(where)} {reason}" + (f" [{', '.join(where)}]" if len(where) <= listed else ""))
    return "; ".join(parts)


def _structure_warning(donuts: list[dict[str, Any]]) -> str | None:
    """A note when a used donut's fit leaves more structure than simulations do (doc/estimation.md)."""
    worst = max(
        (v for d in donuts if d["used"] for v in (d.get("structure_fraction") or []) if v is not None),
        default=0.0,
    )
    if worst <= STRUCTURE_NOTE_LEVEL:
        return None
    return (
        f"note: residual structure up to {100 * worst:.0f}% of the donut light (simulations: 0): "
        "turbulence or wavefront detail the model does not hold; expect 10-30 nm of systematic error per "
        "pair at ~20%, and compare several pairs"
    )


def _print_summary(summary: dict[str, Any]) -> None:
    detection = summary["detection"]
    zernikes = summary["zernikes"]
    used = sum(d["used"] for d in detection["donuts"])
    print(f"intra {summary['intra']}  extra {summary['extra']}  in-focus {summary['infocus'] or '-'}")
    for note in summary.get("notes", []):
        print(f"note: {note}")
    print(f"detection: mode {detection['mode']}, {count_of(len(detection['donuts']), 'donut')}, {used} used")
    if detection.get("reason"):
        print(f"  how: {detection['reason']}")
    for i, donut in enumerate(detection["donuts"]):
        print(_donut_line(i, donut))
    if detection.get("rejected"):
        print(f"  rejected at detection: {_rejection_summary(detection['rejected'])}")
    chi2 = zernikes["reduced_chi2"]
    notes = [zernikes["algorithm"]]
    if chi2 is not None:
        notes.append(f"reduced chi2 {chi2:.2f}")
    scatter = [v for n, v in zip(zernikes["noll"], zernikes["scatter_um"], strict=True) if n <= 11]
    if zernikes["donuts_used"] > 1 and scatter and None not in scatter:
        rms = math.sqrt(sum(v * v for v in scatter) / len(scatter))
        notes.append(f"scatter between donuts {rms * 1000:.1f} nm RMS over Z4-Z11")
    print(f"wavefront ({'; '.join(notes)}), in-focus deviation from design, nm:")
    cells = zernike_cells(zernikes)
    for start in range(0, len(cells), 6):
        print("  " + "  ".join(cells[start : start + 6]))
    warning = _structure_warning(detection["donuts"])
    if warning:
        print(warning)
    print(f"hexapod correction: {hexapod_text(summary)}")
    ops = summary.get("hexapod_ops_rule")
    if ops:
        cells = "  ".join(f"{key.split('_')[0]} {value:+.4f} mm" for key, value in ops.items())
        print(f"  for comparison, the ops script's rule (published matrix and gains): {cells}")
    else:
        print("  (no comparison with the ops script's rule: it needs Z4, Z7, Z8 and the camera angle)")
    timing = summary["timing_s"]
    print("timing: " + "  ".join(f"{k} {v:.2f} s" for k, v in timing.items()))
