"""Configuration of donut detection (`DetectionConfig`).

Defaults and why (see ``doc/detection.md`` for the longer story):

- ``edge_margin_px = 128``: a donut must fit in a 255 px stamp (radius 96-97 px at 0.8 mm, up to 111 px with a
  0.1 mm focus error, plus seeing), so its centre must be at least half a stamp from every edge. ts_wep's
  80 px margin was chosen for smaller donuts.
- ``isolation_px = None`` means ``2 * outer radius + 30 px`` (about 223 px at 0.8 mm): below that two donuts
  overlap once a focus error and the seeing are allowed for, or a neighbour spills into the 255 px stamp.
  ts_wep's 160 px suits its smaller donuts; for AuxTel it would let overlapping donuts pass as isolated.
- ``isolated_mag_diff = 2``: a neighbour more than 2 mag fainter (under 16 % of the flux) does not count as
  a blend (ts_wep's rule).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["MODES", "DetectionConfig", "DetectionMode"]

DetectionMode = Literal["auto", "wcs", "refit", "template"]
MODES: tuple[str, ...] = ("wcs", "refit", "template")
"""The concrete modes, in fallback order."""


class DetectionConfig(BaseModel):
    """How to find donuts. Immutable; build a variant with ``config.model_copy(update={...})``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: DetectionMode = Field("auto", description="Detection mode; 'auto' chooses from the WCS quality.")
    fallback: bool = Field(
        True, description="When a mode fails, try the next one (wcs -> refit -> template)."
    )
    binning: int = Field(4, ge=1, le=16, description="Binning factor of the image used for correlation.")
    threshold_sigma: float = Field(
        10.0, gt=0, description="Matched-filter detection threshold, in sigma of the correlation map."
    )
    min_snr: float = Field(10.0, ge=0, description="Minimum aperture SNR of a kept donut.")
    seeing_fwhm_arcsec: float = Field(
        1.0, gt=0, le=5, description="Seeing FWHM used to blur templates, arcsec."
    )
    wcs_tolerance_px: float = Field(
        10.0,
        gt=0,
        description="'auto' picks 'wcs' when template detections lie within this of catalog stars, px.",
    )
    search_radius_px: float = Field(
        24.0,
        gt=0,
        description="How far from the WCS prediction a donut is searched for (wcs/refit modes), px.",
    )
    mag_min: float | None = Field(None, description="Brightest catalog magnitude kept (None: no limit).")
    mag_max: float | None = Field(None, description="Faintest catalog magnitude kept (None: no limit).")
    isolation_px: float | None = Field(
        None, gt=0, description="Separation below which donuts blend, px (None: 2 outer radii + 30 px)."
    )
    isolated_mag_diff: float = Field(
        2.0, ge=0, description="A neighbour fainter by more than this never blends."
    )
    edge_margin_px: float = Field(
        128.0, ge=0, description="Minimum distance of a donut centre from an edge, px."
    )
    max_donuts: int = Field(
        20, ge=1, description="Maximum number of donuts returned (unblended, brightest first)."
    )
    keep_blended: bool = Field(True, description="Return blended donuts (flagged) rather than reject them.")
    saturation: float | None = Field(
        None,
        gt=0,
        description="Saturation level in image units (None: header SATURATE, else 120000 adu / 125640 e-).",
    )
    max_bad_fraction: float = Field(
        0.05, ge=0, le=1, description="Reject a donut when more of its aperture than this is BAD or NO_DATA."
    )
    max_astrometry_scatter_arcsec: float = Field(1.0, gt=0, description="Refit succeeds below this scatter.")
    min_astrometry_matches: int = Field(4, ge=3, description="Refit needs at least this many matched stars.")
    max_refit_shift_px: float = Field(
        800.0, gt=0, description="Largest pointing error the refit searches, px at the boresight."
    )
    wide_refit_shift_px: float | None = Field(
        2000.0,
        gt=0,
        description="A second, wider refit search when the first fails, px (None: none). M2 decentred by "
        "millimetres moves the image ~548 px per mm; searching that far at once would let the brightest "
        "catalog stars come from beyond the chip.",
    )
    max_pair_offset_px: float = Field(
        300.0,
        gt=0,
        description="Largest offset between a donut's intra and extra positions (template mode), px.",
    )

    @model_validator(mode="after")
    def _check_limits(self) -> DetectionConfig:
        if self.mag_min is not None and self.mag_max is not None and self.mag_min > self.mag_max:
            raise ValueError(f"mag_min={self.mag_min} is fainter than mag_max={self.mag_max}")
        return self
