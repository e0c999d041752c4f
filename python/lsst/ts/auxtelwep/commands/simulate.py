"""``auxtelwep simulate night|exposure``: simulated LATISS raws with truth (see ``doc/simulator.md``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from . import count_of, day_obs, new_output_file

if TYPE_CHECKING:
    from ..sim.scene import Pointing

__all__ = ["register"]


def _floats(count: int, what: str) -> Callable[[str], tuple[float, ...]]:
    """An argparse ``type`` that reads ``count`` comma-separated numbers."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what}: {text!r} is not {count} comma-separated numbers"
            ) from None
        if len(values) != count:
            raise argparse.ArgumentTypeError(
                f"{what}: expected {count} comma-separated numbers, got {text!r}"
            )
        return values

    return parse


def _add_hexapod(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """Add a hexapod-state option ``flag`` (x,y,z mm and u,v deg; default all zero)."""
    parser.add_argument(flag, type=_floats(5, flag), default=(0.0,) * 5, metavar="X,Y,Z,U,V", help=help)


def _common(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``night`` and ``exposure``."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--seeing", type=float, default=1.0, help="seeing FWHM, arcsec (default 1.0)")
    _add_hexapod(
        parser,
        "--hexapod",
        "injected M2 hexapod state without defocus: x,y,z mm and u,v deg (default aligned)",
    )
    parser.add_argument("--ra", type=float, default=150.0, help="boresight RA, deg")
    parser.add_argument("--dec", type=float, default=-30.0, help="boresight Dec, deg")
    parser.add_argument("--rotpa", type=float, default=0.0, help="sky position angle of +row, deg")
    parser.add_argument("--elevation", type=float, default=60.0, help="elevation, deg")
    parser.add_argument(
        "--camera-angle", type=float, default=0.0, help="camera angle vs the hexapod frame, deg (CAMANGLE)"
    )
    parser.add_argument("--exptime", type=float, default=20.0, help="exposure time, s (default 20)")
    parser.add_argument("--sky", type=float, default=5.0, help="sky, electrons per pixel per second")
    parser.add_argument("--stars", type=int, default=10, help="random catalog stars (default 10)")
    parser.add_argument("--no-blend", action="store_true", help="no forced blend pair in the catalog")
    parser.add_argument("--saturated", action="store_true", help="add a saturated star to the catalog")
    parser.add_argument(
        "--wcs-error",
        type=_floats(3, "--wcs-error"),
        default=None,
        metavar="DX,DY,DROT",
        help="make the header WCS wrong by DX,DY px and DROT deg about the boresight",
    )
    parser.add_argument("--no-wcs", action="store_true", help="write no WCS in the headers (as real raws)")
    parser.add_argument("--cosmic-rays", type=int, default=5, help="cosmic-ray tracks per exposure")
    parser.add_argument("--compress", action="store_true", help="RICE-compress the amplifier HDUs")
    parser.add_argument("--dayobs", type=day_obs, default="20240624", help="DAYOBS, YYYYMMDD")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` subcommand with its ``night`` and ``exposure`` actions.

    Parameters
    ----------
    subparsers : `argparse._SubParsersAction`
        The subcommands of the ``auxtelwep`` parser (`cli.build_parser`).
    """
    parser = subparsers.add_parser("simulate", help="simulated LATISS raws with truth files")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    night = actions.add_parser(
        "night",
        help="N triplets (intra, extra, in-focus), refcat, calibrations and truths in a data root",
        description="Writes DIR/night.json, DIR/refcat.ecsv, DIR/calibs/, DIR/raw/<DAYOBS>/<OBSID>.fits and "
        "<OBSID>.truth.json beside each raw.",
    )
    night.add_argument("--triplets", type=int, required=True, help="number of triplets")
    night.add_argument("--out", type=Path, required=True, help="output directory (the data root)")
    night.add_argument("--dither", type=float, default=5.0, help="rms pointing dither per triplet, arcsec")
    _add_hexapod(night, "--hexapod-step", "added to the hexapod state at each following triplet")
    _common(night)
    night.set_defaults(func=_night)

    exposure = actions.add_parser(
        "exposure",
        help="one raw and its truth",
        description="Writes OUT (a raw) and OUT's .truth.json; with no --catalog a random catalog is made "
        "and written beside it as refcat.ecsv.",
    )
    exposure.add_argument(
        "--out", type=new_output_file, required=True, help="raw file to write (.fits; its directory is made)"
    )
    exposure.add_argument("--role", choices=("intra", "extra", "infocus"), default="intra", help="image role")
    exposure.add_argument("--catalog", type=Path, default=None, help="reference catalog (ECSV: ra, dec, mag)")
    exposure.add_argument("--seqnum", type=int, default=1, help="SEQNUM (OBSID AT_O_<DAYOBS>_<SEQNUM>)")
    exposure.add_argument("--calibs", type=Path, default=None, help="also write calibration products here")
    _common(exposure)
    exposure.set_defaults(func=_exposure)


def _pointing(args: argparse.Namespace) -> Pointing:
    from ..sim.scene import Pointing

    return Pointing(
        ra_deg=args.ra,
        dec_deg=args.dec,
        rotpa_deg=args.rotpa,
        elevation_deg=args.elevation,
        camera_angle_deg=args.camera_angle,
    )


def _night(args: argparse.Namespace) -> int:
    from ..instrument import HexapodState
    from ..sim.night import NightPlan, simulate_night

    plan = NightPlan(
        n_triplets=args.triplets,
        seed=args.seed,
        hexapod=HexapodState.from_array(args.hexapod),
        hexapod_step=HexapodState.from_array(args.hexapod_step),
        pointing=_pointing(args),
        dither_arcsec=args.dither,
        seeing_arcsec=args.seeing,
        exptime_s=args.exptime,
        sky_e_per_px_per_s=args.sky,
        dayobs=args.dayobs,
        n_stars=args.stars,
        blend_pair=not args.no_blend,
        saturated_star=args.saturated,
        wcs_error=args.wcs_error,
        header_wcs=not args.no_wcs,
        n_cosmic_rays=args.cosmic_rays,
        compress=args.compress,
    )
    manifest = simulate_night(args.out, plan)
    n = sum(len(t.exposures) for t in manifest.triplets)
    print(f"wrote {count_of(n, 'raw')} in {count_of(len(manifest.triplets), 'triplet')} under {args.out}")
    for triplet in manifest.triplets:
        obsids = "  ".join(f"{e.role} {e.obsid}" for e in triplet.exposures)
        print(f"  {triplet.groupid}: {obsids}")
    print(
        f"reference catalog {args.out / manifest.refcat}, calibrations {args.out / manifest.calibs}, "
        f"manifest {args.out / 'night.json'}"
    )
    return 0


def _exposure(args: argparse.Namespace) -> int:
    from astropy.table import Table

    from ..instrument import HexapodState, Role
    from ..sim.night import make_catalog, write_catalog
    from ..sim.scene import Observation, simulate_exposure
    from ..sim.signature import DetectorSignature, write_calibrations

    pointing = _pointing(args)
    # Like `simulate night`'s data root, the raw's directory is made here (new_output_file allowed it).
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.catalog is not None:
        try:
            catalog = Table.read(args.catalog, format="ascii.ecsv")
        except (OSError, ValueError) as exc:
            raise InputError(f"--catalog {args.catalog}: not a readable ECSV table ({exc})") from exc
    else:
        catalog = make_catalog(
            pointing,
            seed=args.seed,
            n_stars=args.stars,
            blend_pair=not args.no_blend,
            saturated_star=args.saturated,
        )
        write_catalog(catalog, args.out.parent / "refcat.ecsv")
    signature = DetectorSignature.typical(seed=args.seed)
    if args.calibs is not None:
        write_calibrations(signature, args.calibs)
    truth = simulate_exposure(
        args.out,
        telescope_state=HexapodState.from_array(args.hexapod),
        role=Role(args.role),
        pointing=pointing,
        catalog=catalog,
        seeing_arcsec=args.seeing,
        exptime_s=args.exptime,
        sky_e_per_px_per_s=args.sky,
        seed=args.seed,
        signature=signature,
        observation=Observation(dayobs=args.dayobs, seqnum=args.seqnum, groupid=f"{args.dayobs}_sim"),
        wcs_error=args.wcs_error,
        header_wcs=not args.no_wcs,
        n_cosmic_rays=args.cosmic_rays,
        compress=args.compress,
    )
    print(f"wrote {args.out} ({sum(s.on_chip for s in truth.stars)} stars on the chip) and its truth file")
    return 0
