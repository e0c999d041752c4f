"""The three detection modes: ``wcs``, ``refit`` and ``template``.

Each mode returns a `ModeResult` (donuts, rejections, notes) or raises `DetectionError` with the reason it
failed, which `detect_donuts` records before falling back to the next mode.

Placing catalog stars (modes ``wcs`` and ``refit``) on a defocal image: the predicted positions are first
moved by one common shift, the one that best lines them up with peaks of the matched-filter map within
``search_radius_px`` (each star contributes its normalised map, so one bright star cannot dominate); then
each star takes the highest peak within two bins of its shifted prediction, and `measure_donut` refines it
at full resolution. The common shift absorbs a pointing error and a telescope offset between exposures.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from astropy.wcs import WCS
from numpy.typing import NDArray

from ..errors import DetectionError
from ..instrument import AuxTel, Role
from ..refcat import RefCatalog
from .catalog import Donut, Rejection
from .config import DetectionConfig
from .defocal import DefocalImage, ModeResult, field_angle, isolation_px
from .image import to_binned
from .measure import Measurement, pair_blend_suspected
from .select import select_sources
from .wcs import model_image_shift_px, project

__all__ = ["pair_offset", "place", "run_catalog_mode", "run_template_mode"]

_log = logging.getLogger(__name__)

_LOCAL_SEARCH_BINS = 2


def place(
    image: DefocalImage, x: NDArray, y: NDArray, *, search_px: float
) -> tuple[tuple[float, float], NDArray, NDArray]:
    """Find the donuts of stars predicted at ``(x, y)`` (see the module docstring).

    Parameters
    ----------
    image : `DefocalImage`
        The defocal image (its SNR map and ``config``).
    x, y : `numpy.ndarray`, shape (n,)
        Predicted donut centres, 0-based full-resolution pixels.
    search_px : `float`
        Largest common shift tried along each axis, full-resolution pixels.

    Returns
    -------
    shift : `tuple` of `float`
        Common shift applied to the predictions, full-resolution pixels.
    peak_xy : `numpy.ndarray`, shape (n, 2)
        Full-resolution position of each star's binned peak (NaN where none).
    peak_snr : `numpy.ndarray`, shape (n,)
        Matched-filter SNR at that peak (0 where none).
    """
    b = image.config.binning
    snr = image.snr
    ny, nx = snr.shape
    xb, yb = to_binned(x, b), to_binned(y, b)
    s = math.ceil(search_px / b)
    offs = np.arange(-s, s + 1)
    rows = np.rint(yb)[:, None, None] + offs[None, :, None]
    cols = np.rint(xb)[:, None, None] + offs[None, None, :]
    inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    values = np.where(
        inside, snr[np.clip(rows, 0, ny - 1).astype(int), np.clip(cols, 0, nx - 1).astype(int)], 0.0
    )  # (n, 2s+1, 2s+1)
    best = values.reshape(len(x), -1).max(axis=1)
    useful = best >= image.config.threshold_sigma
    shift_b = (0, 0)
    if useful.any():
        score = np.clip(values[useful], 0.0, None) / best[useful, None, None]
        total = score.sum(axis=0)
        # Prefer the smallest shift among equal scores.
        total = total - 1e-6 * (offs[:, None] ** 2 + offs[None, :] ** 2)
        si, sj = np.unravel_index(int(np.argmax(total)), total.shape)
        shift_b = (int(offs[si]), int(offs[sj]))
    k = _LOCAL_SEARCH_BINS
    peak_xy = np.full((len(x), 2), np.nan)
    peak_snr = np.zeros(len(x))
    for n in range(len(x)):
        ci, cj = s + shift_b[0], s + shift_b[1]
        win = values[n, max(ci - k, 0) : ci + k + 1, max(cj - k, 0) : cj + k + 1]
        if win.size == 0 or win.max() < image.config.threshold_sigma:
            peak_snr[n] = float(win.max()) if win.size else 0.0
            continue
        wi, wj = np.unravel_index(int(np.argmax(win)), win.shape)
        row = rows[n, max(ci - k, 0) + wi, 0]
        col = cols[n, 0, max(cj - k, 0) + wj]
        peak_xy[n] = (col * b + (b - 1) / 2.0, row * b + (b - 1) / 2.0)
        peak_snr[n] = float(win[wi, wj])
    return (float(shift_b[1] * b), float(shift_b[0] * b)), peak_xy, peak_snr


def run_catalog_mode(
    intra: DefocalImage,
    extra: DefocalImage,
    refcat: RefCatalog,
    wcs_intra: WCS,
    wcs_extra: WCS,
    *,
    telescope: AuxTel,
    config: DetectionConfig,
) -> ModeResult:
    """Place catalog stars through a WCS on both defocal images (modes ``wcs`` and ``refit``).

    Parameters
    ----------
    intra, extra : `DefocalImage`
        The defocal images.
    refcat : `RefCatalog`
        Reference stars (RA, Dec in degrees, magnitudes).
    wcs_intra, wcs_extra : `astropy.wcs.WCS`
        WCS of each image, without the optics' image shift (added here from ``telescope``).
    telescope : `AuxTel`
        In-focus telescope state, for the image shift, the blend distance and the field angles.
    config : `DetectionConfig`
        Detection options.

    Raises
    ------
    DetectionError
        If no catalog star lands on the chip, or none is found as a donut on both images.
    """
    xi, yi = project(wcs_intra, refcat.ra_deg, refcat.dec_deg)
    xe, ye = project(wcs_extra, refcat.ra_deg, refcat.dec_deg)
    # The optics move the donuts away from the WCS prediction (M2 decenter: ~548 px/mm).
    (sxi, syi), (sxe, sye) = (
        model_image_shift_px(telescope, Role.INTRA),
        model_image_shift_px(telescope, Role.EXTRA),
    )
    xi, yi, xe, ye = xi + sxi, yi + syi, xe + sxe, ye + sye
    rows, cols = intra.shape
    iso = isolation_px(telescope, config)
    on_extra = (xe >= config.edge_margin_px) & (xe <= cols - 1 - config.edge_margin_px)
    on_extra &= (ye >= config.edge_margin_px) & (ye <= rows - 1 - config.edge_margin_px)
    selection = select_sources(
        xi,
        yi,
        refcat.mag,
        shape=(rows, cols),
        edge_margin_px=config.edge_margin_px,
        isolation_px=iso,
        isolated_mag_diff=config.isolated_mag_diff,
        max_donuts=len(refcat),
        keep_blended=config.keep_blended,
        mag_min=config.mag_min,
        mag_max=config.mag_max,
        eligible=np.isfinite(xi) & np.isfinite(yi) & (np.abs(xi) < 1e5) & (np.abs(yi) < 1e5),
    )
    keep = selection.keep
    rejected = [
        Rejection(float(xi[i]), float(yi[i]), reason, "intra", int(i))
        for i, reason in selection.rejected
        if 0 <= xi[i] < cols and 0 <= yi[i] < rows  # stars off the chip are not news
    ]
    if keep.size == 0:
        raise DetectionError(
            f"no catalog star ({refcat.source}) lands on the chip inside the {config.edge_margin_px:g} px "
            "margin and magnitude limits"
        )
    shift_i, peak_i, snr_i = place(intra, xi[keep], yi[keep], search_px=config.search_radius_px)
    shift_e, peak_e, snr_e = place(extra, xe[keep], ye[keep], search_px=config.search_radius_px)
    accepted: list[tuple[int, int, Measurement, Measurement]] = []  # (position in keep, ref, mi, me)
    for n, ref in enumerate(keep.tolist()):
        if len(accepted) >= config.max_donuts:
            rejected.append(
                Rejection(
                    float(xi[ref]), float(yi[ref]), f"beyond max_donuts={config.max_donuts}", "intra", ref
                )
            )
            continue
        if not on_extra[ref]:
            rejected.append(
                Rejection(
                    float(xe[ref]), float(ye[ref]), "off the extra-focal image or in its margin", "extra", ref
                )
            )
            continue
        problem = None
        found = []
        for image, peak, peak_snr, role, x, y in (
            (intra, peak_i, snr_i, "intra", xi[ref], yi[ref]),
            (extra, peak_e, snr_e, "extra", xe[ref], ye[ref]),
        ):
            if not np.isfinite(peak[n, 0]):
                masked = image.unusable_fraction(float(x), float(y))
                if masked > config.max_bad_fraction:
                    why = f"{100 * masked:.0f} % of the predicted donut is BAD/SAT/NO_DATA (dead amplifier?)"
                else:
                    why = f"no donut above {config.threshold_sigma:g} sigma near the prediction"
                problem = (role, f"{why} (peak {peak_snr[n]:.1f})")
                break
            m = image.measure(*peak[n])
            why = image.problem(m)
            if why is not None:
                problem = (role, why)
                break
            found.append(m)
        if problem is not None:
            px, py = (xi[ref], yi[ref]) if problem[0] == "intra" else (xe[ref], ye[ref])
            rejected.append(Rejection(float(px), float(py), problem[1], problem[0], ref))
            continue
        accepted.append((n, ref, found[0], found[1]))
    if not accepted:
        reasons = sorted({r.reason.split(" (")[0] for r in rejected})
        raise DetectionError(
            f"none of {keep.size} catalog stars on the chip was found as a donut on both images "
            f"({'; '.join(reasons)})"
        )
    blended = {ref: bool(selection.blended[n]) or pair_blend_suspected(mi, me) for n, ref, mi, me in accepted}
    # Unblended first, brightest first (a blend seen only in the image moves a donut back).
    accepted.sort(key=lambda item: (blended[item[1]], refcat.mag[item[1]]))
    position = {ref: k for k, (_, ref, _, _) in enumerate(accepted)}
    donuts = []
    for n, ref, mi, me in accepted:
        donuts.append(
            _donut(
                telescope,
                mi,
                me,
                blended=blended[ref],
                blend_with=tuple(position[j] for j in selection.blend_with[n] if j in position),
                ref_index=int(ref),
                ref_ra_deg=float(refcat.ra_deg[ref]),
                ref_dec_deg=float(refcat.dec_deg[ref]),
                ref_mag=float(refcat.mag[ref]),
            )
        )
    note = (
        f"{len(donuts)} of {keep.size} catalog stars on the chip found; common shift intra "
        f"({shift_i[0]:+.0f}, {shift_i[1]:+.0f}) px, extra ({shift_e[0]:+.0f}, {shift_e[1]:+.0f}) px"
    )
    return ModeResult(tuple(donuts), tuple(rejected), note, (*shift_i, *shift_e))


def _donut(
    telescope: AuxTel,
    intra: Measurement,
    extra: Measurement,
    *,
    blended: bool,
    blend_with: tuple[int, ...],
    ref_index: int | None = None,
    ref_ra_deg: float | None = None,
    ref_dec_deg: float | None = None,
    ref_mag: float | None = None,
) -> Donut:
    """The `Donut` of a measured intra/extra pair (field angle of the pair's mean position; other fields as
    `Donut`)."""
    fx, fy = field_angle(telescope, [intra.x, extra.x], [intra.y, extra.y])
    return Donut(
        intra_x=intra.x,
        intra_y=intra.y,
        extra_x=extra.x,
        extra_y=extra.y,
        intra_flux=intra.flux,
        extra_flux=extra.flux,
        intra_snr=intra.snr,
        extra_snr=extra.snr,
        field_x_deg=fx,
        field_y_deg=fy,
        blended=blended,
        blend_with=blend_with,
        ref_index=ref_index,
        ref_ra_deg=ref_ra_deg,
        ref_dec_deg=ref_dec_deg,
        ref_mag=ref_mag,
    )


def pair_offset(p: NDArray, q: NDArray, *, max_offset_px: float, tol_px: float) -> tuple[float, float] | None:
    """The offset ``q - p`` shared by most pairs of points (intra -> extra); `None` if no pair is close.

    Parameters
    ----------
    p : `numpy.ndarray`, shape (n, 2)
        First points (intra-focal donuts), ``[x, y]`` pixels.
    q : `numpy.ndarray`, shape (m, 2)
        Second points (extra-focal donuts), ``[x, y]`` pixels.
    max_offset_px : `float`
        Largest offset considered, pixels.
    tol_px : `float`
        Offsets closer than this vote together, pixels.

    Returns
    -------
    offset : `tuple` [`float`, `float`] or None
        Median ``(dx, dy)`` of the winning offsets, pixels.
    """
    if len(p) == 0 or len(q) == 0:
        return None
    d = (q[None, :, :] - p[:, None, :]).reshape(-1, 2)
    d = d[np.hypot(d[:, 0], d[:, 1]) <= max_offset_px]
    if len(d) == 0:
        return None
    close = np.hypot(d[:, None, 0] - d[None, :, 0], d[:, None, 1] - d[None, :, 1]) <= tol_px
    votes = close.sum(axis=1) - 1e-6 * np.hypot(d[:, 0], d[:, 1])
    best = int(np.argmax(votes))
    members = d[close[best]]
    return float(np.median(members[:, 0])), float(np.median(members[:, 1]))


def _measure_candidates(
    image: DefocalImage, role: str
) -> tuple[list[Measurement], list[Rejection], list[tuple[float, float, float]]]:
    """Measure accepted candidates: kept ones, rejections, and every source (x, y, flux) for blends."""
    kept: list[Measurement] = []
    rejected: list[Rejection] = []
    everything: list[tuple[float, float, float]] = []
    for c in image.candidates:
        if not c.accepted:
            if image.near_edge(c.x, c.y):
                # A donut cut by the edge fails the sector test; say what matters.
                rejected.append(
                    Rejection(c.x, c.y, f"within {image.config.edge_margin_px:g} px of the edge", role)
                )
            elif not c.reason.startswith("skirt") and not c.reason.startswith("duplicate"):
                rejected.append(Rejection(c.x, c.y, c.reason, role))
            continue
        m = image.measure(c.x, c.y)
        everything.append((m.x, m.y, max(m.flux, c.flux, 1e-9)))
        why = image.problem(m)
        if why is not None:
            rejected.append(Rejection(m.x, m.y, why, role))
            continue
        kept.append(m)
    return kept, rejected, everything


def _drop_second_peaks(
    pairs: list[tuple[int, int]],
    mi: list[Measurement],
    me: list[Measurement],
    intra: DefocalImage,
    extra: DefocalImage,
) -> tuple[list[tuple[int, int]], set[tuple[str, float, float]], list[Rejection]]:
    """Separate the second peaks of one-sided donuts from the stars.

    M2 decentred by a millimetre or more makes every donut one-sided (coma), and the matched filter can find
    a second peak on its bright side, 50-70 px from the centre, on both images. It pairs with nothing (the
    intra and extra donuts are one-sided differently) or, near focus, with its twin on the other image.
    Either way it lies inside a brighter donut whose own light shows no overlap or neighbour (a real
    neighbour there would show as one), so it is that donut's light, not a star.

    Returns
    -------
    pairs : `list` of `tuple`
        The pairs that are stars, brightest first.
    own_light : `set` of `tuple`
        The second peaks as ``(role, x, y)`` (``"intra"`` or ``"extra"``, position as measured).
    rejected : `list` of `Rejection`
        One for each second peak, naming its donut.
    """
    outer = {"intra": intra.template_full.outer_px, "extra": extra.template_full.outer_px}
    hosts: list[tuple[Measurement, Measurement]] = []

    def host_of(m: Measurement, role: str) -> Measurement | None:
        side = 0 if role == "intra" else 1
        for host in hosts:
            if math.hypot(host[side].x - m.x, host[side].y - m.y) < outer[role]:
                return host[side]
        return None

    stars: list[tuple[int, int]] = []
    peaks: list[tuple[Measurement, str, Measurement]] = []
    for a, j in sorted(pairs, key=lambda pair: -mi[pair[0]].flux):
        host = host_of(mi[a], "intra")
        if host is not None:
            peaks += [(mi[a], "intra", host), (me[j], "extra", host_of(me[j], "extra") or host)]
            continue
        stars.append((a, j))
        if not pair_blend_suspected(mi[a], me[j]):
            hosts.append((mi[a], me[j]))
    paired = ({a for a, _ in pairs}, {j for _, j in pairs})
    for side, (role, measured) in enumerate((("intra", mi), ("extra", me))):
        for k, m in enumerate(measured):
            host = None if k in paired[side] else host_of(m, role)
            if host is not None:
                peaks.append((m, role, host))
    rejected = [
        Rejection(
            m.x, m.y, f"second peak of the one-sided donut at ({host.x:.0f}, {host.y:.0f}), not a star", role
        )
        for m, role, host in peaks
    ]
    return stars, {(role, m.x, m.y) for m, role, _ in peaks}, rejected


def run_template_mode(
    intra: DefocalImage, extra: DefocalImage, *, telescope: AuxTel, config: DetectionConfig
) -> ModeResult:
    """Find donuts on both defocal images by matched filtering and pair them (mode ``template``).

    Parameters
    ----------
    intra, extra : `DefocalImage`
        The defocal images.
    telescope : `AuxTel`
        In-focus telescope state, for the blend distance and the field angles.
    config : `DetectionConfig`
        Detection options.

    Raises
    ------
    DetectionError
        If no donut is found, or none pairs up.
    """
    mi, rej_i, all_i = _measure_candidates(intra, "intra")
    me, rej_e, _all_e = _measure_candidates(extra, "extra")
    rejected = rej_i + rej_e
    if not mi or not me:
        empty = [name for name, ms in (("intra", mi), ("extra", me)) if not ms]
        details = "; ".join(f"{r.role} ({r.x:.0f}, {r.y:.0f}): {r.reason}" for r in rejected[:6])
        raise DetectionError(
            f"no donuts on the {' and '.join(empty)}-focal image "
            f"({intra.exposure.obsid}, {extra.exposure.obsid}): "
            f"no usable peak above {config.threshold_sigma:g} sigma"
            + (f"; rejected: {details}" + (" ..." if len(rejected) > 6 else "") if rejected else "")
        )
    p = np.array([[m.x, m.y] for m in mi])
    q = np.array([[m.x, m.y] for m in me])
    tol = max(15.0, 2.0 * config.binning)
    offset = pair_offset(p, q, max_offset_px=config.max_pair_offset_px, tol_px=tol)
    pairs: list[tuple[int, int]] = []
    if offset is not None:
        used: set[int] = set()
        for a in np.argsort([-m.flux for m in mi]).tolist():
            dist = np.hypot(q[:, 0] - p[a, 0] - offset[0], q[:, 1] - p[a, 1] - offset[1])
            for j in used:
                dist[j] = np.inf
            j = int(np.argmin(dist))
            if dist[j] <= tol:
                used.add(j)
                pairs.append((a, j))
    if not pairs:
        raise DetectionError(
            f"{len(mi)} intra- and {len(me)} extra-focal donuts found but none pair up within "
            f"{config.max_pair_offset_px:g} px"
        )
    pairs, own_light, second_peaks = _drop_second_peaks(pairs, mi, me, intra, extra)
    rejected += second_peaks
    paired_i = {a for a, _ in pairs}
    paired_e = {j for _, j in pairs}
    rejected += [
        Rejection(m.x, m.y, "no extra-focal partner", "intra")
        for a, m in enumerate(mi)
        if a not in paired_i and ("intra", m.x, m.y) not in own_light
    ]
    rejected += [
        Rejection(m.x, m.y, "no intra-focal partner", "extra")
        for j, m in enumerate(me)
        if j not in paired_e and ("extra", m.x, m.y) not in own_light
    ]
    # Blends: every other measured source on the intra image counts as a neighbour, kept or not.
    px = np.array([p[a, 0] for a, _ in pairs] + [s[0] for s in all_i])
    py = np.array([p[a, 1] for a, _ in pairs] + [s[1] for s in all_i])
    flux = np.array([0.5 * (mi[a].flux + me[j].flux) for a, j in pairs] + [s[2] for s in all_i])
    mag = -2.5 * np.log10(np.clip(flux, 1e-9, None))
    # The pairs also appear in all_i: drop those duplicates from the neighbour list.
    n_pairs = len(pairs)
    dup = np.zeros(len(px), dtype=bool)
    for k in range(n_pairs, len(px)):
        dup[k] = np.any(np.hypot(px[:n_pairs] - px[k], py[:n_pairs] - py[k]) < 1.0) or any(
            math.hypot(x - px[k], y - py[k]) < 1.0 for role, x, y in own_light if role == "intra"
        )
    px, py, mag = px[~dup], py[~dup], mag[~dup]
    eligible = np.zeros(len(px), dtype=bool)
    eligible[:n_pairs] = True
    flagged = np.zeros(len(px), dtype=bool)
    flagged[:n_pairs] = [pair_blend_suspected(mi[a], me[j]) for a, j in pairs]
    selection = select_sources(
        px,
        py,
        mag,
        shape=intra.shape,
        edge_margin_px=config.edge_margin_px,
        isolation_px=isolation_px(telescope, config),
        isolated_mag_diff=config.isolated_mag_diff,
        max_donuts=config.max_donuts,
        keep_blended=config.keep_blended,
        eligible=eligible,
        flagged=flagged,
    )
    rejected += [Rejection(float(px[i]), float(py[i]), reason, "intra") for i, reason in selection.rejected]
    position = {int(i): k for k, i in enumerate(selection.keep.tolist())}
    donuts = []
    for k, idx in enumerate(selection.keep.tolist()):
        a, j = pairs[idx]
        donuts.append(
            _donut(
                telescope,
                mi[a],
                me[j],
                blended=bool(selection.blended[k]),
                blend_with=tuple(position[n] for n in selection.blend_with[k] if n in position),
            )
        )
    off = offset if offset is not None else (0.0, 0.0)
    note = (
        f"{len(donuts)} donut pairs (intra {len(mi)}, extra {len(me)} measured); extra - intra offset "
        f"({off[0]:+.1f}, {off[1]:+.1f}) px"
    )
    return ModeResult(tuple(donuts), tuple(rejected), note, (*off, *off))
