"""A simulated night: its reference catalog and wavefront triplets (intra, extra, in-focus) in a data root.

Layout of the output directory (also in ``doc/simulator.md``)::

    DIR/night.json                         manifest (`NightManifest`): plan, triplets, files
    DIR/refcat.ecsv                        reference catalog (ra, dec deg; mag; id; note)
    DIR/calibs/                            bias.fits, dark.fits, flat.fits, amps.ecsv (`write_calibrations`)
    DIR/raw/<DAYOBS>/<OBSID>.fits          raws (``.fits.fz`` names are not used: compression is inside)
    DIR/raw/<DAYOBS>/<OBSID>.truth.json    truth of each raw (`lsst.ts.auxtelwep.sim.scene.Truth`)

``DIR`` is a data root for `lsst.ts.auxtelwep.intake.RawLocator`. Each triplet is one ``GROUPID`` and
takes consecutive sequence numbers in the order intra, extra, in-focus; its pointing is dithered by a few
arcsec from the plan's. The hexapod state may step from triplet to triplet (``hexapod_step``).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from pathlib import Path

import numpy as np
import pydantic
from astropy.table import Table

from ..errors import InputError
from ..instrument import BORESIGHT_PIXEL, DEFAULT_WAVELENGTH_M, DETECTOR_SHAPE, AuxTel, HexapodState, Role
from .scene import (
    ZERO_POINT_MAG,
    HexapodTruth,
    Observation,
    Pointing,
    simulate_exposure,
    true_wcs,
    truth_path,
)
from .signature import DetectorSignature, write_calibrations

__all__ = [
    "DEFAULT_POINTING",
    "ExposureRecord",
    "NightManifest",
    "NightPlan",
    "TripletRecord",
    "simulate_night",
]

_log = logging.getLogger(__name__)

_ROLES = (Role.INTRA, Role.EXTRA, Role.INFOCUS)
_ALIGNED = HexapodState()
# Default start of a night's first exposure: 02:00 TAI (22:00 in Chile, UTC-4) on the date after DAYOBS.
_NIGHT_START_HOUR_TAI = 2
DEFAULT_POINTING = Pointing(ra_deg=150.0, dec_deg=-30.0, rotpa_deg=0.0, elevation_deg=60.0)
"""Pointing of a night when none is given (a field that transits high at Cerro Pachon)."""


@dataclasses.dataclass(frozen=True)
class NightPlan:
    """What to simulate.

    Attributes
    ----------
    n_triplets : `int`
        Number of (intra, extra, in-focus) triplets, >= 1.
    seed : `int`
        Seed of the whole night (catalog, detector, every exposure).
    hexapod : `~lsst.ts.auxtelwep.instrument.HexapodState`
        Injected M2 state of the first triplet (without defocus).
    hexapod_step : `~lsst.ts.auxtelwep.instrument.HexapodState`
        Added to the state at each following triplet.
    pointing : `Pointing`
        Nominal pointing (boresight, sky rotation, elevation, camera angle).
    dither_arcsec : `float`
        RMS of the per-triplet pointing dither, arcsec per axis.
    seeing_arcsec, exptime_s, sky_e_per_px_per_s : `float`
        Kolmogorov FWHM (arcsec), exposure time (s), sky (e-/px/s).
    wavelength_m : `float`
        Wavelength of the optical model, metres.
    dayobs : `str`
        ``YYYYMMDD``.
    first_seqnum : `int`
        SEQNUM of the first exposure.
    start : `str`, optional
        ISO time (TAI) of the first exposure; default 02:00 on the date after ``dayobs`` (the night that
        DAYOBS names), so nights of different DAYOBS get different GROUPIDs, as real ones do.
    cadence_s : `float`
        Time from one exposure's start to the next, seconds.
    n_stars : `int`
        Random catalog stars (plus the blend pair and saturated star when asked).
    blend_pair, saturated_star : `bool`
        Add a forced blend pair / a saturated star to the catalog.
    wcs_error : `tuple` of `float`, optional
        ``(dx_px, dy_px, drot_deg)`` error of the header WCS; None writes the true WCS.
    header_wcs : `bool`
        Write a WCS in the headers at all.
    n_cosmic_rays : `int`
        Cosmic-ray tracks per exposure.
    compress : `bool`
        RICE-compress the raws.
    """

    n_triplets: int
    seed: int = 0
    hexapod: HexapodState = _ALIGNED
    hexapod_step: HexapodState = _ALIGNED
    pointing: Pointing = DEFAULT_POINTING
    dither_arcsec: float = 5.0
    seeing_arcsec: float = 1.0
    exptime_s: float = 20.0
    sky_e_per_px_per_s: float = 5.0
    wavelength_m: float = DEFAULT_WAVELENGTH_M
    dayobs: str = "20240624"
    first_seqnum: int = 1
    start: str | None = None
    cadence_s: float = 35.0
    n_stars: int = 10
    blend_pair: bool = True
    saturated_star: bool = False
    wcs_error: tuple[float, float, float] | None = None
    header_wcs: bool = True
    n_cosmic_rays: int = 5
    compress: bool = False

    def __post_init__(self) -> None:
        if self.n_triplets < 1:
            raise InputError(f"NightPlan.n_triplets={self.n_triplets} must be >= 1", value=self.n_triplets)
        try:
            datetime.datetime.strptime(self.dayobs, "%Y%m%d")
        except ValueError as exc:
            raise InputError(
                f"NightPlan.dayobs={self.dayobs!r} is not a date YYYYMMDD", value=self.dayobs
            ) from exc
        if self.start is not None:
            try:
                datetime.datetime.fromisoformat(self.start)
            except ValueError as exc:
                raise InputError(
                    f"NightPlan.start={self.start!r} is not an ISO time", value=self.start
                ) from exc

    def first_start(self) -> datetime.datetime:
        """Start of the first exposure (TAI): ``start``, else 02:00 on the date after ``dayobs``."""
        if self.start is not None:
            return datetime.datetime.fromisoformat(self.start)
        night = datetime.datetime.strptime(self.dayobs, "%Y%m%d") + datetime.timedelta(days=1)
        return night.replace(hour=_NIGHT_START_HOUR_TAI)

    def hexapod_of(self, triplet: int) -> HexapodState:
        """Injected state of triplet ``triplet`` (0-based).

        Parameters
        ----------
        triplet : `int`
            0-based triplet number; the state is ``hexapod + triplet * hexapod_step``.
        """
        return self.hexapod + self.hexapod_step.scaled(triplet)


class ExposureRecord(pydantic.BaseModel):
    """One exposure of the night; paths relative to the night directory."""

    model_config = pydantic.ConfigDict(frozen=True)
    obsid: str
    seqnum: int
    role: str
    raw: str
    truth: str


class TripletRecord(pydantic.BaseModel):
    """One triplet: a GROUPID, its injected state and its three exposures (intra, extra, infocus)."""

    model_config = pydantic.ConfigDict(frozen=True)
    groupid: str
    hexapod: HexapodTruth
    ra_deg: float
    dec_deg: float
    exposures: list[ExposureRecord]


class NightManifest(pydantic.BaseModel):
    """Contents of ``night.json``."""

    model_config = pydantic.ConfigDict(frozen=True)
    schema_version: int = 1
    dayobs: str
    seed: int
    camera_angle_deg: float
    seeing_arcsec: float
    exptime_s: float
    wavelength_m: float
    zero_point_mag: float
    refcat: str
    calibs: str
    raw_root: str
    triplets: list[TripletRecord]

    @classmethod
    def read(cls, path: str | Path) -> NightManifest:
        """Read ``night.json`` (or the directory holding it).

        Parameters
        ----------
        path : `str` or `pathlib.Path`
            The manifest file, or the night directory holding ``night.json``.

        Raises
        ------
        InputError
            If the file cannot be read or does not validate.
        """
        path = Path(path)
        path = path / "night.json" if path.is_dir() else path
        try:
            return cls.model_validate_json(path.read_text())
        except (OSError, pydantic.ValidationError) as exc:
            raise InputError(f"{path}: not a readable night manifest ({exc})", value=str(path)) from exc


def make_catalog(
    pointing: Pointing,
    *,
    seed: int,
    n_stars: int = 12,
    radius_deg: float = 0.08,
    mag_range: tuple[float, float] = (9.0, 13.0),
    blend_pair: bool = False,
    saturated_star: bool = False,
    min_separation_px: float = 260.0,
) -> Table:
    """A random reference catalog around a pointing.

    Stars are uniform over a disc of ``radius_deg`` about the boresight (the chip is about 0.108 deg wide,
    so some fall off it) with magnitudes uniform in ``mag_range``; a star closer than
    ``min_separation_px`` to an earlier one is redrawn, so only the forced pair blends. Options add a forced
    blend pair (two stars 60 px apart, 1 mag apart, on the chip) and a saturated star (magnitude 4.5, on
    the chip).

    Parameters
    ----------
    pointing : `Pointing`
        Boresight; the chip positions come from its true WCS.
    seed : `int`
        Seed of the random draws.
    n_stars : `int`, optional
        Number of field stars (besides the blend pair and the saturated star).
    radius_deg : `float`, optional
        Radius of the disc the field stars are drawn in, degrees.
    mag_range : `tuple` [`float`, `float`], optional
        Low and high magnitude of the field stars (and of the blend pair's brighter star).
    blend_pair : `bool`, optional
        Add the blend pair.
    saturated_star : `bool`, optional
        Add the saturated star.
    min_separation_px : `float`, optional
        Smallest distance between stars (except within the blend pair), assembled pixels.

    Returns
    -------
    catalog : `astropy.table.Table`
        Columns ``id`` (int), ``ra``, ``dec`` (deg, ICRS), ``mag``, ``note`` (``"field"``, ``"blend"``,
        ``"saturated"``).

    Raises
    ------
    InputError
        If an argument is out of range, or no free place is left for a star (on the chip for the forced
        ones, within ``radius_deg`` for the field stars).
    """
    if n_stars < 0 or radius_deg <= 0 or mag_range[0] > mag_range[1]:
        raise InputError(
            f"make_catalog needs n_stars >= 0, radius_deg > 0, mag_range low <= high; got {n_stars}, "
            f"{radius_deg}, {mag_range}",
            value=(n_stars, radius_deg, mag_range),
        )
    rng = np.random.default_rng(seed)
    wcs = true_wcs(pointing, AuxTel())
    scale_deg = AuxTel().plate_scale_arcsec_per_px / 3600.0
    cols: list[float] = []
    rows: list[float] = []
    notes: list[str] = []
    mags: list[float] = []
    margin = 350.0

    def free(col: float, row: float) -> bool:
        return all(np.hypot(col - c, row - r) >= min_separation_px for c, r in zip(cols, rows, strict=True))

    def place_on_chip() -> tuple[float, float]:
        for _ in range(1000):
            col = rng.uniform(margin, DETECTOR_SHAPE[1] - margin)
            row = rng.uniform(margin, DETECTOR_SHAPE[0] - margin)
            if free(col, row):
                return col, row
        raise InputError("make_catalog: no free place left on the chip; ask for fewer stars", value=n_stars)

    if saturated_star:
        col, row = place_on_chip()
        cols.append(col), rows.append(row), mags.append(4.5), notes.append("saturated")
    if blend_pair:
        col, row = place_on_chip()
        mag = rng.uniform(*mag_range)
        angle = rng.uniform(0, 2 * np.pi)
        cols += [col, col + 60.0 * np.cos(angle)]
        rows += [row, row + 60.0 * np.sin(angle)]
        mags += [mag, mag + 1.0]
        notes += ["blend", "blend"]
    for k in range(n_stars):
        for _attempt in range(1000):
            r = radius_deg * np.sqrt(rng.uniform()) / scale_deg
            phi = rng.uniform(0, 2 * np.pi)
            col = BORESIGHT_PIXEL[0] + r * np.cos(phi)
            row = BORESIGHT_PIXEL[1] + r * np.sin(phi)
            if free(col, row):
                break
        else:  # only the forced pair may blend: a crowded field is refused, not blended silently
            raise InputError(
                f"make_catalog: no place left for field star {k + 1} of {n_stars} at least "
                f"{min_separation_px} px from the others within radius_deg={radius_deg}; ask for fewer stars",
                value=n_stars,
            )
        cols.append(col), rows.append(row), mags.append(rng.uniform(*mag_range)), notes.append("field")
    ra, dec = wcs.pixel_to_world_values(np.array(cols), np.array(rows))
    table = Table()
    table["id"] = np.arange(len(cols), dtype=np.int64)
    table["ra"] = np.asarray(ra, dtype=float) % 360.0
    table["dec"] = np.asarray(dec, dtype=float)
    table["mag"] = np.round(mags, 3)
    table["note"] = notes
    table["ra"].unit = table["dec"].unit = "deg"
    table["mag"].unit = "mag"
    table.meta["comment"] = (
        f"simulated around RA {pointing.ra_deg:.5f}, Dec {pointing.dec_deg:.5f}, seed {seed}"
    )
    return table


def write_catalog(catalog: Table, path: str | Path) -> Path:
    """Write a catalog as ECSV (overwriting); return the path.

    Parameters
    ----------
    catalog : `astropy.table.Table`
        The catalog (e.g. from `make_catalog`).
    path : `str` or `pathlib.Path`
        Output file; its directory is created if missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    catalog.write(path, format="ascii.ecsv", overwrite=True)
    return path


def simulate_night(
    out_dir: str | Path, plan: NightPlan, *, signature: DetectorSignature | None = None
) -> NightManifest:
    """Write a night of triplets, its reference catalog, calibrations and truths under ``out_dir``.

    Parameters
    ----------
    out_dir : `str` or `pathlib.Path`
        Night directory (created; existing files of the same names are overwritten).
    plan : `NightPlan`
    signature : `~lsst.ts.auxtelwep.sim.signature.DetectorSignature`, optional
        Detector; default ``DetectorSignature.typical(seed=plan.seed)``.

    Returns
    -------
    manifest : `NightManifest`
        Also written to ``out_dir/night.json``.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(plan.seed).spawn(3 + 3 * plan.n_triplets)
    rng = np.random.default_rng(seeds[0])
    signature = signature or DetectorSignature.typical(seed=plan.seed)
    write_calibrations(signature, out_dir / "calibs", rng=np.random.default_rng(seeds[1]))
    catalog = make_catalog(
        plan.pointing,
        seed=int(seeds[2].generate_state(1)[0]),
        n_stars=plan.n_stars,
        blend_pair=plan.blend_pair,
        saturated_star=plan.saturated_star,
    )
    write_catalog(catalog, out_dir / "refcat.ecsv")
    start = plan.first_start()
    raw_dir = Path("raw") / plan.dayobs
    triplets = []
    for k in range(plan.n_triplets):
        dra, ddec = rng.normal(0.0, plan.dither_arcsec, 2) if plan.dither_arcsec > 0 else (0.0, 0.0)
        pointing = plan.pointing.dithered(float(dra), float(ddec))
        first = start + datetime.timedelta(seconds=3 * k * plan.cadence_s)
        groupid = first.isoformat(timespec="milliseconds")
        state = plan.hexapod_of(k)
        records = []
        for i, role in enumerate(_ROLES):
            seqnum = plan.first_seqnum + 3 * k + i
            when = first + datetime.timedelta(seconds=i * plan.cadence_s)
            observation = Observation(
                dayobs=plan.dayobs,
                seqnum=seqnum,
                groupid=groupid,
                date_obs=when.isoformat(timespec="milliseconds"),
            )
            raw = raw_dir / f"{observation.obsid}.fits"
            simulate_exposure(
                out_dir / raw,
                telescope_state=state,
                role=role,
                pointing=pointing,
                catalog=catalog,
                seeing_arcsec=plan.seeing_arcsec,
                exptime_s=plan.exptime_s,
                sky_e_per_px_per_s=plan.sky_e_per_px_per_s,
                seed=int(seeds[3 + 3 * k + i].generate_state(1)[0]),
                signature=signature,
                observation=observation,
                wcs_error=plan.wcs_error,
                header_wcs=plan.header_wcs,
                wavelength_m=plan.wavelength_m,
                n_cosmic_rays=plan.n_cosmic_rays,
                compress=plan.compress,
            )
            records.append(
                ExposureRecord(
                    obsid=observation.obsid,
                    seqnum=seqnum,
                    role=role.value,
                    raw=raw.as_posix(),
                    truth=truth_path(raw).as_posix(),
                )
            )
        triplets.append(
            TripletRecord(
                groupid=groupid,
                hexapod=HexapodTruth.of(state),
                ra_deg=pointing.ra_deg,
                dec_deg=pointing.dec_deg,
                exposures=records,
            )
        )
        _log.info("triplet %d/%d (%s) written", k + 1, plan.n_triplets, groupid)
    manifest = NightManifest(
        dayobs=plan.dayobs,
        seed=plan.seed,
        camera_angle_deg=plan.pointing.camera_angle_deg,
        seeing_arcsec=plan.seeing_arcsec,
        exptime_s=plan.exptime_s,
        wavelength_m=plan.wavelength_m,
        zero_point_mag=ZERO_POINT_MAG,
        refcat="refcat.ecsv",
        calibs="calibs",
        raw_root=".",
        triplets=triplets,
    )
    (out_dir / "night.json").write_text(manifest.model_dump_json(indent=1))
    _log.info("night of %d triplets in %s (%.1f s)", plan.n_triplets, out_dir, time.perf_counter() - t0)
    return manifest
