"""The optics behind the forward model: AuxTel's pupil mask for danish, danish factories, design references.

Every number comes from `lsst.ts.auxtelwep.instrument` or the batoid model behind it, never from danish's
defaults (which describe LSST).
"""

from __future__ import annotations

import functools
from typing import Any

import batoid
import danish
import galsim
import numpy as np
from numpy.typing import NDArray

from .. import instrument
from ..errors import InputError
from ..instrument import (
    APERTURE_DIAMETER_M,
    OBSCURATION,
    PIXEL_SIZE_M,
    AuxTel,
    HexapodState,
    Role,
    zernike_ta_um,
)
from ..model_cache import cached_arrays

__all__ = [
    "auxtel_mask_params",
    "design_fits",
    "design_references",
    "design_zernikes_ta",
    "fresnel_image",
    "install_design_fits",
    "make_factory",
]

# Field radius over which the baffle shadows are modelled: LATISS corners are at 0.076 deg.
_MASK_THETA_MAX_DEG = 0.2
_BAFFLES = (("Baffle_M2c", False), ("Baffle_M1", True))


@functools.lru_cache(maxsize=8)
def auxtel_mask_params(wavelength_m: float) -> dict:
    """Pupil mask of AuxTel for danish, derived from the batoid model.

    Each baffle is a circle in the entrance pupil whose centre moves with the field angle by
    ``z tan(theta)``, ``z`` being the baffle's height above the stop (FACTS.md section 1: Baffle_M2c blocks,
    Baffle_M1 passes 0.6 m).

    Parameters
    ----------
    wavelength_m : `float`
        Wavelength of the model (only selects the cached optic), metres.

    Returns
    -------
    mask : `dict`
        danish ``mask_params`` (item -> edge -> clear, thetaMin, thetaMax (deg), center and radius
        polynomials in degrees -> metres).
    """
    optic = AuxTel(wavelength_m=wavelength_m).optic
    stop_z = float(optic.stopSurface.coordSys.origin[2])
    mask = {}
    for name, clear in _BAFFLES:
        item = optic[name]
        obsc = item.obscuration
        radius = float(obsc.original.radius if hasattr(obsc, "original") else obsc.radius)
        dz = float(item.coordSys.origin[2]) - stop_z
        mask[name] = {
            "outer": {
                "clear": clear,
                "thetaMin": 0.0,
                "thetaMax": _MASK_THETA_MAX_DEG,
                "center": [dz * np.tan(np.deg2rad(1.0)), 0.0],
                "radius": [radius],
            }
        }
    return mask


class _TriangleFactory(danish.DonutTriangleFactory):
    """`danish.DonutTriangleFactory` with the vertex merge of its pupil mesh done in numpy.

    danish merges the vertices of the baffle-clipped mesh one point at a time in Python: 0.2-0.3 s per field
    position, paid for the intra and the extra donut of every new pair (more than the fit itself). The
    same merge with `numpy.unique` returns the identical mesh (vertices in first-seen order, the same
    triangles) in milliseconds. The unclipped annulus, which does not depend on the field position
    (0.13 s to build), is built once per factory.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._annuli: dict[tuple, dict] = {}

    def build_annulus_mesh(self, **kwargs: Any) -> dict:
        key = tuple(sorted(kwargs.items()))
        if key not in self._annuli:
            self._annuli[key] = super().build_annulus_mesh(**kwargs)
        return self._annuli[key]

    @staticmethod
    def _mesh_from_triangles(triangles: NDArray, tol: float = 1e-12) -> dict:
        corners = np.asarray(triangles, dtype=float).reshape(-1, 2)
        if corners.size == 0:
            return {
                "vertices": np.empty((0, 2), dtype=float),
                "triangles": np.empty((0, 3), dtype=np.int32),
                "triangle_area_sum": 0.0,
            }
        keys = np.round(corners / tol).astype(np.int64)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        # Number the merged vertices in the order they are first met, as danish does.
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        vertices = corners[first[order]]
        conn = rank[inverse.reshape(-1)].reshape(-1, 3)
        distinct = (conn[:, 0] != conn[:, 1]) & (conn[:, 1] != conn[:, 2]) & (conn[:, 0] != conn[:, 2])
        conn = conn[distinct].astype(np.int32)
        tv = vertices[conn]
        areas = 0.5 * np.abs(
            (tv[:, 1, 0] - tv[:, 0, 0]) * (tv[:, 2, 1] - tv[:, 0, 1])
            - (tv[:, 1, 1] - tv[:, 0, 1]) * (tv[:, 2, 0] - tv[:, 0, 0])
        )
        return {"vertices": vertices, "triangles": conn, "triangle_area_sum": float(np.sum(areas))}


@functools.lru_cache(maxsize=16)
def make_factory(
    focal_length_m: float,
    pixel_scale_m: float,
    wavelength_m: float,
    kind: str = "triangle",
    mesh_rings: int = 30,
) -> danish.DonutFactoryBase:
    """danish donut factory with the AuxTel pupil (aperture, obscuration, baffles) from `instrument`.

    Parameters
    ----------
    focal_length_m : `float`
        Effective focal length, metres (``AuxTel().focal_length_m``).
    pixel_scale_m : `float`
        Size of a model pixel, metres (10 um times the binning).
    wavelength_m : `float`
        Wavelength of the optical model, metres (selects the batoid optic for the mask).
    kind : {"triangle", "inverse"}
        ``"triangle"``: danish's forward mapping of a pupil mesh (`danish.DonutTriangleFactory`), which
        stays right through caustics; ``"inverse"``: the pixel-to-pupil mapping (`danish.DonutFactory`),
        which drops the pixels it cannot invert (27 % of the light wrong at 0.5 um of coma).
    mesh_rings : `int`
        Radial rings of the triangle mesh (30: triangles of about 2 px on a nominal donut).
    """
    r_outer = APERTURE_DIAMETER_M / 2
    r_inner = r_outer * OBSCURATION
    common = dict(
        R_outer=r_outer,
        R_inner=r_inner,
        pupil_R_outer=r_outer,
        pupil_R_inner=r_inner,
        mask_params=auxtel_mask_params(wavelength_m),
        focal_length=focal_length_m,
        pixel_scale=pixel_scale_m,
    )
    if kind == "triangle":
        return _TriangleFactory(nrad=mesh_rings, **common)
    if kind == "inverse":
        return danish.DonutFactory(**common)
    raise InputError(f"unknown danish factory kind {kind!r}", value=kind, allowed=("triangle", "inverse"))


# --- design references -------------------------------------------------------------------------------------
# The design's Zernikes vary slowly over the LATISS field (coma ~ theta, astigmatism ~ theta^2): a quadratic
# in the field angle fitted on a 3 x 3 grid over +-0.1 deg reproduces batoid to 0.05 nm (the ray-trace noise;
# checked in the tests), and turns 0.14 s of ray tracing per donut and role into microseconds. The fits are
# kept per process; `design_fits` / `install_design_fits` hand them to worker processes.
#
# The references are batoid's zernikeTA with the focal length of the model (`AuxTel.focal_length_m`, the
# in-focus design's), not zernikeTA's default, the plate scale of the optic it is given: zernikeTA defines
# W by "ray displacement = -f grad W", and danish draws the donut with the model's f. The intra and extra
# optics' plate scales differ from it by -0.02 % and +0.07 %, which on the 3.39 um of defocus is 0.7 nm
# (intra) and 2.2 nm (extra) of Z4 too little in the references: the fit made up for it with a Z4 bias of
# +1.3-1.6 nm on every pair (doc/estimation.md, "Bright donuts: the systematic floor").
_REF_GRID_DEG = np.linspace(-0.1, 0.1, 3)
_REF_JMAX = 28
_DESIGN_FITS: dict[tuple[float, str], NDArray[np.float64]] = {}


def _design_fit(wavelength_m: float, role: Role) -> NDArray[np.float64]:
    key = (float(wavelength_m), role.value)
    cached = _DESIGN_FITS.get(key)
    if cached is not None:
        return cached
    (coefs,) = cached_arrays(
        "design_fit",
        {
            "wavelength_m": float(wavelength_m),
            "role": role.value,
            "batoid": batoid.__version__,
            "galsim": galsim.__version__,
            "numpy": np.__version__,
        },
        functools.partial(_fit_design, float(wavelength_m), role),
        shapes=((6, _REF_JMAX),),
        sources=(__file__, instrument.__file__),
    )
    _DESIGN_FITS[key] = coefs
    return coefs


def _fit_design(wavelength_m: float, role: Role) -> tuple[NDArray[np.float64]]:
    design = AuxTel(wavelength_m=wavelength_m).with_hexapod(HexapodState())
    optic = design.with_role(role).optic
    focal_length = design.focal_length_m
    gx, gy = np.meshgrid(_REF_GRID_DEG, _REF_GRID_DEG)
    gx, gy = gx.ravel(), gy.ravel()
    values = np.array(
        [
            design_zernikes_ta(optic, x, y, wavelength_m=wavelength_m, focal_length_m=focal_length)[1:]
            for x, y in zip(gx, gy, strict=True)
        ]
    )
    coefs, *_ = np.linalg.lstsq(_quadratic_basis(gx, gy), values, rcond=None)
    return (coefs,)


def design_zernikes_ta(
    optic: batoid.Optic,
    field_x_deg: float,
    field_y_deg: float,
    *,
    wavelength_m: float,
    focal_length_m: float,
    jmax: int = _REF_JMAX,
) -> NDArray[np.float64]:
    """batoid's ``zernikeTA`` of ``optic`` with a given focal length, in the model's units.

    Parameters
    ----------
    optic : `batoid.Optic`
        The optic (e.g. the design defocused as for a role).
    field_x_deg, field_y_deg : `float`
        Field angle, batoid frame, degrees.
    wavelength_m : `float`
        Wavelength, metres.
    focal_length_m : `float`
        Focal length relating ray displacements to wavefront slopes (that of the danish model).
    jmax : `int`
        Highest Noll index.

    Returns
    -------
    coefs : `numpy.ndarray`, shape (jmax + 1,)
        Annular Zernikes (obscuration `OBSCURATION`), micrometres, indexed by Noll index (``coefs[0]``
        unused).
    """
    return zernike_ta_um(
        optic, field_x_deg, field_y_deg, wavelength_m, jmax=jmax, focal_length_m=focal_length_m
    )


def design_fits(wavelength_m: float) -> dict[tuple[float, str], NDArray[np.float64]]:
    """Field fits of the design references at ``wavelength_m`` (computed if needed), to ship to workers.

    Parameters
    ----------
    wavelength_m : `float`
        Wavelength, metres.
    """
    for role in (Role.INTRA, Role.EXTRA):
        _design_fit(wavelength_m, role)
    return {k: v for k, v in _DESIGN_FITS.items() if k[0] == float(wavelength_m)}


def install_design_fits(fits: dict[tuple[float, str], NDArray[np.float64]]) -> None:
    """Install fits made by `design_fits` in another process (a worker initializer).

    Parameters
    ----------
    fits : `dict`
        `design_fits`'s output.
    """
    for key, value in fits.items():
        value = np.array(value, dtype=float)
        value.setflags(write=False)
        _DESIGN_FITS[(float(key[0]), str(key[1]))] = value


def _quadratic_basis(fx: NDArray, fy: NDArray) -> NDArray:
    return np.stack([np.ones_like(fx), fx, fy, fx * fx, fx * fy, fy * fy], axis=-1)


def design_references(
    telescope: AuxTel, role: Role, field_x_deg: float, field_y_deg: float, *, jmax: int = 22
) -> NDArray[np.float64]:
    """Zernikes of the optical design at a field angle, defocused as for ``role`` (kind ``"ta"``).

    The kind is batoid's ``zernikeTA`` taken with the model's focal length (`design_zernikes_ta`), so that
    danish, which moves rays by ``-f grad W`` with that focal length, puts them where batoid does.

    Parameters
    ----------
    telescope : `AuxTel`
        Supplies the wavelength; its hexapod state is ignored (the design is the aligned telescope).
    role : `Role`
        `Role.INTRA` or `Role.EXTRA`.
    field_x_deg, field_y_deg : `float`
        Field angle of the donut, batoid frame, degrees.
    jmax : `int`
        Highest Noll index returned (at most 28).

    Returns
    -------
    coefs : `numpy.ndarray`, shape (jmax + 1,)
        Micrometres, indexed by Noll index (``coefs[0]`` unused, zero); tip and tilt (Z1-Z3) are zero, the
        fitted offsets take their place.
    """
    if role not in (Role.INTRA, Role.EXTRA):
        raise InputError(f"design references exist for intra and extra donuts, not {role}", value=role)
    if not 4 <= jmax <= _REF_JMAX:
        raise InputError(f"jmax={jmax} outside 4..{_REF_JMAX}", value=jmax, allowed=(4, _REF_JMAX))
    fit = _design_fit(float(telescope.wavelength_m), role)
    basis = _quadratic_basis(np.float64(field_x_deg), np.float64(field_y_deg))
    coefs = np.zeros(jmax + 1)
    coefs[1:] = (basis @ fit)[:jmax]
    coefs[1:4] = 0.0
    return coefs


# --- physical optics ---------------------------------------------------------------------------------------
# Pupil samples across the aperture for the Fresnel donut: 3 mm steps keep the phase step below pi/2 for the
# nominal 0.8 mm donuts (radius about 80 lambda/D at 677 nm) with up to about 1 um of extra Z4.
_FRESNEL_PUPIL_SAMPLES = 400


def fresnel_image(
    aberrations_m: NDArray,
    *,
    npix: int,
    binning: int,
    wavelengths_m: tuple[float, ...],
    focal_length_m: float,
    field_deg: tuple[float, float] = (0.0, 0.0),
) -> NDArray[np.float64]:
    """Diffraction (Fraunhofer of the defocused pupil) donut image, averaged over ``wavelengths_m``.

    The geometric donut has a sharp, empty central hole; AuxTel's donuts span only about 80 lambda/D, so the
    diffraction at the obscuration fills the hole (to 15-45 % of the ring on the real LATISS pair, more in
    the donut whose hole is smaller) and softens every edge over ``sqrt(lambda z)`` ~ 15 px.

    Parameters
    ----------
    aberrations_m : `numpy.ndarray`
        Noll-indexed annular Zernikes of the wavefront (design + deviation, defocus included), metres.
    npix : `int`
        Side of the returned (binned) image, odd.
    binning : `int`
        Detector pixels per returned pixel.
    wavelengths_m : `tuple` of `float`
        Wavelengths to average (a band), metres.
    focal_length_m : `float`
        Effective focal length, metres.
    field_deg : `tuple` of `float`
        Field angle (moves the baffle shadow), degrees.

    Returns
    -------
    image : `numpy.ndarray`, shape (npix, npix)
        ``image[row = y, col = x]`` in danish's orientation, centred on the centre pixel, normalised so that
        the whole (uncropped) image sums to 1.
    """
    n = _FRESNEL_PUPIL_SAMPLES
    r_outer = APERTURE_DIAMETER_M / 2
    r_inner = r_outer * OBSCURATION
    u = (np.arange(n) - (n - 1) / 2) * (2 * r_outer / n)
    uu, vv = np.meshgrid(u, u)
    mask = auxtel_mask_params(float(wavelengths_m[0]))["Baffle_M2c"]["outer"]
    shift = mask["center"][0]
    pupil = (np.hypot(uu, vv) <= r_outer) & (
        np.hypot(uu - shift * field_deg[0], vv - shift * field_deg[1]) >= r_inner
    )
    wavefront = galsim.zernike.Zernike(np.asarray(aberrations_m), R_outer=r_outer, R_inner=r_inner)(uu, vv)
    m = npix * binning
    image = np.zeros((m, m))
    for wl in wavelengths_m:
        # FFT size for one detector pixel per output sample (pixel = lambda f / (N du)).
        nfft = round(wl * focal_length_m / (PIXEL_SIZE_M * 2 * r_outer / n))
        nfft += nfft % 2
        if nfft < max(n, m + 2):
            raise InputError(f"fresnel_image: FFT size {nfft} too small for {m} px at {wl} m", value=wl)
        # Half a pixel of tilt when the output grid is even, so that its centre falls between FFT samples.
        half = -0.5 if m % 2 == 0 else 0.0
        ramp = np.exp(2j * np.pi * half * (np.arange(n) / nfft))
        field = np.zeros((nfft, nfft), dtype=np.complex128)
        field[:n, :n] = pupil * np.exp(2j * np.pi * wavefront / wl) * ramp[None, :] * ramp[:, None]
        psf = np.abs(np.fft.fftshift(np.fft.fft2(field))) ** 2
        start = nfft // 2 - (m - 1) // 2 - (1 if m % 2 == 0 else 0)
        image += psf[start : start + m, start : start + m] / psf.sum()
    image /= len(wavelengths_m)
    # The FFT image is the geometric one turned by 180 degrees (checked against danish's mapping).
    image = image[::-1, ::-1]
    if binning > 1:
        image = image.reshape(npix, binning, npix, binning).sum(axis=(1, 3))
    return image
