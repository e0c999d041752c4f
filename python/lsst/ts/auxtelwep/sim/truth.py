"""Truth of the simulated donuts: the injected wavefront and what went into a stamp pair.

Zernike truths are the in-focus deviation of the perturbed telescope from the design at the star's field
position, in micrometres, Noll indices carried next to the values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..instrument import DEFAULT_NOLL, AuxTel, HexapodState, ZernikeKind

__all__ = ["StampTruth", "true_zernikes"]


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
