"""``auxtelwep reprocess``: every triplet of a night on disk, grouped as the CSC groups them."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigurationError
from . import count_of, day_obs, output_file
from .process import STRUCTURE_NOTE_LEVEL, add_pipeline_options, hexapod_text, pipeline_config, zernike_cells

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``reprocess`` subcommand.

    Parameters
    ----------
    subparsers : `argparse._SubParsersAction`
        The subcommands of the ``auxtelwep`` parser (`cli.build_parser`).
    """
    parser = subparsers.add_parser(
        "reprocess",
        help="reprocess a night: find the triplets under a data root and run the pipeline on each",
        description="Group the raws of DATA_ROOT/raw/<DAYOBS>/ into triplets with the CSC's sequencer "
        "(REASON, FOCUSZ, GROUPID, order), run the pipeline on each, print one line per triplet, and write "
        "one JSON line per triplet (the `auxtelwep process --json` shape, or the rejection reason).",
    )
    parser.add_argument("data_root", type=Path, help="directory holding raw/<DAYOBS>/<OBSID>.fits")
    parser.add_argument("--dayobs", type=day_obs, help="only this night (YYYYMMDD)")
    parser.add_argument(
        "--out", type=output_file, help="JSON-lines file of the results (written as they come)"
    )
    parser.add_argument(
        "--plot", type=output_file, help="PNG of the night: Zernikes, corrections and seeing per triplet"
    )
    parser.add_argument(
        "--camera-angles",
        type=Path,
        metavar="TABLE",
        help="table (CSV, ECSV...) of obsid, camera_angle_deg: elevation - Nasmyth-2 at each image, from "
        "the EFD (ATMCS mount_AzEl_Encoders, mount_Nasmyth_Encoders); real raws lack it, and a triplet "
        "without it solves focus only",
    )
    add_pipeline_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Reprocess; return 0 when every triplet gave a result, 1 when some were rejected.

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed ``reprocess`` arguments: ``data_root``, ``dayobs``, ``out``, ``plot``, ``camera_angles`` and
        the
        pipeline options (`process.pipeline_config`).
    """
    from ..reprocess import find_triplets, process_triplets, read_camera_angles

    config = pipeline_config(args)
    angles = None if args.camera_angles is None else read_camera_angles(args.camera_angles)
    night = find_triplets(args.data_root, day_obs=args.dayobs, camera_angles=angles)
    counts = (count_of(night.n_raws, "raw"), count_of(len(night.triplets), "triplet"))
    print(f"{counts[0]}: {counts[1]}, {count_of(len(night.rejected), 'rejection')}")
    if angles is not None:
        known = sum(t.camera_angle_deg is not None for t in night.triplets)
        of = count_of(len(night.triplets), "triplet")
        print(f"  camera angles of {known} of {of} from {args.camera_angles}")
    for warning in night.warnings:
        print(f"  cadence warning: {warning}")
    entries: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        out = None if args.out is None else stack.enter_context(_open_output(args.out))

        def record(entry: dict[str, Any]) -> None:
            entries.append(entry)
            # One line per triplet as soon as it is known: an interrupted night keeps what was done.
            if out is not None:
                out.write(json.dumps(entry) + "\n")
                out.flush()

        for r in night.rejected:
            print(f"  rejected {', '.join(r.obsids)}: {r.reason}")
            record({"group_id": r.group_id, "obsids": list(r.obsids), "rejected": r.reason})
        failed = bool(night.rejected)
        outcomes = process_triplets(night.triplets, config=config)
        for triplet, result, reason in outcomes:
            if result is None:
                failed = True
                obsids = [p.stem for p in (triplet.intra, triplet.extra, triplet.infocus) if p is not None]
                print(f"{', '.join(obsids)} (group {triplet.group_id}): rejected: {reason}")
                record({"group_id": triplet.group_id, "obsids": obsids, "rejected": reason})
                continue
            summary = result.to_json_dict()
            print(_summary_line(triplet.group_id, summary))
            record(summary)
    if args.out is not None:
        print(f"results: {args.out}")
    if args.plot is not None:
        from ..plots import plot_night

        title = args.dayobs or args.data_root.resolve().name
        plot_night(entries, args.plot, title=title, structure_note_level=STRUCTURE_NOTE_LEVEL)
        print(f"figure: {args.plot}")
    return 1 if failed else 0


def _open_output(path: Path) -> TextIO:
    try:
        return path.open("w")
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot write the results ({exc})", value=str(path)) from exc


def _summary_line(group_id: str, summary: dict[str, Any]) -> str:
    """One processed triplet: its images by OBSID (GROUPIDs repeat from night to night), focus and coma
    (those measured) and the correction, with 1-sigma errors."""
    obsids = ", ".join(o for o in (summary["intra"], summary["extra"], summary["infocus"]) if o)
    # Focus and coma, those of them the configuration measures.
    terms = "  ".join(zernike_cells(summary["zernikes"], (4, 7, 8)))
    return (
        f"{obsids} (group {group_id}): {summary['detection']['mode']}, "
        f"{summary['zernikes']['donuts_used']} donuts, {terms} nm; {hexapod_text(summary)}; "
        f"{summary['timing_s']['total']:.1f} s"
    )
