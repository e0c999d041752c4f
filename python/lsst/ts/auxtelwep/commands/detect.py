"""``auxtelwep detect INTRA.fits EXTRA.fits [--infocus F] [--refcat F] [--mode M] [--json OUT]``.

Finds the donuts of a wavefront pair on ISR'd exposures (`lsst.ts.auxtelwep.exposure.read_exposure`) and
prints one line per donut (with its aperture SNR), then the mode used and why. ``--json``/``--ecsv`` write
the `DonutCatalog`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from . import output_file

if TYPE_CHECKING:
    from ..detection import DonutCatalog

__all__ = ["format_catalog", "register"]

_log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``detect`` subcommand.

    Parameters
    ----------
    subparsers : `argparse._SubParsersAction`
        The subcommands of the ``auxtelwep`` parser (`cli.build_parser`).
    """
    parser = subparsers.add_parser(
        "detect",
        help="find the donuts of an intra/extra pair",
        description="Donut detection in one of three modes chosen by the quality of the WCS: 'wcs' "
        "(catalog through the WCS), 'refit' (WCS fitted on the in-focus image), 'template' (matched filter). "
        "'auto' chooses and falls back.",
    )
    parser.add_argument("intra", type=Path, help="ISR'd intra-focal exposure (FITS)")
    parser.add_argument("extra", type=Path, help="ISR'd extra-focal exposure (FITS)")
    parser.add_argument("--infocus", type=Path, help="ISR'd in-focus exposure of the same triplet")
    parser.add_argument("--refcat", type=Path, help="reference catalog (ECSV, FITS or Parquet; ra, dec, mag)")
    parser.add_argument("--mag-column", help="magnitude column of the reference catalog")
    parser.add_argument("--mode", choices=("auto", "wcs", "refit", "template"), default="auto")
    parser.add_argument("--no-fallback", action="store_true", help="fail rather than try the next mode")
    parser.add_argument("--max-donuts", type=int, help="maximum number of donuts")
    parser.add_argument("--seeing", type=float, help="seeing FWHM, arcsec (template blur)")
    parser.add_argument(
        "--camera-angle", type=float, help="camera angle, deg (default: header CAMANGLE or 0)"
    )
    parser.add_argument("--json", type=output_file, help="write the donut catalog as JSON")
    parser.add_argument("--ecsv", type=output_file, help="write the donut catalog as ECSV")
    parser.set_defaults(func=_detect)


def format_catalog(catalog: DonutCatalog) -> str:
    """Human-readable summary: one line per donut, then the mode and the reason.

    The SNR column is detection's aperture SNR (the smaller of the intra and extra ones), named so: it is
    not the stamp SNR (ts_wep's ``SN``) that ``auxtelwep process`` prints for the same donut, which is
    larger (1597 against 1217 for the brightest donut of a simulated night).

    Parameters
    ----------
    catalog : `DonutCatalog`
        The donuts found.

    Returns
    -------
    text : `str`
        The table and the lines about the mode, without a final newline.
    """
    lines = [
        f"{'#':>3} {'intra x':>9} {'intra y':>9} {'extra x':>9} {'extra y':>9} {'aperture SNR':>12} "
        f"{'mag':>6} blend"
    ]
    for k, d in enumerate(catalog.donuts):
        mag = "" if d.ref_mag is None else f"{d.ref_mag:6.2f}"
        lines.append(
            f"{k:3d} {d.intra_x:9.2f} {d.intra_y:9.2f} {d.extra_x:9.2f} {d.extra_y:9.2f} "
            f"{min(d.intra_snr, d.extra_snr):12.0f} {mag:>6} {'yes' if d.blended else 'no'}"
        )
    lines.append(f"mode: {catalog.mode} (requested {catalog.requested_mode})")
    if catalog.wcs_scatter_arcsec is not None:
        lines.append(
            f"WCS fit: {catalog.n_astrometry_matches} stars, scatter {catalog.wcs_scatter_arcsec:.3f} arcsec"
        )
    lines.append(f"reason: {catalog.reason}")
    lines.append(f"rejected candidates: {len(catalog.rejected)}")
    return "\n".join(lines)


def _detect(args: argparse.Namespace) -> int:
    import pydantic

    from ..detection import DetectionConfig, detect_donuts
    from ..exposure import camera_angle_from_header, read_exposure
    from ..instrument import AuxTel
    from ..refcat import load_refcat

    updates = {"mode": args.mode, "fallback": not args.no_fallback}
    if args.max_donuts is not None:
        updates["max_donuts"] = args.max_donuts
    if args.seeing is not None:
        updates["seeing_fwhm_arcsec"] = args.seeing
    try:
        config = DetectionConfig(**updates)
    except pydantic.ValidationError as exc:
        raise ConfigurationError(f"invalid detection option: {exc}", value=updates) from exc
    intra = read_exposure(args.intra)
    extra = read_exposure(args.extra)
    infocus = read_exposure(args.infocus) if args.infocus else None
    refcat = load_refcat(args.refcat, mag_column=args.mag_column) if args.refcat else None
    angle = args.camera_angle
    if angle is None:
        angle = camera_angle_from_header(intra.header) or 0.0
    telescope = AuxTel().with_camera_angle(angle)
    catalog = detect_donuts(intra, extra, infocus=infocus, refcat=refcat, config=config, telescope=telescope)
    if args.json:
        catalog.write(args.json)
        _log.info("wrote %s", args.json)
    if args.ecsv:
        catalog.write(args.ecsv)
        _log.info("wrote %s", args.ecsv)
    print(format_catalog(catalog))
    return 0
