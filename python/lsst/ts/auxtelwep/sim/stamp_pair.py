"""Intra/extra-focal stamp pairs of one star, rendered straight into small arrays (the fast path for tests
and benchmarks of the estimators: no full frame, no ISR, no detection).

Each stamp is cut at integer pixels of the assembled frame around the true donut centroid; conventions as
in `lsst.ts.auxtelwep.sim.donut` (``[row, col]``, 0-based, electrons).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ..instrument import DEFAULT_NOLL, AuxTel, Role
from ..reprs import summary_repr
from ..stamps import DonutPair
from .donut import RenderMethod, add_donut, render_donut
from .truth import StampTruth, true_zernikes

__all__ = ["StampPair", "render_stamp_pair"]


@dataclasses.dataclass(frozen=True, eq=False)
class StampPair:
    """An intra/extra-focal pair of stamps of one star, with the truth.

    Attributes
    ----------
    intra, extra : `numpy.ndarray`, shape (size_px, size_px), float32
        Electrons including the sky (subtract ``truth.sky_e`` for background-free stamps), ``[row, col]``
        with row = batoid detector y. Each stamp is cut at integer pixels of the assembled frame so that
        the true centroid lies within 0.5 px of the centre pixel ``size_px // 2``.
    truth : `StampTruth`
    """

    intra: NDArray[np.float32]
    extra: NDArray[np.float32]
    truth: StampTruth

    def __repr__(self) -> str:
        """A one-line summary: arrays as their shape and dtype (`reprs.summary_repr`)."""
        return summary_repr(self)

    def donut_pair(self, *, index: int = 0) -> DonutPair:
        """The stamps as the estimators take them: sky subtracted, sky variance, the true field angle.

        Parameters
        ----------
        index : `int`, optional
            Identifier of the pair (`DonutPair.index`).
        """
        sky = self.truth.sky_e
        return DonutPair.from_arrays(
            self.intra - sky,
            self.extra - sky,
            variance_intra=sky,
            variance_extra=sky,
            field_deg=self.truth.field_deg,
            index=index,
        )


def render_stamp_pair(
    telescope: AuxTel,
    field_x_deg: float,
    field_y_deg: float,
    *,
    seeing_arcsec: float,
    flux: float,
    sky: float,
    size_px: int = 255,
    seed: int,
    noiseless: bool = False,
    method: RenderMethod = "expected",
    noll: Sequence[int] = DEFAULT_NOLL,
) -> StampPair:
    """Render a batoid-traced intra/extra donut pair of one star, for tests of the estimators.

    Parameters
    ----------
    telescope : `~lsst.ts.auxtelwep.instrument.AuxTel`
        The perturbed *in-focus* telescope (hexapod state, camera angle, wavelength); the role defocus
        (hexapod z +0.8 / -0.8011 mm) is added here.
    field_x_deg, field_y_deg : `float`
        Field angle, degrees, batoid frame.
    seeing_arcsec : `float`
        Kolmogorov FWHM, arcsec (0 for geometric donuts).
    flux : `float`
        Electrons through the pupil annulus, per donut.
    sky : `float`
        Sky level, electrons per pixel.
    size_px : `int`
        Stamp side, pixels (odd sizes have a true centre pixel).
    seed : `int`
        Seed of the photon and pixel noise.
    noiseless : `bool`
        Return the expected images (no Poisson noise).
    method : {"expected", "photons"}
        Renderer (module docstring).
    noll : sequence of `int`
        Noll indices of the truth Zernikes.

    Returns
    -------
    pair : `StampPair`

    Raises
    ------
    InputError
        If ``telescope`` already looks defocused (|hexapod z| > 0.4 mm), ``size_px`` < 16, or a renderer
        argument is invalid.
    """
    if abs(telescope.hexapod.z) > 0.4:
        raise InputError(
            f"telescope hexapod z={telescope.hexapod.z} mm looks defocused; pass the in-focus state, "
            "the intra/extra offsets are added here",
            value=telescope.hexapod.z,
            allowed=(-0.4, 0.4),
        )
    if size_px < 16 or not sky >= 0:
        raise InputError(f"size_px={size_px} must be >= 16 and sky={sky} >= 0", value=(size_px, sky))
    rng = np.random.default_rng(seed)
    stamps: dict[Role, NDArray[np.float32]] = {}
    centroids: dict[Role, tuple[float, float]] = {}
    origins: dict[Role, tuple[int, int]] = {}
    for role in (Role.INTRA, Role.EXTRA):
        donut = render_donut(
            telescope.with_role(role),
            field_x_deg,
            field_y_deg,
            flux_e=flux,
            seeing_arcsec=seeing_arcsec,
            method=method,
            rng=rng,
        )
        origin = (
            int(np.floor(donut.centroid[0] + 0.5)) - size_px // 2,
            int(np.floor(donut.centroid[1] + 0.5)) - size_px // 2,
        )
        stamp = np.full((size_px, size_px), float(sky))
        add_donut(stamp, donut, frame_origin=origin)
        if not noiseless:
            stamp = rng.poisson(stamp).astype(np.float64)
        stamps[role] = stamp.astype(np.float32)
        centroids[role] = (donut.centroid[0] - origin[0], donut.centroid[1] - origin[1])
        origins[role] = origin
    zernikes = {}
    for kind in ("ta", "opd"):
        zernikes[kind] = true_zernikes(telescope, field_x_deg, field_y_deg, noll=noll, kind=kind)
        zernikes[kind].setflags(write=False)
    truth = StampTruth(
        hexapod=telescope.hexapod,
        camera_angle_deg=telescope.camera_angle_deg,
        wavelength_m=telescope.wavelength_m,
        seeing_arcsec=float(seeing_arcsec),
        field_deg=(float(field_x_deg), float(field_y_deg)),
        flux_e=float(flux),
        sky_e=float(sky),
        noll=tuple(int(j) for j in noll),
        zernikes_ta_um=zernikes["ta"],
        zernikes_opd_um=zernikes["opd"],
        intra_centroid=centroids[Role.INTRA],
        extra_centroid=centroids[Role.EXTRA],
        intra_origin=origins[Role.INTRA],
        extra_origin=origins[Role.EXTRA],
    )
    return StampPair(intra=stamps[Role.INTRA], extra=stamps[Role.EXTRA], truth=truth)
