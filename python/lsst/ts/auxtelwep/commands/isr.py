"""``auxtelwep isr RAW --calibs DIR --out OUT.fits [--config FILE.yaml]``: run ISR on one LATISS raw."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from . import output_file

__all__ = ["register"]

_log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``isr`` subcommand.

    Parameters
    ----------
    subparsers : `argparse._SubParsersAction`
        The subcommands of the ``auxtelwep`` parser (`cli.build_parser`).
    """
    parser = subparsers.add_parser(
        "isr",
        help="instrument signature removal of a LATISS raw",
        description="Overscan, bias, dark, flat (ip_isr switch names; see --config) of one raw; writes an "
        "image with MASK (and VARIANCE) extensions.",
    )
    parser.add_argument("raw", type=Path, help="LATISS raw FITS file")
    parser.add_argument(
        "--calibs", type=Path, help="calibration directory (bias.fits, dark.fits, flat.fits...)"
    )
    parser.add_argument("--out", type=output_file, required=True, help="output FITS file")
    parser.add_argument("--config", type=Path, help="YAML file of IsrConfig options (e.g. doFlat: false)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..calibs import load_calibrations
    from ..exposure import read_raw, write_exposure
    from ..isr import IsrConfig, run_isr

    config = IsrConfig.from_yaml(args.config) if args.config is not None else IsrConfig()
    start = time.monotonic()
    calibs = load_calibrations(args.calibs, config) if args.calibs is not None else None
    raw = read_raw(args.raw)
    exposure = run_isr(raw, calibs, config)
    write_exposure(exposure, args.out)
    _log.info("ISR of %s -> %s (%s) in %.2f s", args.raw, args.out, exposure.units, time.monotonic() - start)
    return 0
