"""Instrument geometry for the TIE solver, and the ray-traced pupil-to-image mapping of a design.

The TIE solver (`lsst.ts.auxtelwep.estimation.tie`) knows nothing about AuxTel: it takes a `TieGeometry`
(aperture, obscuration, focal length, pixel size, defocus offset, wavelength) and, for the ``offAxis`` optical
model, an `OpticalDesign` that says where each pupil point lands in a defocused image (a `PupilMap`) and what
the design's own (intrinsic) Zernikes are at a field angle.

Frames and units
----------------
- Normalised pupil coordinates ``(u, v)``: the entrance pupil divided by its outer radius, ``x`` and ``y``
  as in batoid; the annulus is ``obscuration <= r <= 1``.
- Image positions: detector x (= stamp column) and y (= stamp row), metres in a `PupilMap`, relative to a
  reference ray (the chief ray); the solver works in pixels.
- Zernikes: annular, Noll indices, micrometres (see `lsst.ts.auxtelwep.zernikes`), ``kind="ta"`` for AuxTel:
  a TIE measures ray slopes, which is what batoid's transverse-aberration Zernikes describe.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Literal, Protocol, runtime_checkable

import batoid
import galsim
import numpy as np
from numpy.typing import NDArray

from .. import instrument, zernikes
from ..errors import ConfigurationError, InputError
from ..instrument import APERTURE_DIAMETER_M, OBSCURATION, PIXEL_SIZE_M, AuxTel, Role
from ..model_cache import cached_arrays

__all__ = [
    "AuxTelDesign",
    "MaskCircle",
    "OpticalDesign",
    "PupilMap",
    "Side",
    "TieGeometry",
    "auxtel_detector_offset_m",
]

_log = logging.getLogger(__name__)

Side = Literal["intra", "extra"]

_MAP_JMAX = 28  # Zernike terms of the ray-traced pupil map; residuals < 0.002 px for AuxTel (tested)
_MAP_RINGS = 24  # rings of traced rays for the pupil map
_MAX_VIGNETTED = 0.02  # fraction of traced annulus rays allowed to be vignetted before we refuse


@dataclasses.dataclass(frozen=True)
class MaskCircle:
    """A circular pupil-mask element, in normalised pupil coordinates.

    Attributes
    ----------
    center_u, center_v : `float`
        Centre of the circle.
    radius : `float`
        Radius of the circle.
    clear : `bool`
        True if light passes inside the circle (an aperture), False if it is blocked inside (an obscuration).
    """

    center_u: float
    center_v: float
    radius: float
    clear: bool


@dataclasses.dataclass(frozen=True, eq=False)
class PupilMap:
    """Where the pupil lands in one defocused image of the design: a Zernike series per image axis.

    Attributes
    ----------
    noll : `tuple` of `int`
        Noll indices of the series.
    x_coefs_m, y_coefs_m : `numpy.ndarray`, shape ``(len(noll),)``
        Annular Zernike coefficients (obscuration ``obscuration``, radius 1 in normalised pupil coordinates)
        of the detector x and y position of each pupil point, metres, relative to the reference ray.
    obscuration : `float`
        Inner radius of the annulus of the series.
    vignetting : `tuple` of `MaskCircle`
        Extra mask elements (beyond the annulus) that vignette the beam at this field angle.
    """

    noll: tuple[int, ...]
    x_coefs_m: NDArray[np.float64]
    y_coefs_m: NDArray[np.float64]
    obscuration: float
    vignetting: tuple[MaskCircle, ...] = ()

    def __post_init__(self) -> None:
        noll = zernikes.check_noll(self.noll, name="PupilMap.noll")
        for name in ("x_coefs_m", "y_coefs_m"):
            arr = np.array(getattr(self, name), dtype=float).reshape(-1)
            if arr.shape != (len(noll),) or not np.all(np.isfinite(arr)):
                raise InputError(f"PupilMap.{name} needs {len(noll)} finite values, got shape {arr.shape}")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "noll", noll)

    @classmethod
    def from_samples(
        cls,
        u: NDArray[np.float64],
        v: NDArray[np.float64],
        x_m: NDArray[np.float64],
        y_m: NDArray[np.float64],
        *,
        obscuration: float,
        jmax: int = _MAP_JMAX,
        vignetting: tuple[MaskCircle, ...] = (),
    ) -> PupilMap:
        """Fit a map to sampled (pupil point, image position) pairs, e.g. from a ray trace.

        Parameters
        ----------
        u, v : `numpy.ndarray`, shape ``(n,)``
            Normalised pupil coordinates of the samples.
        x_m, y_m : `numpy.ndarray`, shape ``(n,)``
            Detector positions, metres, relative to the reference ray.
        obscuration : `float`
            Annulus of the fitted series.
        jmax : `int`
            Highest Noll index of the series.
        vignetting : `tuple` of `MaskCircle`
            Mask elements to carry along.
        """
        noll = tuple(range(1, jmax + 1))
        cx = zernikes.fit(x_m, u, v, noll=noll, obscuration=obscuration)
        cy = zernikes.fit(y_m, u, v, noll=noll, obscuration=obscuration)
        return cls(noll, cx, cy, obscuration, vignetting)

    @classmethod
    def from_monomials(
        cls,
        x_coefs_mm: NDArray[np.float64],
        y_coefs_mm: NDArray[np.float64],
        *,
        obscuration: float,
        vignetting: tuple[MaskCircle, ...] = (),
    ) -> PupilMap:
        """Build a map from 2-D polynomials in ``(u, v)`` (the layout of Zemax-derived cwfs tables).

        Parameters
        ----------
        x_coefs_mm, y_coefs_mm : `numpy.ndarray`, shape ``((n + 1) * (n + 2) / 2,)``
            Coefficients of ``u**(k - i) * v**i`` for total degree ``k = 0..n`` and ``i = 0..k``, in that
            order; detector positions in millimetres.
        obscuration : `float`
            Annulus of the Zernike series the polynomial is converted to (exactly, for degree <= 14).
        vignetting : `tuple` of `MaskCircle`
            Mask elements of this field angle.
        """
        cx = np.asarray(x_coefs_mm, dtype=float).reshape(-1)
        cy = np.asarray(y_coefs_mm, dtype=float).reshape(-1)
        degree = round((np.sqrt(8 * cx.size + 1) - 3) / 2)
        if cx.size != (degree + 1) * (degree + 2) // 2 or cy.size != cx.size:
            raise InputError(
                f"monomial tables need (n+1)(n+2)/2 coefficients each, got {cx.size} and {cy.size}",
                value=(cx.size, cy.size),
            )
        # Sample the polynomial on rings covering the annulus and fit an exact Zernike series of that degree.
        r = np.linspace(obscuration, 1.0, 2 * degree + 6)
        theta = np.linspace(0.0, 2 * np.pi, 8 * degree + 16, endpoint=False)
        rr, tt = np.meshgrid(r, theta)
        u, v = (rr * np.cos(tt)).ravel(), (rr * np.sin(tt)).ravel()
        powers = [(k - i, i) for k in range(degree + 1) for i in range(k + 1)]
        mono = np.stack([u**p * v**q for p, q in powers])
        jmax = (degree + 1) * (degree + 2) // 2
        return cls.from_samples(
            u,
            v,
            cx @ mono * 1e-3,
            cy @ mono * 1e-3,
            obscuration=obscuration,
            jmax=jmax,
            vignetting=vignetting,
        )


@runtime_checkable
class OpticalDesign(Protocol):
    """What the ``offAxis`` model needs to know about an optical design."""

    def pupil_map(self, field_x_deg: float, field_y_deg: float, side: Side) -> PupilMap:
        """The design's pupil-to-image mapping of a donut at a field angle, on one side of focus.

        Parameters
        ----------
        field_x_deg, field_y_deg : `float`
            Field angle of the donut, batoid frame, degrees.
        side : `str`
            ``"intra"`` or ``"extra"``.
        """
        ...

    def intrinsic_zernikes_um(
        self, field_x_deg: float, field_y_deg: float, noll: tuple[int, ...]
    ) -> NDArray[np.float64]:
        """The design's in-focus wavefront at a field angle, micrometres, in the order of ``noll``.

        Parameters
        ----------
        field_x_deg, field_y_deg : `float`
            Field angle, batoid frame, degrees.
        noll : `tuple` of `int`
            Noll indices wanted.
        """
        ...


@dataclasses.dataclass(frozen=True)
class AuxTelDesign:
    """The AuxTel/LATISS design as an `OpticalDesign`, by ray tracing with batoid.

    Parameters
    ----------
    telescope : `AuxTel`
        The in-focus state whose wavefront counts as "intrinsic" (normally the aligned design, hexapod 0).
        Donuts are modelled with it moved to the intra and extra roles (`Role.focus_z_mm`).
    """

    telescope: AuxTel = dataclasses.field(default_factory=AuxTel)

    def pupil_map(self, field_x_deg: float, field_y_deg: float, side: Side) -> PupilMap:
        """Ray-trace the donut of ``side`` at a field angle (degrees, batoid frame) and fit the mapping.

        Parameters
        ----------
        field_x_deg, field_y_deg : `float`
            Field angle of the donut, batoid frame, degrees (rounded to 1e-7 for the cache).
        side : `str`
            ``"intra"`` or ``"extra"``.

        Raises
        ------
        InputError
            If ``side`` is neither, or the field angle vignettes more than 2 % of the pupil.
        """
        if side not in ("intra", "extra"):
            raise InputError(f"side must be 'intra' or 'extra', got {side!r}", value=side)
        return _auxtel_pupil_map(
            self.telescope, round(float(field_x_deg), 7), round(float(field_y_deg), 7), side
        )

    def intrinsic_zernikes_um(
        self, field_x_deg: float, field_y_deg: float, noll: tuple[int, ...]
    ) -> NDArray[np.float64]:
        """The in-focus transverse-aberration Zernikes of ``telescope`` (`AuxTel.zernikes`, ``kind="ta"``).

        Parameters
        ----------
        field_x_deg, field_y_deg : `float`
            Field angle, batoid frame, degrees.
        noll : `tuple` of `int`
            Noll indices wanted.

        Returns
        -------
        zernikes : `numpy.ndarray`, shape (len(noll),)
            Micrometres.
        """
        return self.telescope.zernikes(
            round(float(field_x_deg), 7), round(float(field_y_deg), 7), noll=noll, kind="ta"
        )


@functools.lru_cache(maxsize=256)
def _auxtel_pupil_map(telescope: AuxTel, field_x_deg: float, field_y_deg: float, side: Side) -> PupilMap:
    role = Role.INTRA if side == "intra" else Role.EXTRA
    optic = telescope.with_role(role).optic
    radius = optic.pupilSize / 2
    thx, thy = np.deg2rad(field_x_deg), np.deg2rad(field_y_deg)
    # Rings evenly spaced in r^2 (equal areas) across the annulus, about 6 rays per unit of ring radius.
    r = np.sqrt(np.linspace(OBSCURATION**2, 1.0, _MAP_RINGS))
    u_list, v_list = [], []
    for rk in r:
        naz = max(12, int(6 * _MAP_RINGS * rk))
        th = np.linspace(0, 2 * np.pi, naz, endpoint=False) + 0.5 * rk
        u_list.append(rk * np.cos(th))
        v_list.append(rk * np.sin(th))
    u, v = np.concatenate(u_list), np.concatenate(v_list)
    kwargs = {"optic": optic, "wavelength": telescope.wavelength_m, "theta_x": thx, "theta_y": thy}
    traced = optic.trace(batoid.RayVector.fromStop(u * radius, v * radius, **kwargs))
    chief = optic.trace(batoid.RayVector.fromStop(0.0, 0.0, **kwargs))
    ok = ~traced.vignetted
    # Rays on the very edge of the annulus may graze a baffle; count only the interior.
    interior = (np.hypot(u, v) > OBSCURATION + 0.02) & (np.hypot(u, v) < 0.98)
    frac = 1.0 - np.count_nonzero(ok & interior) / np.count_nonzero(interior)
    if frac > _MAX_VIGNETTED:
        raise InputError(
            f"field angle ({field_x_deg}, {field_y_deg}) deg vignettes {frac:.1%} of the AuxTel pupil; "
            f"the annular pupil model of the TIE allows at most {_MAX_VIGNETTED:.0%}",
            value=(field_x_deg, field_y_deg),
        )
    x = traced.x[ok] - chief.x[0]
    y = traced.y[ok] - chief.y[0]
    pmap = PupilMap.from_samples(u[ok], v[ok], x, y, obscuration=OBSCURATION)
    resid = np.hypot(
        zernikes.evaluate(pmap.x_coefs_m, pmap.noll, u[ok], v[ok], obscuration=OBSCURATION) - x,
        zernikes.evaluate(pmap.y_coefs_m, pmap.noll, u[ok], v[ok], obscuration=OBSCURATION) - y,
    )
    _log.debug(
        "AuxTel %s pupil map at (%g, %g) deg: fit residual max %.4f px",
        side,
        field_x_deg,
        field_y_deg,
        resid.max() / PIXEL_SIZE_M,
    )
    return pmap


def _z4_ta_um(optic: batoid.Optic, wavelength_m: float) -> float:
    waves = batoid.zernikeTA(
        optic, 0.0, 0.0, wavelength_m, nrad=20, naz=120, reference="chief", jmax=4, eps=OBSCURATION
    )
    return float(waves[4] * wavelength_m * 1e6)


@functools.lru_cache(maxsize=8)
def auxtel_detector_offset_m(telescope: AuxTel) -> float:
    """Detector displacement equivalent to the AuxTel donut defocus (M2 moved), from batoid, metres.

    For each of the intra and extra roles, the detector of the defocused optic is moved along its axis until
    the on-axis defocus (Zernike Z4, transverse-aberration fit) vanishes; the result is the mean of the two
    distances (intra about 34.97 mm, extra about 34.49 mm at M2 +-0.8 mm, so about 34.73 mm). Kept in the
    cache directory too (`lsst.ts.auxtelwep.model_cache`): 16 ray-trace fits a fresh process need not redo.

    Parameters
    ----------
    telescope : `AuxTel`
        Telescope state; its ``with_role`` gives the defocused optics, and its wavelength is used.
    """
    optic_keys = {role: telescope.with_role(role).optic_key for role in (Role.INTRA, Role.EXTRA)}
    key = {
        # -0.0 and 0.0 (a rotated zero state) are the same optic: one file for both.
        **{role.value: [v + 0.0 for v in optic_key] for role, optic_key in optic_keys.items()},
        "wavelength_m": telescope.wavelength_m,
        "batoid": batoid.__version__,
        "galsim": galsim.__version__,
        "numpy": np.__version__,
    }
    (offset,) = cached_arrays(
        "detector_offset",
        key,
        functools.partial(_detector_offset_m, telescope),
        shapes=((),),
        sources=(__file__, instrument.__file__),
    )
    return float(offset)


def _detector_offset_m(telescope: AuxTel) -> tuple[NDArray[np.float64]]:
    distances = []
    for role in (Role.INTRA, Role.EXTRA):
        optic = telescope.with_role(role).optic
        wavelength = telescope.wavelength_m

        def z4(dz: float, optic: batoid.Optic = optic, wavelength: float = wavelength) -> float:
            shifted = optic.withLocallyShiftedOptic("AuxTel.LATISS.Detector", [0.0, 0.0, dz])
            return _z4_ta_um(shifted, wavelength)

        dz, step = 0.0, 1e-3
        for _ in range(4):  # secant/Newton steps; Z4 is nearly linear in dz, 3 steps reach 1e-9 m
            z0 = z4(dz)
            slope = (z4(dz + step) - z0) / step
            dz -= z0 / slope
        distances.append(abs(dz))
    return (np.mean(distances),)


@dataclasses.dataclass(frozen=True)
class TieGeometry:
    """The instrument as the TIE sees it: an immutable value.

    Attributes
    ----------
    name : `str`
        Label for messages and logs.
    aperture_diameter_m : `float`
        Entrance pupil diameter, metres.
    obscuration : `float`
        Central obscuration as a fraction of the pupil radius (also the annulus of the Zernikes).
    focal_length_m : `float`
        Effective focal length, metres.
    pixel_size_m : `float`
        Detector pixel pitch, metres.
    defocus_offset_m : `float`
        Distance of the donut planes from focus, measured at the detector, metres (for AuxTel the equivalent
        of the M2 offset, see `auxtel_detector_offset_m`).
    wavelength_m : `float`
        Wavelength, metres (the geometric TIE does not use it; ray-traced designs do).
    design : `OpticalDesign` or None
        Pupil maps and intrinsic Zernikes of the design, needed by the ``offAxis`` model.
    """

    name: str
    aperture_diameter_m: float
    obscuration: float
    focal_length_m: float
    pixel_size_m: float
    defocus_offset_m: float
    wavelength_m: float
    design: OpticalDesign | None = None

    def __post_init__(self) -> None:
        for attr in (
            "aperture_diameter_m",
            "focal_length_m",
            "pixel_size_m",
            "defocus_offset_m",
            "wavelength_m",
        ):
            value = getattr(self, attr)
            if not (np.isfinite(value) and value > 0):
                raise ConfigurationError(
                    f"TieGeometry {self.name!r}: {attr} must be positive, got {value}", value=value
                )
        if not 0.0 <= self.obscuration < 1.0:
            raise ConfigurationError(
                f"TieGeometry {self.name!r}: obscuration must lie in [0, 1), got {self.obscuration}",
                value=self.obscuration,
                allowed=(0.0, 1.0),
            )
        if self.defocus_offset_m >= 0.5 * self.focal_length_m:
            raise ConfigurationError(
                f"TieGeometry {self.name!r}: defocus offset {self.defocus_offset_m} m is not small compared "
                f"with the focal length {self.focal_length_m} m",
                value=self.defocus_offset_m,
            )
        if self.design is not None and not isinstance(self.design, OpticalDesign):
            raise ConfigurationError(
                f"TieGeometry {self.name!r}: design must provide pupil_map() and intrinsic_zernikes_um(), "
                f"got {type(self.design).__name__}",
                value=self.design,
            )

    @property
    def pupil_radius_m(self) -> float:
        """Outer radius of the entrance pupil, metres."""
        return 0.5 * self.aperture_diameter_m

    @property
    def donut_radius_px(self) -> float:
        """Paraxial outer radius of a donut, pixels (pupil radius x offset / focal length)."""
        return self.pupil_radius_m * self.defocus_offset_m / self.focal_length_m / self.pixel_size_m

    @property
    def f_number(self) -> float:
        """Focal ratio."""
        return self.focal_length_m / self.aperture_diameter_m

    @classmethod
    def auxtel(cls, telescope: AuxTel | None = None) -> TieGeometry:
        """AuxTel/LATISS, with every number from `lsst.ts.auxtelwep.instrument` and batoid.

        Parameters
        ----------
        telescope : `AuxTel`, optional
            The reference in-focus state (default: the aligned design at its default wavelength).
        """
        telescope = AuxTel() if telescope is None else telescope
        return cls(
            name="AuxTel",
            aperture_diameter_m=APERTURE_DIAMETER_M,
            obscuration=OBSCURATION,
            focal_length_m=telescope.focal_length_m,
            pixel_size_m=PIXEL_SIZE_M,
            defocus_offset_m=auxtel_detector_offset_m(telescope),
            wavelength_m=telescope.wavelength_m,
            design=AuxTelDesign(telescope),
        )

    @classmethod
    def lsst_published(cls, design: OpticalDesign | None = None) -> TieGeometry:
        """The LSST geometry of the published cwfs test cases (Xin et al. 2015).

        D 8.36 m, obscuration 0.61, f 10.312 m, 10 um pixels, detector offset 1.0 mm. The wavelength
        (622 nm, r band) is nominal: the published cases are geometric.

        Parameters
        ----------
        design : `OpticalDesign`, optional
            Pupil maps for the ``offAxis`` model (the cwfs Zemax tables); None for onAxis/paraxial only.
        """
        return cls(
            name="LSST (cwfs published cases)",
            aperture_diameter_m=8.36,
            obscuration=0.61,
            focal_length_m=10.312,
            pixel_size_m=10e-6,
            defocus_offset_m=1.0e-3,
            wavelength_m=622e-9,
            design=design,
        )
