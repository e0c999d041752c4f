"""The AuxTel optical model and the LATISS focal-plane geometry.

Conventions, stated once for the whole package
----------------------------------------------
- Hexapod state (x, y, z in mm; u, v in degrees) is the M2 hexapod position relative to the aligned
  telescope, in the hexapod (telescope) frame. Positive z moves M2 toward M1, which is batoid's M2
  shifted by **-z** along its local z axis. The hexapod's x, y axes are batoid's local M2 axes turned by
  `HEXAPOD_TO_BATOID_ANGLE_DEG` (180 degrees), chosen so that the model's sensitivity matrix has the signs
  of the ops script's published matrix at zero rotation; u, v are tilts about the hexapod x and y axes.
- The camera (LATISS, on the Nasmyth rotator) is turned by ``camera_angle_deg`` relative to the hexapod
  frame: a hexapod vector (x, y) or (u, v) appears in batoid's (detector) frame rotated counter-clockwise
  by that angle. The simulator and the correction both use `rotate_xy`, so the convention is one function.
  On the sky it is the mount's elevation minus its Nasmyth-2 rotator angle (`camera_angle_from_mount`).
- Intra-focal images are taken with M2 at hexapod z = +0.8 mm, extra-focal ones at z = -(0.8 + 0.0011) mm
  so that both donuts have the same size (FACTS.md section 1).
- Pixels: the assembled LATISS frame, numpy order ``image[row, col]``, 0-based. Column = batoid detector x,
  row = batoid detector y. Field angle (0, 0) lands on the boresight pixel (col 2035.5, row 1999.5).
- Zernikes: Noll indices, annular with obscuration 0.3525, in micrometres. ``kind="opd"`` is batoid's
  `batoid.zernike` (wavefront referenced to the sphere about the chief ray), ``kind="ta"`` is
  `batoid.zernikeTA` (fit to transverse ray aberrations, what a geometric donut model sees). They agree to
  a few nm for small perturbations; every truth names its kind.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Literal

import batoid
import galsim
import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InputError, check_type
from .model_cache import cached_arrays

__all__ = [
    "APERTURE_DIAMETER_M",
    "BORESIGHT_PIXEL",
    "DEFAULT_NOLL",
    "DEFAULT_WAVELENGTH_M",
    "DETECTOR_SHAPE",
    "EXTRA_FOCUS_Z_MM",
    "HEXAPOD_TO_BATOID_ANGLE_DEG",
    "INTRA_FOCUS_Z_MM",
    "MAX_NOLL",
    "MOUNT_STEADY_DEG",
    "OBSCURATION",
    "PIXEL_SIZE_M",
    "PUBLISHED_SENSITIVITY_MM_PER_NM",
    "AuxTel",
    "HexapodState",
    "Role",
    "SensitivityMap",
    "ZernikeKind",
    "camera_angle_from_mount",
    "pair_camera_angle",
    "rotate_xy",
    "zernike_ta_um",
]

APERTURE_DIAMETER_M = 1.2
"""Diameter of the entrance pupil (M1), metres."""
OBSCURATION = 0.3525
"""Fractional central obscuration (Baffle_M2c radius 0.2115 m over 0.6 m)."""
PIXEL_SIZE_M = 10.0e-6
"""LATISS ITL pixel pitch, metres."""
DETECTOR_SHAPE = (4000, 4072)
"""Shape of the assembled LATISS image, ``(rows, cols)``."""
BORESIGHT_PIXEL = (2035.5, 1999.5)
"""0-based ``(col, row)`` of field angle (0, 0) in the assembled frame."""
INTRA_FOCUS_Z_MM = 0.8
"""Hexapod z offset of intra-focal exposures, mm (M2 toward M1)."""
EXTRA_FOCUS_Z_MM = -(0.8 + 0.0011)
"""Hexapod z offset of extra-focal exposures, mm (slightly larger, so both donuts are the same size)."""
HEXAPOD_TO_BATOID_ANGLE_DEG = 180.0
"""Angle from the hexapod frame to batoid's M2 frame at zero camera rotation, degrees."""
DEFAULT_WAVELENGTH_M = 677e-9
"""Effective wavelength used when none is given (the r-band value used to fit the 2021 LATISS donuts)."""
DEFAULT_NOLL = tuple(range(4, 23))
"""Default Noll indices of the estimated wavefront, Z4-Z22."""
MAX_NOLL = 37
"""Highest Noll index the model's Zernikes (and hence its sensitivity) go to."""

PUBLISHED_SENSITIVITY_MM_PER_NM = np.array(
    [
        [0.00688945, -0.00008867, 0.00004848],
        [0.00031787, -0.00650340, -0.00007319],
        [-0.00000782, -0.00003023, 0.00025634],
    ]
)
"""The ops script's matrix (ts_externalscripts latiss_base_align): ``[coma_x, coma_y, focus]`` nm -> hexapod
``[x, y, z]`` mm, used after the rotation of FACTS.md section 2. Kept for comparison only."""

ZernikeKind = Literal["opd", "ta"]

# Finite-difference steps for the sensitivity matrix: large enough to beat ray-trace noise, small
# enough to stay linear (the quadratic terms at these steps are below 0.1 nm).
_SENSITIVITY_STEP = (0.1, 0.1, 0.02, 0.01, 0.01)
_SENSITIVITY_GRID_DEG = (-0.055, 0.0, 0.055)  # the chip spans +-0.054 deg
_ZERNIKE_RAYS = 20  # rings of rays for zernikeTA; 20 x 120 rays converge to < 0.1 nm here
_OPD_GRID = 64  # pupil grid for zernike (OPD)


class Role(enum.Enum):
    """Role of an exposure in a wavefront triplet."""

    INTRA = "intra"
    """Intra-focal: M2 moved toward M1 by `INTRA_FOCUS_Z_MM`."""
    EXTRA = "extra"
    """Extra-focal: M2 moved away from M1 by `EXTRA_FOCUS_Z_MM`."""
    INFOCUS = "infocus"
    """In focus: used for source detection and astrometry."""

    @property
    def focus_z_mm(self) -> float:
        """Hexapod z offset at which images of this role are taken, mm."""
        return {Role.INTRA: INTRA_FOCUS_Z_MM, Role.EXTRA: EXTRA_FOCUS_Z_MM, Role.INFOCUS: 0.0}[self]


def rotate_xy(
    x: ArrayLike, y: ArrayLike, angle_deg: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Rotate vectors ``(x, y)`` counter-clockwise by ``angle_deg``.

    Parameters
    ----------
    x, y : array-like of float
        Components, any (matching) shape, any unit.
    angle_deg : `float`
        Rotation angle, degrees.

    Returns
    -------
    xr, yr : `numpy.ndarray`
        Rotated components, same unit.
    """
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    return c * x - s * y, s * x + c * y


#: Largest motion of a mount axis over one telemetry message (1 s) that is still tracking, degrees.
MOUNT_STEADY_DEG = 0.5


def camera_angle_from_mount(elevation_deg: ArrayLike, nasmyth2_deg: ArrayLike) -> float | None:
    """The camera angle (module conventions) from the mount's axes, degrees.

    The ops script turns its Zernike vector by ``90 - bore_sight_angle`` with ``bore_sight_angle =
    elevation + nasmyth angle + 90`` (FACTS.md section 2); that angle is the negative of
    ``camera_angle_deg``, which is thus ``elevation + nasmyth angle``. LATISS sits on Nasmyth port 2, whose
    parity is -1: ts_observatory_control's ``ATCS.get_bore_sight_angle`` takes the nasmyth angle as
    ``-nasmyth2CalculatedAngle`` (so do ts_externalscripts' tests, "instrument on nasmyth2, so parity_x =
    -1"). ATMCS publishes both axes at 100 Hz, 100 samples per telemetry message.

    Parameters
    ----------
    elevation_deg, nasmyth2_deg : array-like of float
        Samples of the elevation and of the Nasmyth-2 rotator angle (NaN samples are ignored).

    Returns
    -------
    angle : `float` or `None`
        Mean elevation - mean Nasmyth-2 angle, wrapped to [-180, 180); None without a finite sample of each,
        or when either axis moved by more than `MOUNT_STEADY_DEG` over the samples (a slew, not tracking:
        the angle during the exposure is not known from them).
    """
    elevation = np.asarray(elevation_deg, dtype=float).ravel()
    nasmyth = np.asarray(nasmyth2_deg, dtype=float).ravel()
    elevation, nasmyth = elevation[np.isfinite(elevation)], nasmyth[np.isfinite(nasmyth)]
    if elevation.size == 0 or nasmyth.size == 0:
        return None
    if max(np.ptp(elevation), np.ptp(nasmyth)) > MOUNT_STEADY_DEG:
        return None
    return float((elevation.mean() - nasmyth.mean() + 180.0) % 360.0 - 180.0)


def pair_camera_angle(intra_deg: float | None, extra_deg: float | None) -> float | None:
    """The camera angle of a defocal pair: the mean of the two images' (the rotator tracks between them), or
    the one known (None when neither is).

    Parameters
    ----------
    intra_deg, extra_deg : `float` or `None`
        The images' camera angles, degrees.
    """
    known = [a for a in (intra_deg, extra_deg) if a is not None]
    if not known:
        return None
    # Through the difference: 179 and -179 deg average to 180, not 0.
    mean = known[0] + ((known[-1] - known[0] + 180.0) % 360.0 - 180.0) / 2.0
    return (mean + 180.0) % 360.0 - 180.0


def _finite_float(name: str, value: object, unit: str) -> float:
    """``value`` as a float, refused unless it is a finite real number (a string is not one)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise InputError(
            f"{name}={value!r} ({type(value).__name__}) is not a finite number of {unit}", value=value
        )
    return float(value)


@dataclasses.dataclass(frozen=True)
class HexapodState:
    """Position of the M2 hexapod relative to the aligned telescope, in the hexapod frame.

    Attributes
    ----------
    x, y, z : `float`
        Decenter (x, y) and piston (z, positive toward M1), mm.
    u, v : `float`
        Tilts about x and y, degrees.

    Raises
    ------
    InputError
        If a value is not a finite real number.
    """

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    u: float = 0.0
    v: float = 0.0

    AXES = ("x", "y", "z", "u", "v")

    def __post_init__(self) -> None:
        for axis in self.AXES:
            unit = "mm" if axis in "xyz" else "degrees"
            object.__setattr__(self, axis, _finite_float(f"hexapod {axis}", getattr(self, axis), unit))

    def as_array(self) -> NDArray[np.float64]:
        """Return ``[x, y, z, u, v]`` (mm, mm, mm, deg, deg)."""
        return np.array([self.x, self.y, self.z, self.u, self.v], dtype=float)

    @classmethod
    def from_array(cls, values: ArrayLike) -> HexapodState:
        """Build from ``[x, y, z, u, v]`` (mm, mm, mm, deg, deg).

        Parameters
        ----------
        values : array-like
            Five numbers, in that order.
        """
        arr = np.asarray(values, dtype=float).reshape(-1)
        if arr.shape != (5,):
            raise InputError(f"a hexapod state needs 5 values (x, y, z, u, v), got {arr.shape[0]}", value=arr)
        return cls(*(float(v) for v in arr))

    def __add__(self, other: HexapodState) -> HexapodState:
        return HexapodState.from_array(self.as_array() + other.as_array())

    def __sub__(self, other: HexapodState) -> HexapodState:
        return HexapodState.from_array(self.as_array() - other.as_array())

    def __neg__(self) -> HexapodState:
        return HexapodState.from_array(-self.as_array())

    def scaled(self, factor: float | ArrayLike) -> HexapodState:
        """Return the state multiplied by ``factor`` (a scalar or one factor per axis).

        Parameters
        ----------
        factor : `float` or array-like
            One factor, or five (x, y, z, u, v).
        """
        return HexapodState.from_array(self.as_array() * np.asarray(factor, dtype=float))

    def with_offset(self, **offsets: float) -> HexapodState:
        """Return the state with the named axes (``x=...``, ``z=...``) increased by the given amounts."""
        unknown = set(offsets) - set(self.AXES)
        if unknown:
            raise InputError(
                f"unknown hexapod axes {sorted(unknown)}", value=sorted(unknown), allowed=self.AXES
            )
        return dataclasses.replace(self, **{k: getattr(self, k) + v for k, v in offsets.items()})

    def rotated(self, angle_deg: float) -> HexapodState:
        """Return the state with (x, y) and (u, v) rotated counter-clockwise by ``angle_deg``.

        Parameters
        ----------
        angle_deg : `float`
            Rotation, degrees; z is unchanged.
        """
        x, y = rotate_xy(self.x, self.y, angle_deg)
        u, v = rotate_xy(self.u, self.v, angle_deg)
        return HexapodState(float(x), float(y), self.z, float(u), float(v))


@functools.cache
def _design_optic() -> batoid.Optic:
    """batoid's AuxTel, read once: parsing its YAML costs 30 ms, more than a ray trace."""
    return batoid.Optic.fromYaml("AuxTel.yaml")


@functools.lru_cache(maxsize=64)
def _perturbed_optic(batoid_state: tuple[float, float, float, float, float]) -> batoid.Optic:
    """AuxTel with M2 moved by a batoid-frame state (x, y, z mm in batoid's sign; u, v deg)."""
    x, y, z, u, v = batoid_state
    optic = _design_optic()  # the with... methods return new optics and leave it as it is
    if any(batoid_state):
        optic = optic.withLocallyShiftedOptic("M2", [x * 1e-3, y * 1e-3, z * 1e-3])
        if u or v:
            optic = optic.withLocallyRotatedOptic(
                "M2", batoid.RotX(np.deg2rad(u)) @ batoid.RotY(np.deg2rad(v))
            )
    return optic


_DESIGN_KEY = (0.0, 0.0, 0.0, 0.0, 0.0)


def _traced(
    optic_key: tuple[float, ...],
    field_x_deg: float,
    field_y_deg: float,
    wavelength_m: float,
    make: Callable[..., batoid.RayVector],
    *args: float,
    **kwargs: int,
) -> batoid.RayVector:
    """Rays of a star at a field angle made by ``make`` (a `batoid.RayVector` constructor), traced through
    an optic (`AuxTel.optic_key`)."""
    optic = _perturbed_optic(optic_key)
    theta_x, theta_y = np.deg2rad(field_x_deg), np.deg2rad(field_y_deg)
    return optic.trace(
        make(*args, optic=optic, wavelength=wavelength_m, theta_x=theta_x, theta_y=theta_y, **kwargs)
    )


@functools.lru_cache(maxsize=256)
def _chief_ray_m(
    optic_key: tuple[float, ...], field_x_deg: float, field_y_deg: float, wavelength_m: float
) -> tuple[float, float]:
    """Detector (x, y), metres, of the chief ray of an optic (`AuxTel.optic_key`) at a field angle."""
    ray = _traced(optic_key, field_x_deg, field_y_deg, wavelength_m, batoid.RayVector.fromStop, 0.0, 0.0)
    # The chief ray is always "vignetted" (by M2's central baffle): only a failed trace means no position.
    if ray.failed[0] or not (np.isfinite(ray.x[0]) and np.isfinite(ray.y[0])):
        raise InputError(
            f"the chief ray at field ({field_x_deg}, {field_y_deg}) deg misses the detector for M2 at "
            f"{optic_key} (batoid frame, mm and deg)",
            value=optic_key,
        )
    return float(ray.x[0]), float(ray.y[0])


def _no_ray_error(optic_key: tuple[float, ...], field_x_deg: float, field_y_deg: float) -> InputError:
    return InputError(
        f"no ray at field ({field_x_deg}, {field_y_deg}) deg reaches the detector for M2 at {optic_key} "
        "(batoid frame, mm and deg)",
        value=optic_key,
    )


# Pupil rays for a donut's light centroid: rings x spokes of `batoid.RayVector.asPolar`. At 2.8 mm of
# decenter the centroid then lands within 0.3 px of the simulator's rendered one (6 x 24 rays: 2.4 px).
_CENTROID_RINGS, _CENTROID_SPOKES = 20, 60


@functools.lru_cache(maxsize=256)
def _light_centroid_m(
    optic_key: tuple[float, ...], field_x_deg: float, field_y_deg: float, wavelength_m: float
) -> tuple[float, float]:
    """Detector (x, y), metres, of the mean of the unvignetted pupil rays of a star (`AuxTel.optic_key`)."""
    rays = _traced(
        optic_key,
        field_x_deg,
        field_y_deg,
        wavelength_m,
        batoid.RayVector.asPolar,
        nrad=_CENTROID_RINGS,
        naz=_CENTROID_SPOKES,
    )
    ok = ~rays.vignetted & np.isfinite(rays.x) & np.isfinite(rays.y)
    if not ok.any():
        raise _no_ray_error(optic_key, field_x_deg, field_y_deg)
    return float(np.mean(rays.x[ok])), float(np.mean(rays.y[ok]))


@functools.lru_cache(maxsize=8)
def _field_to_detector_jacobian(wavelength_m: float) -> NDArray[np.float64]:
    """d(detector x, y in pixels) / d(field angle x, y in degrees), from chief rays of the design."""
    step = 0.02
    x0, y0 = _chief_ray_m(_DESIGN_KEY, 0.0, 0.0, wavelength_m)
    (x1, y1), (x2, y2) = (_chief_ray_m(_DESIGN_KEY, *f, wavelength_m) for f in ((step, 0.0), (0.0, step)))
    jac = np.array([[x1 - x0, x2 - x0], [y1 - y0, y2 - y0]]) / step / PIXEL_SIZE_M
    jac.setflags(write=False)
    return jac


@dataclasses.dataclass(frozen=True)
class AuxTel:
    """AuxTel with LATISS, in a given M2 hexapod state: an immutable value.

    Parameters
    ----------
    hexapod : `HexapodState`
        M2 position in the hexapod frame (including any defocus offset).
    camera_angle_deg : `float`
        Rotation of the camera relative to the hexapod frame, degrees (see module docstring).
    wavelength_m : `float`
        Wavelength of the monochromatic model, metres.

    Raises
    ------
    InputError
        If ``hexapod`` is not a `HexapodState` or ``camera_angle_deg`` not a finite number.

    Notes
    -----
    Build variants with the ``with_*`` methods; the batoid optic behind each state is built once and
    cached (batoid optics are not modified by tracing).
    """

    hexapod: HexapodState = HexapodState()
    camera_angle_deg: float = 0.0
    wavelength_m: float = DEFAULT_WAVELENGTH_M

    def __post_init__(self) -> None:
        # A sim truth's HexapodTruth has the axes too, but not the state's arithmetic: say how to convert.
        convert = "; a HexapodTruth (sim truth file) converts with .to_state()"
        check_type(
            "hexapod",
            self.hexapod,
            HexapodState,
            hint="build one with HexapodState(x=..., z=...) or HexapodState.from_array([x, y, z, u, v])"
            + (convert if hasattr(self.hexapod, "to_state") else ""),
        )
        object.__setattr__(
            self, "camera_angle_deg", _finite_float("camera_angle_deg", self.camera_angle_deg, "degrees")
        )

    # --- builders ---------------------------------------------------------------------------------
    def with_hexapod(self, hexapod: HexapodState) -> AuxTel:
        """Return the telescope with M2 at ``hexapod`` (a `HexapodState`; `InputError` otherwise).

        Parameters
        ----------
        hexapod : `HexapodState`
            M2 position relative to the aligned telescope (mm, deg), hexapod frame.
        """
        return dataclasses.replace(self, hexapod=hexapod)

    def with_hexapod_offset(self, **offsets: float) -> AuxTel:
        """Return the telescope with M2 moved by the named offsets (``z=0.8``, ``x=0.1``...)."""
        return dataclasses.replace(self, hexapod=self.hexapod.with_offset(**offsets))

    def with_role(self, role: Role) -> AuxTel:
        """Return the telescope defocused as for an image of ``role`` (adds the role's z offset).

        Parameters
        ----------
        role : `Role`
            Intra, extra or in focus.
        """
        return self.with_hexapod_offset(z=role.focus_z_mm)

    def with_camera_angle(self, camera_angle_deg: float) -> AuxTel:
        """Return the telescope with the camera turned to ``camera_angle_deg`` (a finite number).

        Parameters
        ----------
        camera_angle_deg : `float`
            Camera rotation relative to the hexapod frame, degrees (module conventions).
        """
        return dataclasses.replace(self, camera_angle_deg=camera_angle_deg)

    def with_wavelength(self, wavelength_m: float) -> AuxTel:
        """Return the telescope modelled at ``wavelength_m`` metres.

        Parameters
        ----------
        wavelength_m : `float`
            Wavelength, metres, within 300-1100 nm.
        """
        if not 300e-9 < wavelength_m < 1100e-9:
            raise InputError(f"wavelength_m={wavelength_m} is outside 300-1100 nm", value=wavelength_m)
        return dataclasses.replace(self, wavelength_m=float(wavelength_m))

    # --- optics -----------------------------------------------------------------------------------
    @property
    def batoid_state(self) -> tuple[float, float, float, float, float]:
        """M2 perturbation in batoid's frame and sign: (x, y, z mm; u, v deg)."""
        rotated = self.hexapod.rotated(self.camera_angle_deg + HEXAPOD_TO_BATOID_ANGLE_DEG)
        return (rotated.x, rotated.y, -rotated.z, rotated.u, rotated.v)

    @property
    def optic(self) -> batoid.Optic:
        """The batoid optic of this state (shared and cached: do not modify it)."""
        return _perturbed_optic(self.optic_key)

    @property
    def focal_length_m(self) -> float:
        """Effective focal length of the design, metres (about 21.6 m)."""
        return float(_field_to_detector_jacobian(self.wavelength_m)[0, 0] * PIXEL_SIZE_M / np.deg2rad(1.0))

    @property
    def plate_scale_arcsec_per_px(self) -> float:
        """Plate scale at the boresight from the optical model, arcsec per pixel."""
        return float(3600.0 / _field_to_detector_jacobian(self.wavelength_m)[0, 0])

    # --- focal-plane geometry ---------------------------------------------------------------------
    def field_to_pixel(self, field_x_deg: ArrayLike, field_y_deg: ArrayLike) -> tuple[NDArray, NDArray]:
        """Map field angles to assembled-frame pixels.

        Parameters
        ----------
        field_x_deg, field_y_deg : array-like of float
            Field angles in batoid's frame, degrees.

        Returns
        -------
        col, row : `numpy.ndarray`
            0-based pixel coordinates (col = x) of the chief ray in the nominal focus.
        """
        jac = _field_to_detector_jacobian(self.wavelength_m)
        fx = np.asarray(field_x_deg, dtype=float)
        fy = np.asarray(field_y_deg, dtype=float)
        col = BORESIGHT_PIXEL[0] + jac[0, 0] * fx + jac[0, 1] * fy
        row = BORESIGHT_PIXEL[1] + jac[1, 0] * fx + jac[1, 1] * fy
        return col, row

    def chief_ray_pixel(self, field_x_deg: float, field_y_deg: float) -> tuple[float, float]:
        """Where the chief ray of a star lands in this state, 0-based assembled-frame pixels.

        Unlike `field_to_pixel` (the design's mapping) this follows M2: decentring it moves the chief ray by
        554 px per mm (the light centroid, `light_centroid_pixel`, by 548). The design's on-axis chief ray
        lands on the boresight pixel, as in `field_to_pixel`.

        Parameters
        ----------
        field_x_deg, field_y_deg : `float`
            Field angle of the star, batoid frame, degrees.
        """
        x, y = _chief_ray_m(self.optic_key, float(field_x_deg), float(field_y_deg), self.wavelength_m)
        x0, y0 = _chief_ray_m(_DESIGN_KEY, 0.0, 0.0, self.wavelength_m)
        return BORESIGHT_PIXEL[0] + (x - x0) / PIXEL_SIZE_M, BORESIGHT_PIXEL[1] + (y - y0) / PIXEL_SIZE_M

    def light_centroid_pixel(self, field_x_deg: float, field_y_deg: float) -> tuple[float, float]:
        """Where the light of a star lands in this state (the in-focus centroid), 0-based pixels.

        What detection measures for a donut (the mean of the intra and extra centroids is the in-focus one
        to 0.01 px). Decentring M2 moves it by 548 px per mm, 1.1 % less than the chief ray (554): the two
        differ by the mean slope of the wavefront, ~16 px at 2.8 mm of decenter, where the coma is 0.5 um.
        Same origin as `chief_ray_pixel`.

        Parameters
        ----------
        field_x_deg, field_y_deg : `float`
            Field angle of the star, batoid frame, degrees.

        Returns
        -------
        col, row : `float`
            0-based assembled-frame pixel of the mean of the unvignetted pupil rays.

        Raises
        ------
        InputError
            If no ray reaches the detector.
        """
        x, y = _light_centroid_m(self.optic_key, float(field_x_deg), float(field_y_deg), self.wavelength_m)
        x0, y0 = _chief_ray_m(_DESIGN_KEY, 0.0, 0.0, self.wavelength_m)
        return BORESIGHT_PIXEL[0] + (x - x0) / PIXEL_SIZE_M, BORESIGHT_PIXEL[1] + (y - y0) / PIXEL_SIZE_M

    def star_field(
        self, field_x_deg: float, field_y_deg: float, *, tol_px: float = 0.01, max_steps: int = 4
    ) -> tuple[float, float]:
        """Field angle of the star whose light lands where the design puts that of ``(field_x, field_y)``.

        The pipeline takes a donut's field from its pixel through the design's mapping (`pixel_to_field`);
        with M2 at this state's hexapod position the image has moved (~548 px per mm of decenter), so the
        star there is elsewhere. Newton steps with the design's field-to-pixel Jacobian (the image motion
        is nearly uniform over the chip: two or three traces), on `light_centroid_pixel`.

        Parameters
        ----------
        field_x_deg, field_y_deg : `float`
            Field angle of the donut's pixel through the design's mapping, batoid frame, degrees.
        tol_px : `float`
            Stop when a step moves the star's image by less than this, pixels.
        max_steps : `int`
            Most Newton steps.

        Returns
        -------
        field_x_deg, field_y_deg : `float`
            The star's field angle, degrees; the input itself when M2 is at the aligned position.

        Raises
        ------
        InputError
            If the star's light misses the detector on the way (M2 centimetres away).
        """
        fx, fy = float(field_x_deg), float(field_y_deg)
        if self.optic_key == _DESIGN_KEY:
            return fx, fy
        design = dataclasses.replace(self, hexapod=HexapodState())
        target = np.array(design.light_centroid_pixel(fx, fy))
        jac = _field_to_detector_jacobian(self.wavelength_m)
        star = np.array([fx, fy])
        for _ in range(max_steps):
            miss = np.array(self.light_centroid_pixel(*star)) - target
            if np.hypot(*miss) < tol_px:
                break
            star = star - np.linalg.solve(jac, miss)
        return float(star[0]), float(star[1])

    def pixel_to_field(self, col: ArrayLike, row: ArrayLike) -> tuple[NDArray, NDArray]:
        """Inverse of `field_to_pixel`: 0-based pixels to field angles in degrees.

        Parameters
        ----------
        col, row : array-like
            Assembled-frame pixel positions (x = column).
        """
        jac_inv = np.linalg.inv(_field_to_detector_jacobian(self.wavelength_m))
        dc = np.asarray(col, dtype=float) - BORESIGHT_PIXEL[0]
        dr = np.asarray(row, dtype=float) - BORESIGHT_PIXEL[1]
        return jac_inv[0, 0] * dc + jac_inv[0, 1] * dr, jac_inv[1, 0] * dc + jac_inv[1, 1] * dr

    def donut_radii_px(self, field_x_deg: float = 0.0, field_y_deg: float = 0.0) -> tuple[float, float]:
        """Outer and inner radius of the geometric donut in this state, pixels.

        Parameters
        ----------
        field_x_deg, field_y_deg : `float`, optional
            Field angle of the star, batoid frame, degrees (default on axis).
        """
        optic = self.optic
        rays = batoid.RayVector.asPolar(
            optic=optic,
            wavelength=self.wavelength_m,
            theta_x=np.deg2rad(field_x_deg),
            theta_y=np.deg2rad(field_y_deg),
            nrad=40,
            naz=180,
        )
        traced = optic.trace(rays)
        ok = ~traced.vignetted
        if not ok.any():  # before the means, which would warn
            raise _no_ray_error(self.optic_key, field_x_deg, field_y_deg)
        x, y = traced.x[ok], traced.y[ok]
        r = np.hypot(x - x.mean(), y - y.mean()) / PIXEL_SIZE_M
        return float(r.max()), float(r.min())

    # --- wavefront --------------------------------------------------------------------------------
    def zernikes(
        self,
        field_x_deg: float = 0.0,
        field_y_deg: float = 0.0,
        *,
        noll: Sequence[int] = DEFAULT_NOLL,
        kind: ZernikeKind = "ta",
    ) -> NDArray[np.float64]:
        """Zernike coefficients of the wavefront of this state at a field angle.

        Parameters
        ----------
        field_x_deg, field_y_deg : `float`
            Field angle in batoid's frame, degrees.
        noll : sequence of `int`
            Noll indices to return (1-based, at most 37).
        kind : {"ta", "opd"}
            Transverse-aberration fit (`batoid.zernikeTA`) or wavefront (`batoid.zernike`).

        Returns
        -------
        coefs : `numpy.ndarray`, shape (len(noll),)
            Coefficients in micrometres, in the order of ``noll``.
        """
        noll_arr = _check_noll(noll)
        return _zernikes(
            self.optic_key,
            float(field_x_deg),
            float(field_y_deg),
            self.wavelength_m,
            int(noll_arr.max()),
            kind,
        )[noll_arr].copy()

    @property
    def optic_key(self) -> tuple[float, ...]:
        """Hashable key of the optic (rounded batoid state), for caches."""
        return tuple(round(v, 12) for v in self.batoid_state)

    def sensitivity(
        self,
        field_x_deg: float = 0.0,
        field_y_deg: float = 0.0,
        *,
        noll: Sequence[int] = DEFAULT_NOLL,
        kind: ZernikeKind = "ta",
    ) -> NDArray[np.float64]:
        """Sensitivity of the wavefront to hexapod motion about this state, by central differences.

        Parameters
        ----------
        field_x_deg, field_y_deg : `float`
            Field angle, degrees.
        noll : sequence of `int`
            Noll indices (rows).
        kind : {"ta", "opd"}
            Zernike definition (see `zernikes`).

        Returns
        -------
        matrix : `numpy.ndarray`, shape (len(noll), 5)
            d(Zernike, um) / d(hexapod x, y, z mm; u, v deg), hexapod axes in the hexapod frame.
        """
        columns = []
        for axis, step in zip(HexapodState.AXES, _SENSITIVITY_STEP, strict=True):
            plus = self.with_hexapod_offset(**{axis: step}).zernikes(
                field_x_deg, field_y_deg, noll=noll, kind=kind
            )
            minus = self.with_hexapod_offset(**{axis: -step}).zernikes(
                field_x_deg, field_y_deg, noll=noll, kind=kind
            )
            columns.append((plus - minus) / (2 * step))
        return np.stack(columns, axis=1)

    def sensitivity_map(
        self, *, noll: Sequence[int] = DEFAULT_NOLL, kind: ZernikeKind = "ta"
    ) -> SensitivityMap:
        """`sensitivity` as a function of the field angle, built once and then free to evaluate.

        The field dependence over the chip is a quadratic to about 1e-4 (tests/test_instrument.py),
        fitted to `sensitivity` on a 3 x 3 grid of field angles (about 0.6 s) once per M2 state and
        wavelength, whatever the camera angle: turning the camera only turns the hexapod axes in batoid's
        frame, so the map of one angle, multiplied by that rotation, serves them all. The fit is kept in
        memory and in the cache directory (`model_cache`), so that later processes read it.

        Parameters
        ----------
        noll : sequence of `int`
            Noll indices (rows).
        kind : {"ta", "opd"}
            Zernike definition (see `zernikes`).
        """
        noll_key = tuple(int(j) for j in _check_noll(noll))
        angle = self.camera_angle_deg + HEXAPOD_TO_BATOID_ANGLE_DEG
        coefs, motion_coefs = _sensitivity_fit(self.optic_key, self.wavelength_m, noll_key, kind)
        # Column a of `rotation`: the batoid-frame motion made by a unit motion of hexapod axis a.
        rotation = np.stack(
            [HexapodState.from_array(np.eye(5)[a]).rotated(angle).as_array() for a in range(5)], axis=1
        )
        return SensitivityMap(coefs=coefs @ rotation, image_motion_coefs=motion_coefs @ rotation)


@dataclasses.dataclass(frozen=True)
class SensitivityMap:
    """`AuxTel.sensitivity` over the field: a quadratic in the field angle, for any number of donuts.

    Moving M2 also moves the image (~548 px per mm of decenter), so the star whose donut sits at a given
    pixel changes with it. A deviation measured at a pixel's field (the design's mapping) therefore varies
    as the sensitivity minus the wavefront's field gradient times that motion: 3 nm of Z4 for 0.2 mm of
    decenter at the edge of the chip, which the linear model would read as 0.8 um of focus.
    ``at(..., follow_image=True)`` includes it.

    Attributes
    ----------
    coefs : `numpy.ndarray`, shape (6, nrows, 5)
        Coefficients of ``1, x, y, x**2, x*y, y**2`` (field angle in degrees) for each matrix element, in
        the frame of `AuxTel.sensitivity` with the camera angle of the map.
    image_motion_coefs : `numpy.ndarray`, shape (6, nrows, 5)
        The same for the part that the image's motion adds at a fixed pixel (gradient of the wavefront
        over the field times the field shift per unit hexapod motion).
    """

    coefs: NDArray[np.float64]
    image_motion_coefs: NDArray[np.float64]

    def __repr__(self) -> str:
        """A one-line summary: arrays as their shape and dtype (`reprs.summary_repr`)."""
        from .reprs import summary_repr

        return summary_repr(self)

    def at(
        self, field_x_deg: ArrayLike, field_y_deg: ArrayLike, *, follow_image: bool = False
    ) -> NDArray[np.float64]:
        """Sensitivity matrices at the given field angles, shape (n, nrows, 5) (see `AuxTel.sensitivity`).

        Parameters
        ----------
        field_x_deg, field_y_deg : array-like
            Field angles, degrees.
        follow_image : `bool`
            The fields are fixed pixels' (through the design's mapping), so the stars there change as M2
            moves the image; False: the fields are the stars' own.
        """
        coefs = self.coefs + self.image_motion_coefs if follow_image else self.coefs
        return np.einsum("nk,krc->nrc", _quadratic_terms(field_x_deg, field_y_deg), coefs)


def _quadratic_terms(field_x_deg: ArrayLike, field_y_deg: ArrayLike) -> NDArray[np.float64]:
    x = np.atleast_1d(np.asarray(field_x_deg, dtype=float))
    y = np.atleast_1d(np.asarray(field_y_deg, dtype=float))
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


@functools.lru_cache(maxsize=16)
def _sensitivity_fit(
    batoid_state: tuple[float, ...], wavelength_m: float, noll: tuple[int, ...], kind: ZernikeKind
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """`_fit_sensitivity`, kept in memory and on disk (`model_cache`): 0.6 s of ray tracing otherwise paid
    by every fresh process."""
    key = {
        # -0.0 and 0.0 (a rotated zero state) are the same optic: one file for both.
        "batoid_state": [float(v) + 0.0 for v in batoid_state],
        "wavelength_m": float(wavelength_m),
        "noll": [int(j) for j in noll],
        "kind": kind,
        "batoid": batoid.__version__,
        "galsim": galsim.__version__,
        "numpy": np.__version__,
    }
    shape = (6, len(noll), 5)
    coefs, motion_coefs = cached_arrays(
        "sensitivity_fit",
        key,
        functools.partial(_fit_sensitivity, batoid_state, wavelength_m, noll, kind),
        shapes=(shape, shape),
        sources=(__file__,),
    )
    return coefs, motion_coefs


def _fit_sensitivity(
    batoid_state: tuple[float, ...], wavelength_m: float, noll: tuple[int, ...], kind: ZernikeKind
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Quadratic fits over the chip of `SensitivityMap`'s two parts, hexapod axes aligned with batoid's."""
    x, y, z, u, v = batoid_state
    aligned = AuxTel(HexapodState(x, y, -z, u, v), -HEXAPOD_TO_BATOID_ANGLE_DEG, wavelength_m)
    grid = np.array([(fx, fy) for fx in _SENSITIVITY_GRID_DEG for fy in _SENSITIVITY_GRID_DEG])
    terms = _quadratic_terms(grid[:, 0], grid[:, 1])
    values = np.array([aligned.sensitivity(fx, fy, noll=noll, kind=kind) for fx, fy in grid])
    coefs, *_ = np.linalg.lstsq(terms, values.reshape(len(grid), -1))
    coefs = coefs.reshape(6, *values.shape[1:])

    wavefront = np.array([aligned.zernikes(fx, fy, noll=noll, kind=kind) for fx, fy in grid])
    w, *_ = np.linalg.lstsq(terms, wavefront)
    # The field gradient of a quadratic, in the same basis (1, x, y, x^2, xy, y^2).
    zero = np.zeros_like(w[0])
    d_dx = np.stack([w[1], 2 * w[3], w[4], zero, zero, zero])
    d_dy = np.stack([w[2], w[4], 2 * w[5], zero, zero, zero])
    # Field shift of the image per unit hexapod motion: nearly uniform over the chip, taken on axis.
    motion = np.zeros((2, 5))
    for a, (axis, step) in enumerate(zip(HexapodState.AXES, _SENSITIVITY_STEP, strict=True)):
        ends = [
            aligned.pixel_to_field(*aligned.with_hexapod_offset(**{axis: s}).chief_ray_pixel(0.0, 0.0))
            for s in (step, -step)
        ]
        motion[:, a] = (np.array(ends[0], dtype=float) - np.array(ends[1], dtype=float)) / (2 * step)
    # The star seen at a fixed pixel moves against the image: d/dm W(m, f - motion m) = S - grad W . motion.
    motion_coefs = -(d_dx[:, :, None] * motion[0] + d_dy[:, :, None] * motion[1])
    return coefs, motion_coefs


def _check_noll(noll: Sequence[int]) -> NDArray[np.int64]:
    arr = np.asarray(noll, dtype=int).reshape(-1)
    if arr.size == 0 or arr.min() < 1 or arr.max() > MAX_NOLL:
        raise InputError(
            f"Noll indices must lie in 1..{MAX_NOLL}, got {list(arr)}", value=list(arr), allowed=(1, MAX_NOLL)
        )
    return arr


@functools.lru_cache(maxsize=4096)
def _zernikes(
    optic_key: tuple[float, ...],
    field_x_deg: float,
    field_y_deg: float,
    wavelength_m: float,
    jmax: int,
    kind: ZernikeKind,
) -> NDArray[np.float64]:
    optic = _perturbed_optic(optic_key)
    if kind not in ("ta", "opd"):
        raise InputError(f"unknown Zernike kind {kind!r}", value=kind, allowed=("ta", "opd"))
    missed = (
        f"the optical model has no wavefront for M2 at {optic_key} (batoid frame, mm and deg) and field "
        f"({field_x_deg}, {field_y_deg}) deg: its rays miss the detector"
    )
    try:
        # Checked before the fit, which warns (empty means, NaN determinants) on its way to failing.
        _light_centroid_m(optic_key, field_x_deg, field_y_deg, wavelength_m)
    except InputError as exc:
        raise InputError(missed, value=optic_key) from exc
    try:
        if kind == "ta":
            coefs = zernike_ta_um(optic, field_x_deg, field_y_deg, wavelength_m, jmax=jmax)
        else:
            thx, thy = np.deg2rad(field_x_deg), np.deg2rad(field_y_deg)
            waves = batoid.zernike(
                optic, thx, thy, wavelength_m, nx=_OPD_GRID, reference="chief", jmax=jmax, eps=OBSCURATION
            )
            coefs = np.asarray(waves) * wavelength_m * 1e6
    except RuntimeError as exc:  # galsim's fit of too few rays
        raise InputError(f"{missed} ({exc})", value=optic_key) from exc
    coefs.setflags(write=False)
    return coefs


def zernike_ta_um(
    optic: batoid.Optic,
    field_x_deg: float,
    field_y_deg: float,
    wavelength_m: float,
    *,
    jmax: int,
    focal_length_m: float | None = None,
) -> NDArray[np.float64]:
    """batoid's transverse-aberration Zernikes of ``optic`` at a field angle, micrometres.

    Parameters
    ----------
    optic : `batoid.Optic`
        Any AuxTel optic (perturbed, defocused...).
    field_x_deg, field_y_deg : `float`
        Field angle, batoid frame, degrees.
    wavelength_m : `float`
        Wavelength, metres.
    jmax : `int`
        Highest Noll index.
    focal_length_m : `float`, optional
        Focal length relating ray displacements to wavefront slopes (default: the optic's own).

    Returns
    -------
    coefs : `numpy.ndarray`, shape (jmax + 1,)
        Annular Zernikes (obscuration `OBSCURATION`), indexed by Noll index (``coefs[0]`` unused).
    """
    waves = batoid.zernikeTA(
        optic,
        np.deg2rad(field_x_deg),
        np.deg2rad(field_y_deg),
        wavelength_m,
        nrad=_ZERNIKE_RAYS,
        naz=6 * _ZERNIKE_RAYS,
        reference="chief",
        jmax=jmax,
        eps=OBSCURATION,
        focal_length=focal_length_m,
    )
    return np.asarray(waves) * wavelength_m * 1e6
