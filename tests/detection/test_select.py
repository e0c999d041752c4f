"""Donut selection rules: edges, magnitudes, blends (flagged, never merged), ordering and count."""

import numpy as np

from lsst.ts.auxtelwep.detection.select import blend_neighbours, select_sources

SHAPE = (4000, 4072)
RULES = dict(shape=SHAPE, edge_margin_px=128.0, isolation_px=223.0, isolated_mag_diff=2.0, max_donuts=20)


def test_blend_rule_uses_magnitude_difference() -> None:
    # 0 and 1 are 150 px apart and 1 mag apart: each blends the other. 2 is 3 mag fainter than 3, 100 px
    # away: 2 is blended by 3, but 3 is not blended by 2.
    x = np.array([1000.0, 1150.0, 3000.0, 3100.0])
    y = np.array([1000.0, 1000.0, 2000.0, 2000.0])
    mag = np.array([10.0, 11.0, 14.0, 11.0])
    neighbours = blend_neighbours(x, y, mag, isolation_px=223.0, isolated_mag_diff=2.0)
    assert neighbours == [(1,), (0,), (3,), ()]


def test_selection_rejects_edges_and_magnitudes_and_orders_unblended_first() -> None:
    x = np.array([100.0, 2000.0, 2150.0, 3000.0, 1000.0, np.nan, 5000.0, 1500.0])
    y = np.array([2000.0, 2000.0, 2000.0, 1000.0, 3000.0, 100.0, 100.0, 800.0])
    mag = np.array([10.0, 9.0, 9.5, 12.0, 15.0, 10.0, 10.0, 11.0])
    sel = select_sources(x, y, mag, mag_max=14.0, **RULES)
    # 3 (12 mag) and 7 (11 mag) are isolated: brightest first; then the blended pair 1, 2 by magnitude.
    assert list(sel.keep) == [7, 3, 1, 2]
    assert list(sel.blended) == [False, False, True, True]
    assert sel.blend_with[2] == (2,) and sel.blend_with[3] == (1,)
    reasons = dict(sel.rejected)
    assert reasons[0] == "within 128 px of the edge"
    assert reasons[4] == "fainter than mag_max=14"
    assert reasons[5] == "no position" and reasons[6] == "off the image"


def test_faint_neighbours_count_even_when_not_eligible_and_max_count() -> None:
    rng = np.random.default_rng(7)
    x = rng.uniform(300, 3700, 40)
    y = rng.uniform(300, 3700, 40)
    mag = rng.uniform(9, 13, 40)
    eligible = np.arange(40) < 30
    sel = select_sources(x, y, mag, eligible=eligible, **(RULES | {"max_donuts": 5}))
    assert len(sel.keep) == 5 and set(sel.keep) <= set(range(30))
    # Neighbours outside the eligible set still make blends.
    full = blend_neighbours(x, y, mag, isolation_px=223.0, isolated_mag_diff=2.0)
    for k, i in enumerate(sel.keep):
        assert sel.blended[k] == bool(full[i])
    assert sum("max_donuts=5" in r for _, r in sel.rejected) == 25
    no_blends = select_sources(x, y, mag, keep_blended=False, **RULES)
    assert not no_blends.blended.any()
    assert any(r.startswith("blended") for _, r in no_blends.rejected)
    # A blend seen only in the image moves a donut behind the isolated ones.
    flagged = np.zeros(40, dtype=bool)
    flagged[no_blends.keep[0]] = True
    moved = select_sources(x, y, mag, flagged=flagged, **(RULES | {"max_donuts": 40}))
    assert moved.blended[list(moved.keep).index(no_blends.keep[0])]
