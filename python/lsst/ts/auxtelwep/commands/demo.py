"""``auxtelwep demo``: the closed-loop demo night of `lsst.ts.auxtelwep.demo`.

The implementation is imported when the command runs, so that the other commands and ``--help`` do not
pay for the simulator, the SAL layer and the report's plotting. The option defaults are written here for
``--help`` to show; a test keeps them equal to those of `lsst.ts.auxtelwep.demo.DemoOptions`.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand.

    Parameters
    ----------
    subparsers : `argparse._SubParsersAction`
        The subcommands of the ``auxtelwep`` parser (`cli.build_parser`).
    """
    parser = subparsers.add_parser(
        "demo",
        help="closed-loop demo night: AuxTelWEP with simulated ATCamera/ATOODS/ATAOS on DDS",
        description="Starts AuxTelWEP and the simulated observatory as DDS peers, plays a short night of "
        "triplets from a random M2 misalignment with the closed loop running, and writes a report folder.",
    )
    parser.add_argument(
        "--triplets", dest="n_triplets", metavar="N", type=int, default=4, help="triplets (%(default)s)"
    )
    parser.add_argument(
        "--seeing", dest="seeing_arcsec", metavar="ARCSEC", type=float, default=1.0, help="FWHM (%(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole night (%(default)s)")
    parser.add_argument("--initial", metavar="X,Y,Z", help="initial misalignment, mm (default: drawn)")
    parser.add_argument(
        "--draw",
        choices=("hard", "any"),
        default="hard",
        help="random misalignment: one the ops rule needs >= 3 iterations for (hard, the default), or any",
    )
    parser.add_argument("--out", type=Path, help="report folder (default ./report/demo-<time>)")
    parser.add_argument(
        "--stars", dest="n_stars", metavar="N", type=int, default=6, help="stars in the field (%(default)s)"
    )
    parser.add_argument(
        "--camera-angle",
        type=float,
        default=0.0,
        metavar="DEG",
        help="camera rotation vs the hexapod: the simulated mount's elevation - Nasmyth-2 (%(default)s)",
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the raws in <out>/data")
    parser.add_argument("--no-stamps", action="store_true", help="skip the stamp figures")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..demo import DemoOptions, parse_initial, run_demo

    options = DemoOptions(
        n_triplets=args.n_triplets,
        seeing_arcsec=args.seeing_arcsec,
        seed=args.seed,
        initial=None if args.initial is None else parse_initial(args.initial),
        draw=args.draw,
        out=args.out,
        n_stars=args.n_stars,
        keep_data=args.keep_data,
        stamps=not args.no_stamps,
        camera_angle_deg=args.camera_angle,
    )
    report, _ = asyncio.run(run_demo(options, console=Console(soft_wrap=True)))
    return 0 if report.summary.converged_iteration is not None else 1
