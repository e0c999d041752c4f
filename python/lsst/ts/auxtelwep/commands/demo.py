"""``auxtelwep demo``: the closed-loop demo night of `lsst.ts.auxtelwep.demo`.

The implementation is imported when the command runs, so that the other commands and ``--help`` do not
pay for the simulator, the SAL layer and the report's plotting.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="closed-loop demo night: AuxTelWEP with simulated ATCamera/ATOODS/ATAOS on DDS",
        description="Starts AuxTelWEP and the simulated observatory as DDS peers, plays a short night of "
        "triplets from a random M2 misalignment with the closed loop running, and writes a report folder. "
        "Options left out take the defaults of lsst.ts.auxtelwep.demo.DemoOptions.",
    )
    # SUPPRESS: an option not given is left to DemoOptions, the one place the defaults are set.
    unset = argparse.SUPPRESS
    parser.add_argument("--triplets", dest="n_triplets", type=int, default=unset, help="triplets to take")
    parser.add_argument("--seeing", dest="seeing_arcsec", type=float, default=unset, help="FWHM, arcsec")
    parser.add_argument("--seed", type=int, default=unset, help="seed of the whole night")
    parser.add_argument("--initial", default=unset, help='initial misalignment "x,y,z" (mm)')
    parser.add_argument(
        "--draw",
        choices=("hard", "any"),
        default=unset,
        help="random misalignment: one the ops rule needs >= 3 iterations for (hard), or any",
    )
    parser.add_argument("--out", type=Path, default=unset, help="report folder (./report/demo-<time>)")
    parser.add_argument("--stars", dest="n_stars", type=int, default=unset, help="stars in the field")
    parser.add_argument("--keep-data", action="store_true", help="keep the raws in <out>/data")
    parser.add_argument("--no-stamps", action="store_true", help="skip the stamp figures")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..demo import DemoOptions, parse_initial, run_demo

    given = {k: v for k, v in vars(args).items() if k in DemoOptions.__dataclass_fields__}
    if "initial" in given:
        given["initial"] = parse_initial(given["initial"])
    options = DemoOptions(**given, stamps=not args.no_stamps)
    report, _ = asyncio.run(run_demo(options, console=Console(soft_wrap=True)))
    return 0 if report.summary.converged_iteration is not None else 1
