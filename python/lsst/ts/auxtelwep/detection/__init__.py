"""Donut detection: three modes (wcs, refit, template), chosen by the quality of the WCS.

Modes (FACTS.md section 6; ``doc/detection.md``):

``wcs``
    The WCS is good to about 10 px: catalog stars are projected through each defocal image's WCS and
    refined by correlating with the donut template. Only the defocal images are needed.
``refit``
    The WCS is about 100 px off and/or rotated: stars are detected on the in-focus image, matched to the
    catalog by triangles (any rotation, large shifts), a WCS is fitted, and donuts are placed on the defocal
    images through it after applying the header pointing difference between the exposures.
``template``
    No usable WCS: the defocal images are correlated with the donut template, peaks are measured, cosmic
    rays, defects and saturated donuts are rejected, and intra and extra donuts are paired.

``auto`` runs the template detection on the intra-focal image and picks ``wcs`` when catalog stars line up
with those detections within ``wcs_tolerance_px``, else ``refit`` when an in-focus image and a catalog are
there, else ``template``. A mode that fails falls back to the next one (wcs -> refit -> template) when
``fallback`` is set; the result records the mode used and why, one clause per mode tried.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..cadence import check_roles
from ..errors import ConfigurationError, DetectionError, as_config, check_type
from ..exposure import Exposure, check_exposure
from ..instrument import AuxTel, Role
from ..refcat import RefCatalog, load_refcat
from .astrometry import AstrometrySolution, Sources, detect_sources, solve_astrometry
from .catalog import Donut, DonutCatalog, Rejection
from .config import MODES, DetectionConfig, DetectionMode
from .defocal import DefocalImage, ModeResult, default_saturation
from .modes import run_catalog_mode, run_template_mode
from .wcs import initial_wcs, model_image_shift_px, project, transfer_wcs

InFocusSource = Exposure | Callable[[], Exposure] | None
"""The in-focus image, or a function that loads it when (and only if) it is needed."""

__all__ = [
    "AstrometrySolution",
    "DetectionConfig",
    "DetectionMode",
    "Donut",
    "DonutCatalog",
    "Rejection",
    "Sources",
    "detect_donuts",
    "detect_sources",
    "solve_astrometry",
]

_log = logging.getLogger(__name__)


class _Run:
    """State shared by the modes of one `detect_donuts` call (images and maps are computed once)."""

    def __init__(
        self,
        intra: Exposure,
        extra: Exposure,
        infocus: InFocusSource,
        refcat: RefCatalog | None,
        config: DetectionConfig,
        telescope: AuxTel,
    ) -> None:
        self.intra = DefocalImage(intra, Role.INTRA, telescope=telescope, config=config)
        self.extra = DefocalImage(extra, Role.EXTRA, telescope=telescope, config=config)
        self._infocus = infocus
        self.refcat = refcat
        self.config = config
        self.telescope = telescope
        self.solution: AstrometrySolution | None = None
        self.wcs_used = None

    @functools.cached_property
    def infocus(self) -> Exposure | None:
        """The in-focus exposure, loaded on first use (only mode ``refit`` needs it)."""
        if self._infocus is None or isinstance(self._infocus, Exposure):
            return self._infocus
        exposure = self._infocus()
        _check_inputs(self.intra.exposure, self.extra.exposure, exposure, self.config)
        return exposure

    # --- the modes --------------------------------------------------------------------------------
    def wcs(self) -> ModeResult:
        if self.refcat is None:
            raise DetectionError("no reference catalog")
        w_i, src_i = initial_wcs(self.intra.exposure, self.telescope)
        w_e, _ = initial_wcs(self.extra.exposure, self.telescope)
        if w_i is None or w_e is None:
            raise DetectionError(f"no WCS ({src_i})")
        if self.config.mode != "auto":
            # Forced mode: still refuse a WCS that does not line up within the search radius, rather than
            # hand out donuts of the wrong stars.
            lined_up, text = self.wcs_lines_up(self.config.search_radius_px)
            if not lined_up:
                raise DetectionError(f"the WCS does not line up: {text}")
        result = run_catalog_mode(
            self.intra, self.extra, self.refcat, w_i, w_e, telescope=self.telescope, config=self.config
        )
        self.wcs_used = w_i
        return result

    def refit(self) -> ModeResult:
        if self.refcat is None:
            raise DetectionError("no reference catalog")
        if self.infocus is None:
            raise DetectionError("no in-focus image")
        start, src = initial_wcs(self.infocus, self.telescope)
        if start is None:
            raise DetectionError(f"no starting WCS for the in-focus image ({src})")
        fwhm_px = self.config.seeing_fwhm_arcsec / self.telescope.plate_scale_arcsec_per_px
        sources = detect_sources(
            self.infocus,
            binning=self.config.binning,
            threshold_sigma=self.config.threshold_sigma,
            fwhm_px=fwhm_px,
            saturation=default_saturation(self.infocus, self.config),
        )
        # Fit the WCS to where the aligned telescope would have put the stars (see model_image_shift_px).
        shift = model_image_shift_px(self.telescope, Role.INFOCUS)
        sources = dataclasses.replace(sources, x=sources.x - shift[0], y=sources.y - shift[1])
        searches = [self.config.max_refit_shift_px]
        if self.config.wide_refit_shift_px is not None:
            searches.append(self.config.wide_refit_shift_px)
        for attempt, max_shift_px in enumerate(searches):
            try:
                solution = solve_astrometry(
                    sources,
                    self.refcat,
                    start,
                    shape=self.infocus.image.shape,
                    max_shift_px=max_shift_px,
                    min_matches=self.config.min_astrometry_matches,
                    max_scatter_arcsec=self.config.max_astrometry_scatter_arcsec,
                )
                break
            except DetectionError:
                if attempt == len(searches) - 1:
                    raise
        self.solution = solution
        w_i, note_i = transfer_wcs(solution.wcs, self.infocus, self.intra.exposure)
        w_e, note_e = transfer_wcs(solution.wcs, self.infocus, self.extra.exposure)
        result = run_catalog_mode(
            self.intra, self.extra, self.refcat, w_i, w_e, telescope=self.telescope, config=self.config
        )
        self.wcs_used = solution.wcs
        note = (
            f"WCS solved on the in-focus image with {solution.n_matches} stars ({len(sources)} detected), "
            f"scatter {solution.scatter_arcsec:.3f} arcsec, correction {solution.rotation_deg:+.2f} deg "
            f"and ({solution.shift_px[0]:+.0f}, {solution.shift_px[1]:+.0f}) px; intra: {note_i}; "
            f"extra: {note_e}; {result.note}"
        )
        return ModeResult(result.donuts, result.rejected, note, result.offsets_px)

    def template(self) -> ModeResult:
        return run_template_mode(self.intra, self.extra, telescope=self.telescope, config=self.config)

    # --- the choice ------------------------------------------------------------------------------
    def wcs_lines_up(self, tolerance_px: float) -> tuple[bool, str]:
        """Do catalog stars projected through the intra WCS lie within ``tolerance_px`` of detections?

        True when at least half of the detections (and at least one) have a catalog star that close.
        """
        if self.refcat is None:
            return False, "no reference catalog"
        w_i, src = initial_wcs(self.intra.exposure, self.telescope)
        if w_i is None:
            return False, src
        detections = [c for c in self.intra.candidates if c.accepted]
        if not detections:
            return False, "no template detection on the intra-focal image to check the WCS against"
        px, py = project(w_i, self.refcat.ra_deg, self.refcat.dec_deg)
        shift = model_image_shift_px(self.telescope, Role.INTRA)
        px, py = px + shift[0], py + shift[1]
        ok = np.isfinite(px) & np.isfinite(py)
        if not ok.any():
            return False, "no catalog star projects onto the image"
        det = np.array([[c.x, c.y] for c in detections])
        cat = np.column_stack([px[ok], py[ok]])
        dist = np.min(np.hypot(det[:, None, 0] - cat[None, :, 0], det[:, None, 1] - cat[None, :, 1]), axis=1)
        # The binned peak is good to about half a bin; allow that on top of the tolerance.
        tol = tolerance_px + 0.5 * self.config.binning * math.sqrt(2)
        n_ok = int(np.count_nonzero(dist <= tol))
        verdict = n_ok >= max(1, math.ceil(0.5 * len(det)))
        text = (
            f"{n_ok} of {len(det)} template detections within {tolerance_px:g} px of a "
            f"catalog star through {src} (median distance {np.median(dist):.1f} px)"
        )
        return verdict, text


def _check_inputs(
    intra: Exposure, extra: Exposure, infocus: Exposure | None, config: DetectionConfig
) -> None:
    # Here as well as in `pipeline.process`: a swapped pair fits as well as the right one, focus reversed.
    given = {Role.INTRA: intra, Role.EXTRA: extra}
    if infocus is not None:
        given[Role.INFOCUS] = infocus
    check_roles(given)
    shapes = {"intra": intra.image.shape, "extra": extra.image.shape}
    if infocus is not None:
        shapes["infocus"] = infocus.image.shape
    if len(set(shapes.values())) != 1:
        raise ConfigurationError(f"exposures differ in shape: {shapes}", value=shapes)
    rows, cols = intra.image.shape
    if min(rows, cols) <= 2 * config.edge_margin_px:
        raise ConfigurationError(
            f"image of shape {intra.image.shape} has no room inside an edge margin of "
            f"{config.edge_margin_px:g} px",
            value=intra.image.shape,
        )


def detect_donuts(
    intra: Exposure,
    extra: Exposure,
    *,
    infocus: InFocusSource = None,
    refcat: RefCatalog | str | Path | None = None,
    config: DetectionConfig | Mapping[str, Any] | None = None,
    telescope: AuxTel | None = None,
) -> DonutCatalog:
    """Find the donuts of a wavefront pair.

    Parameters
    ----------
    intra, extra : `Exposure`
        ISR'd intra- and extra-focal images of one triplet (same shape).
    infocus : `Exposure` or callable returning one, optional
        The in-focus image of the triplet (needed by mode ``refit``); a callable is called only if
        ``refit`` runs, so that an image that is not needed is neither awaited nor its failure reported
        (`pipeline.process` passes one that waits for the ISR it started in the background).
    refcat : `RefCatalog`, `str` or `pathlib.Path`, optional
        Reference stars (needed by modes ``wcs`` and ``refit``), or a catalog file for `refcat.load_refcat`.
    config : `DetectionConfig` or mapping, optional
        Mode, thresholds and selection rules, or a mapping of them (default: ``DetectionConfig()``).
    telescope : `AuxTel`, optional
        In-focus telescope state; each role's focus offset is added (default: the aligned telescope).

    Returns
    -------
    catalog : `DonutCatalog`
        Donuts with positions on both images, the mode used and why.

    Raises
    ------
    InputError
        If an image is not an `Exposure`, the headers contradict the roles the images are given for
        (`cadence.check_roles`), or ``refcat`` is not a catalog (`CatalogError` for an unusable file).
    ConfigurationError
        If a mode is forced that the inputs cannot support without fallback (``wcs`` or ``refit`` without a
        catalog, ``refit`` without an in-focus image), or the exposures differ in shape.
    DetectionError
        If no donut is found: the message gives each mode's reason.
    """
    config = as_config("config", config, DetectionConfig)
    telescope = AuxTel() if telescope is None else telescope
    check_exposure("intra", intra)
    check_exposure("extra", extra)
    if infocus is not None and not callable(infocus):  # a function is called only when refit needs it
        check_exposure("infocus", infocus)
    if isinstance(refcat, str | Path):
        refcat = load_refcat(refcat)
    elif refcat is not None:
        check_type("refcat", refcat, RefCatalog, hint="a catalog file's path, or refcat.load_refcat(path)")
    _check_inputs(intra, extra, infocus if isinstance(infocus, Exposure) else None, config)
    if not config.fallback:
        if config.mode in ("wcs", "refit") and refcat is None:
            raise ConfigurationError(
                f"mode {config.mode!r} needs a reference catalog (--refcat)", value=config.mode
            )
        if config.mode == "refit" and infocus is None:
            raise ConfigurationError("mode 'refit' needs an in-focus image (--infocus)", value=config.mode)
    run = _Run(intra, extra, infocus, refcat, config, telescope)

    clauses: list[str] = []
    if config.mode == "auto":
        lined_up, text = run.wcs_lines_up(config.wcs_tolerance_px)
        if lined_up:
            first = "wcs"
            clauses.append(f"wcs chosen: {text}")
        else:
            clauses.append(f"wcs not chosen: {text}")
            if infocus is not None and refcat is not None:
                first = "refit"
            else:
                first = "template"
                missing = " and ".join(
                    n for n, v in (("in-focus image", infocus), ("reference catalog", refcat)) if v is None
                )
                clauses.append(f"refit not possible: no {missing}")
        order = list(MODES[MODES.index(first) :])
    else:
        order = [config.mode] if not config.fallback else list(MODES[MODES.index(config.mode) :])

    for k, mode in enumerate(order):
        try:
            result: ModeResult = getattr(run, mode)()
        except DetectionError as exc:
            clauses.append(f"{mode} failed: {exc}")
            _log.info("detection mode %s failed: %s", mode, exc)
            if k == len(order) - 1:
                raise DetectionError("; ".join(clauses)) from exc
            continue
        clauses.append(f"{mode}: {result.note}")
        solution = run.solution if mode == "refit" else None
        return DonutCatalog(
            donuts=result.donuts,
            mode=mode,
            requested_mode=config.mode,
            reason="; ".join(clauses),
            wcs=None if mode == "template" else run.wcs_used,
            wcs_scatter_arcsec=None if solution is None else solution.scatter_arcsec,
            n_astrometry_matches=0 if solution is None else solution.n_matches,
            offsets_px=result.offsets_px,
            rejected=result.rejected,
            intra_obsid=intra.obsid,
            extra_obsid=extra.obsid,
        )
    raise DetectionError("; ".join(clauses) or "no detection mode to run")  # pragma: no cover
