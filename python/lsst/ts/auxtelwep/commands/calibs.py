"""``auxtelwep calibs build --bias ... --dark ... --flat ... --out DIR``: calibration products from raws."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["register"]

_log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``calibs`` subcommand (with its ``build`` action).

    Parameters
    ----------
    subparsers : `argparse._SubParsersAction`
        The subcommands of the ``auxtelwep`` parser (`cli.build_parser`).
    """
    parser = subparsers.add_parser("calibs", help="calibration products for ISR")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="build bias, dark, flat and amps.ecsv from raw frames",
        description="Each frame is overscan-corrected (and bias/dark-subtracted as its type needs) and the "
        "frames are combined with sigma clipping; gains come from the first two flats.",
    )
    build.add_argument("--bias", type=Path, nargs="+", required=True, help="raw bias frames")
    build.add_argument("--dark", type=Path, nargs="+", required=True, help="raw dark frames")
    build.add_argument("--flat", type=Path, nargs="+", required=True, help="raw flat frames (at least 2)")
    build.add_argument("--out", type=Path, required=True, help="output calibration directory")
    build.add_argument("--nsigma", type=float, default=3.0, help="clipping threshold of the combination")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from ..calibs import build_calibrations

    out = build_calibrations(args.bias, args.dark, args.flat, args.out, nsigma=args.nsigma)
    _log.info("calibration products written to %s", out)
    return 0
