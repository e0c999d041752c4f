"""A defocal exposure with what detection needs from it, computed once: binned image, maps, candidates.

Also the small shared pieces of the modes: the saturation level, the blend separation, `ModeResult`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..exposure import Exposure
from ..instrument import AuxTel, Role
from .catalog import Donut, Rejection
from .config import DetectionConfig
from .image import UNUSABLE_BITS, BinnedImage, prepare
from .measure import Measurement, measure_donut
from .template import Candidate, DonutTemplate, correlate, donut_template, find_donuts

__all__ = [
    "MIN_GAIN",
    "SATURATION_ADU",
    "DefocalImage",
    "ModeResult",
    "default_saturation",
    "field_angle",
    "isolation_px",
]

SATURATION_ADU = 120000.0
"""LATISS saturation, adu (obs_lsst)."""
MIN_GAIN = 1.047
"""Lowest nominal LATISS gain, e-/adu: saturation in electrons is taken as ``SATURATION_ADU * MIN_GAIN``."""


def default_saturation(exposure: Exposure, config: DetectionConfig) -> float:
    """Saturation level in the exposure's units: config, else header ``SATURATE``, else the LATISS value.

    Parameters
    ----------
    exposure : `Exposure`
        The ISR'd exposure (its header and ``units``).
    config : `DetectionConfig`
        Its ``saturation``, if set, wins.
    """
    if config.saturation is not None:
        return float(config.saturation)
    value = exposure.header.get("SATURATE")
    if isinstance(value, int | float) and value > 0:
        return float(value)
    return SATURATION_ADU * (MIN_GAIN if exposure.units == "electron" else 1.0)


@functools.lru_cache(maxsize=16)
def _donut_radii(telescope: AuxTel, role: Role) -> tuple[float, float]:
    return telescope.with_role(role).donut_radii_px()


def isolation_px(telescope: AuxTel, config: DetectionConfig) -> float:
    """Blend separation: the configured one, else two outer radii plus 30 px.

    Parameters
    ----------
    telescope : `AuxTel`
        In-focus telescope state; the intra-focal donut's outer radius is used.
    config : `DetectionConfig`
        Its ``isolation_px``, if set, wins.

    Returns
    -------
    separation : `float`
        Full-resolution pixels.
    """
    if config.isolation_px is not None:
        return float(config.isolation_px)
    return 2.0 * _donut_radii(telescope, Role.INTRA)[0] + 30.0


class DefocalImage:
    """An exposure with the templates and maps detection needs, computed once on demand.

    Parameters
    ----------
    exposure : `Exposure`
        Defocal ISR'd image.
    role : `Role`
        ``Role.INTRA`` or ``Role.EXTRA``: sets the defocus of the template.
    telescope : `AuxTel`
        In-focus telescope state (the role's focus offset is added).
    config : `DetectionConfig`
    """

    def __init__(self, exposure: Exposure, role: Role, *, telescope: AuxTel, config: DetectionConfig) -> None:
        self.exposure = exposure
        self.role = role
        self.config = config
        outer, inner = _donut_radii(telescope, role)
        blur = config.seeing_fwhm_arcsec / telescope.plate_scale_arcsec_per_px / 2.3548
        self.template: DonutTemplate = donut_template(
            outer, inner, binning=config.binning, blur_sigma_px=blur
        )
        self.template_full: DonutTemplate = donut_template(outer, inner, binning=1, blur_sigma_px=blur)
        self.saturation = default_saturation(exposure, config)

    @property
    def shape(self) -> tuple[int, int]:
        return self.exposure.image.shape  # type: ignore[return-value]

    @functools.cached_property
    def binned(self) -> BinnedImage:
        return prepare(
            self.exposure.image, self.exposure.mask, binning=self.config.binning, name=self.exposure.obsid
        )

    @functools.cached_property
    def corr(self) -> NDArray[np.float32]:
        return correlate(self.binned.data, self.template)

    @functools.cached_property
    def snr(self) -> NDArray[np.float32]:
        return self.corr / np.float32(self.binned.sigma_binned * self.template.kernel_norm)

    @functools.cached_property
    def candidates(self) -> tuple[Candidate, ...]:
        return find_donuts(
            self.binned, self.template, threshold_sigma=self.config.threshold_sigma, corr=self.corr
        )

    def measure(self, x: float, y: float) -> Measurement:
        """Refine and measure a donut found near ``(x, y)`` (within a bin or two).

        Parameters
        ----------
        x, y : `float`
            Approximate centre, 0-based full-resolution pixels.

        Returns
        -------
        measurement : `Measurement`
        """
        return measure_donut(
            self.exposure.image,
            self.exposure.mask,
            x,
            y,
            template=self.template_full,
            search_px=self.config.binning + 3,
            saturation=self.saturation,
            neighbour_fraction=10 ** (-0.4 * self.config.isolated_mag_diff),
        )

    def unusable_fraction(self, x: float, y: float) -> float:
        """Fraction of the donut aperture centred on ``(x, y)`` that is unusable (BAD, SAT, NO_DATA) or
        off the image: why a predicted donut can be missing (a dead amplifier, say).

        Parameters
        ----------
        x, y : `float`
            Aperture centre, 0-based full-resolution pixels.
        """
        radius = self.template_full.aperture_radius_px
        rows, cols = self.shape
        r = int(np.ceil(radius))
        yy, xx = np.mgrid[round(y) - r : round(y) + r + 1, round(x) - r : round(x) + r + 1]
        disk = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        inside = disk & (yy >= 0) & (yy < rows) & (xx >= 0) & (xx < cols)
        flags = self.exposure.mask[yy[inside], xx[inside]] & UNUSABLE_BITS
        return 1.0 - float(np.count_nonzero(flags == 0)) / max(int(disk.sum()), 1)

    def problem(self, m: Measurement) -> str | None:
        """Why a measurement cannot be kept, or `None`.

        Parameters
        ----------
        m : `Measurement`
            A donut measured on this image; tested for the edge margin, saturation, ``max_bad_fraction`` and
            ``min_snr``.
        """
        if self.near_edge(m.x, m.y):
            return f"within {self.config.edge_margin_px:g} px of the edge"
        if m.saturated:
            return "saturated"
        if m.bad_fraction > self.config.max_bad_fraction:
            return f"{100 * m.bad_fraction:.0f} % of the aperture is BAD/NO_DATA"
        if not m.snr >= self.config.min_snr:
            return f"SNR {m.snr:.1f} below min_snr={self.config.min_snr:g}"
        return None

    def near_edge(self, x: float, y: float) -> bool:
        """Whether ``(x, y)`` lies within the edge margin.

        Parameters
        ----------
        x, y : `float`
            Position, 0-based full-resolution pixels.
        """
        margin = self.config.edge_margin_px
        rows, cols = self.shape
        return not (margin <= x <= cols - 1 - margin and margin <= y <= rows - 1 - margin)


@dataclasses.dataclass(frozen=True)
class ModeResult:
    """What a mode found."""

    donuts: tuple[Donut, ...]
    rejected: tuple[Rejection, ...]
    note: str
    offsets_px: tuple[float, float, float, float]


def field_angle(telescope: AuxTel, xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Field angle (deg) of the mean of pixel positions ``xs``, ``ys``.

    Parameters
    ----------
    telescope : `AuxTel`
        Gives the pixel to field-angle mapping.
    xs, ys : sequence of `float`
        0-based pixel positions (the intra- and extra-focal donuts of one star).
    """
    fx, fy = telescope.pixel_to_field(float(np.mean(xs)), float(np.mean(ys)))
    return float(fx), float(fy)
