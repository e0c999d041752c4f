"""Truth of the simulations: the injected wavefront and records of what went into an image.

Zernike truths are the in-focus deviation of the perturbed telescope from the design at the star's field
position, in micrometres, Noll indices carried next to the values. `StampTruth` describes a stamp pair
(`lsst.ts.auxtelwep.sim.stamp_pair`); `Truth` (with `StarTruth`, `HexapodTruth`) one simulated exposure,
written as JSON beside its raw (`truth_path`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydantic
from numpy.typing import NDArray

from ..errors import InputError
from ..instrument import DEFAULT_NOLL, AuxTel, HexapodState, ZernikeKind
from ..reprs import summary_repr

__all__ = ["HexapodTruth", "StampTruth", "StarTruth", "Truth", "true_zernikes", "truth_path"]


def true_zernikes(
    telescope: AuxTel,
    field_x_deg: float,
    field_y_deg: float,
    *,
    noll: Sequence[int] = DEFAULT_NOLL,
    kind: ZernikeKind = "ta",
) -> NDArray[np.float64]:
    """In-focus wavefront deviation from the design at a field position, micrometres.

    Parameters
    ----------
    telescope : `~lsst.ts.auxtelwep.instrument.AuxTel`
        The perturbed *in-focus* state (no role defocus), with its camera angle and wavelength.
    field_x_deg, field_y_deg : `float`
        Field angle, degrees, batoid frame.
    noll : sequence of `int`
        Noll indices.
    kind : {"ta", "opd"}
        Zernike definition (`lsst.ts.auxtelwep.instrument.AuxTel.zernikes`).

    Returns
    -------
    coefs : `numpy.ndarray`, shape (len(noll),)
        ``telescope`` minus the unperturbed design at the same wavelength, micrometres.
    """
    design = AuxTel(wavelength_m=telescope.wavelength_m)
    return telescope.zernikes(field_x_deg, field_y_deg, noll=noll, kind=kind) - design.zernikes(
        field_x_deg, field_y_deg, noll=noll, kind=kind
    )


@dataclasses.dataclass(frozen=True, eq=False)
class StampTruth:
    """What went into a `StampPair`.

    Attributes
    ----------
    hexapod : `~lsst.ts.auxtelwep.instrument.HexapodState`
        Injected in-focus M2 state (without the role defocus).
    camera_angle_deg, wavelength_m, seeing_arcsec : `float`
        Camera angle (degrees), wavelength (metres), Kolmogorov FWHM (arcsec).
    field_deg : `tuple` of `float`
        Field angle ``(x, y)``, degrees, batoid frame.
    flux_e, sky_e : `float`
        Requested flux through the pupil and sky per pixel, electrons.
    noll : `tuple` of `int`
        Noll indices of the Zernike arrays.
    zernikes_ta_um, zernikes_opd_um : `numpy.ndarray`, shape (len(noll),)
        In-focus deviation from the design (`true_zernikes`), micrometres, read-only.
    intra_centroid, extra_centroid : `tuple` of `float`
        True light centroid ``(col, row)`` inside each stamp, 0-based.
    intra_origin, extra_origin : `tuple` of `int`
        Assembled-frame ``(col, row)`` of each stamp's ``[0, 0]`` pixel.
    """

    hexapod: HexapodState
    camera_angle_deg: float
    wavelength_m: float
    seeing_arcsec: float
    field_deg: tuple[float, float]
    flux_e: float
    sky_e: float
    noll: tuple[int, ...]
    zernikes_ta_um: NDArray[np.float64]
    zernikes_opd_um: NDArray[np.float64]
    intra_centroid: tuple[float, float]
    extra_centroid: tuple[float, float]
    intra_origin: tuple[int, int]
    extra_origin: tuple[int, int]

    def __repr__(self) -> str:
        """A one-line summary: arrays as their shape and dtype (`reprs.summary_repr`)."""
        return summary_repr(self)


class HexapodTruth(pydantic.BaseModel):
    """A hexapod state in the truth file: x, y, z mm; u, v deg (instrument.HexapodState)."""

    model_config = pydantic.ConfigDict(frozen=True)
    x: float
    y: float
    z: float
    u: float
    v: float

    @classmethod
    def of(cls, state: HexapodState) -> HexapodTruth:
        """Record a hexapod state in a truth file.

        Parameters
        ----------
        state : `~lsst.ts.auxtelwep.instrument.HexapodState`
            The state to record.

        Returns
        -------
        truth : `HexapodTruth`
            The same five values.
        """
        return cls(**dataclasses.asdict(state))

    def to_state(self) -> HexapodState:
        """The recorded state as the `~lsst.ts.auxtelwep.instrument.HexapodState` the optical model takes.

        Returns
        -------
        state : `~lsst.ts.auxtelwep.instrument.HexapodState`
            For ``AuxTel().with_hexapod(...)``, arithmetic and the pipeline's corrections.
        """
        return HexapodState(self.x, self.y, self.z, self.u, self.v)


class StarTruth(pydantic.BaseModel):
    """One catalog star as simulated. Pixels are 0-based assembled-frame ``(col = x, row = y)``."""

    model_config = pydantic.ConfigDict(frozen=True)
    id: int
    ra_deg: float
    dec_deg: float
    mag: float
    note: str = ""  # the catalog's note column, if any
    field_x_deg: float
    field_y_deg: float
    wcs_col: float  # where the TRUE WCS puts the star (nominal chief ray)
    wcs_row: float
    col: float  # light centroid of the donut in this image (unclipped by the chip edge)
    row: float
    flux_e: float  # electrons reaching the focal plane
    flux_on_chip_e: float  # of which on the chip
    on_chip: bool  # the centroid is on the chip
    # kind ("ta", "opd") -> in-focus deviation from design at Truth.noll, um; empty for stars not rendered
    zernikes_um: dict[str, list[float]]


class Truth(pydantic.BaseModel):
    """Everything that went into one simulated exposure (written as JSON beside the raw)."""

    model_config = pydantic.ConfigDict(frozen=True)
    schema_version: int = 1
    obsid: str
    raw_file: str  # file name, in the truth's directory
    role: str  # Role value: intra, extra, infocus
    dayobs: str
    seqnum: int
    groupid: str
    hexapod: HexapodTruth  # injected state, without the role defocus
    hexapod_with_defocus: HexapodTruth  # what M2 actually was at
    focus_z_mm: float  # header FOCUSZ
    camera_angle_deg: float
    wavelength_m: float
    seeing_arcsec: float
    exptime_s: float
    darktime_s: float
    sky_e_per_px_per_s: float
    zero_point_mag: float
    ra_deg: float
    dec_deg: float
    rotpa_deg: float
    elevation_deg: float
    noll: list[int]
    zernike_units: str = "um"
    stars: list[StarTruth]
    true_wcs: dict[str, float | int | str]  # FITS cards of the true WCS
    header_wcs: dict[str, float | int | str] | None  # the WCS written in the header (None: absent)
    wcs_error: tuple[float, float, float] | None  # (dx_px, dy_px, drot_deg), None when exact or absent
    render_method: str
    seed: int

    def write(self, path: str | Path) -> Path:
        """Write as indented JSON; return the path.

        Parameters
        ----------
        path : `str` or `pathlib.Path`
            Output file (overwritten); see `truth_path`.
        """
        path = Path(path)
        path.write_text(self.model_dump_json(indent=1))
        return path

    @classmethod
    def read(cls, path: str | Path) -> Truth:
        """Read a truth file written by `write`.

        Parameters
        ----------
        path : `str` or `pathlib.Path`
            A truth file.

        Raises
        ------
        InputError
            If the file cannot be read or does not validate.
        """
        try:
            return cls.model_validate_json(Path(path).read_text())
        except (OSError, pydantic.ValidationError) as exc:
            raise InputError(f"{path}: not a readable truth file ({exc})", value=str(path)) from exc


def truth_path(raw_path: str | Path) -> Path:
    """Truth file of a raw: ``<dir>/<OBSID>.truth.json`` beside ``<dir>/<OBSID>.fits[.fz]``.

    Parameters
    ----------
    raw_path : `str` or `pathlib.Path`
        Path of the raw (``.fits`` or ``.fits.fz``).
    """
    raw_path = Path(raw_path)
    name = raw_path.name
    for suffix in (".fits.fz", ".fits"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return raw_path.with_name(f"{name}.truth.json")
