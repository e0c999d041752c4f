"""Donut selection: edge margin, magnitude limits, isolation (blends), maximum count.

The rules follow ts_wep's donut selector, with AuxTel numbers (see `DetectionConfig`):

- a source is kept only if its centre is at least ``edge_margin_px`` from every edge;
- catalog magnitudes must lie within ``[mag_min, mag_max]`` when those are set;
- a source is *blended* when another source (kept or not, on the chip or just off it) lies within
  ``isolation_px`` and is less than ``isolated_mag_diff`` magnitudes fainter; blends are flagged (and their
  neighbours named), never merged;
- at most ``max_donuts`` are kept: unblended ones first, brightest first.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree

__all__ = ["Selection", "blend_neighbours", "select_sources"]


@dataclasses.dataclass(frozen=True)
class Selection:
    """Outcome of `select_sources`.

    Attributes
    ----------
    keep : `numpy.ndarray` of int
        Indices of the kept sources, in output order (unblended first, then by magnitude).
    blended : `numpy.ndarray` of bool
        Blend flag of each kept source.
    blend_with : `tuple` of `tuple` of `int`
        For each kept source, the indices (into the input) of the neighbours that blend it.
    rejected : `tuple` of `tuple` of (`int`, `str`)
        Index and reason of every eligible source that was not kept.
    """

    keep: NDArray[np.int64]
    blended: NDArray[np.bool_]
    blend_with: tuple[tuple[int, ...], ...]
    rejected: tuple[tuple[int, str], ...]


def blend_neighbours(
    x: ArrayLike, y: ArrayLike, mag: ArrayLike, *, isolation_px: float, isolated_mag_diff: float
) -> list[tuple[int, ...]]:
    """For each source, the other sources that blend it.

    Parameters
    ----------
    x, y : array-like, shape (n,)
        Positions, pixels (NaN positions never blend).
    mag : array-like, shape (n,)
        Magnitudes (or ``-2.5 log10(flux)``).
    isolation_px : `float`
        Separation below which two donuts blend, pixels.
    isolated_mag_diff : `float`
        A neighbour fainter by more than this does not blend.

    Returns
    -------
    neighbours : `list` of `tuple` of `int`
        ``neighbours[i]`` lists the indices ``j`` within ``isolation_px`` of ``i`` with
        ``mag[j] < mag[i] + isolated_mag_diff``.
    """
    xy = np.column_stack([np.asarray(x, dtype=float), np.asarray(y, dtype=float)])
    m = np.asarray(mag, dtype=float)
    out: list[list[int]] = [[] for _ in range(len(m))]
    finite = np.flatnonzero(np.all(np.isfinite(xy), axis=1))
    if finite.size < 2:
        return [tuple(v) for v in out]
    pairs = cKDTree(xy[finite]).query_pairs(isolation_px, output_type="ndarray")
    for a, b in finite[pairs] if pairs.size else []:
        if m[b] < m[a] + isolated_mag_diff:
            out[a].append(int(b))
        if m[a] < m[b] + isolated_mag_diff:
            out[b].append(int(a))
    return [tuple(sorted(v)) for v in out]


def select_sources(
    x: ArrayLike,
    y: ArrayLike,
    mag: ArrayLike,
    *,
    shape: tuple[int, int],
    edge_margin_px: float,
    isolation_px: float,
    isolated_mag_diff: float,
    max_donuts: int,
    keep_blended: bool = True,
    mag_min: float | None = None,
    mag_max: float | None = None,
    eligible: ArrayLike | None = None,
    flagged: ArrayLike | None = None,
) -> Selection:
    """Select donuts among sources.

    Parameters
    ----------
    x, y : array-like, shape (n,)
        Centres, 0-based pixels (x = column); NaN for sources with no position.
    mag : array-like, shape (n,)
        Magnitudes; every source counts as a possible blending neighbour.
    shape : `tuple` of `int`
        Image shape ``(rows, cols)``.
    edge_margin_px, isolation_px, isolated_mag_diff, max_donuts, keep_blended, mag_min, mag_max
        The rules of the module docstring.
    eligible : array-like of bool, optional
        Which sources may be kept (default all); the others only act as neighbours and are not reported.
    flagged : array-like of bool, optional
        Sources already known to be blended (e.g. an unresolved blend seen in the image).

    Returns
    -------
    selection : `Selection`
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    m = np.asarray(mag, dtype=float)
    n = m.size
    ok = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool).copy()
    rejected: list[tuple[int, str]] = []
    rows, cols = shape

    def reject(mask: NDArray[np.bool_], reason: str) -> None:
        for i in np.flatnonzero(ok & mask):
            rejected.append((int(i), reason))
        ok[mask] = False

    with np.errstate(invalid="ignore"):
        reject(~(np.isfinite(x) & np.isfinite(y)), "no position")
        reject((x < 0) | (y < 0) | (x > cols - 1) | (y > rows - 1), "off the image")
        reject(
            (x < edge_margin_px)
            | (y < edge_margin_px)
            | (x > cols - 1 - edge_margin_px)
            | (y > rows - 1 - edge_margin_px),
            f"within {edge_margin_px:g} px of the edge",
        )
        if mag_min is not None:
            reject(m < mag_min, f"brighter than mag_min={mag_min:g}")
        if mag_max is not None:
            reject(m > mag_max, f"fainter than mag_max={mag_max:g}")

    neighbours = blend_neighbours(x, y, m, isolation_px=isolation_px, isolated_mag_diff=isolated_mag_diff)
    blended_all = np.array([len(v) > 0 for v in neighbours], dtype=bool)
    if flagged is not None:
        blended_all |= np.asarray(flagged, dtype=bool)
    if not keep_blended:
        reject(blended_all, f"blended (a neighbour within {isolation_px:.0f} px)")
    candidates = np.flatnonzero(ok)
    order = candidates[np.lexsort((m[candidates], blended_all[candidates]))]
    keep = order[:max_donuts]
    for i in order[max_donuts:]:
        rejected.append((int(i), f"beyond max_donuts={max_donuts}"))
    return Selection(
        keep=keep.astype(np.int64),
        blended=blended_all[keep],
        blend_with=tuple(neighbours[i] for i in keep),
        rejected=tuple(rejected),
    )
