"""The must-show cases on simulator output (`lsst.ts.auxtelwep.sim.scene`: batoid-traced donuts, truth).

One triplet (intra, extra, in-focus) of a field with ten catalog stars, a 60 px blend pair and a saturated
star, seen through an M2 decentred by (0.1, -0.05) mm (which moves the images by about 60 px) at 1" seeing.
The simulator's expected electrons get Gaussian shot and read noise and are clipped at saturation (``SAT``
bit): ISR is skipped. WCS errors follow the simulator's convention (`sim.scene.offset_wcs`); the truth is
each star's light centroid on each image.
"""

import dataclasses

import numpy as np
import pytest
from astropy.io import fits

from lsst.ts.auxtelwep.detection import DetectionConfig, detect_donuts
from lsst.ts.auxtelwep.exposure import Exposure, MaskBit
from lsst.ts.auxtelwep.instrument import AuxTel, HexapodState, Role
from lsst.ts.auxtelwep.refcat import RefCatalog

scene = pytest.importorskip("lsst.ts.auxtelwep.sim.scene")
night = pytest.importorskip("lsst.ts.auxtelwep.sim.night")

POINTING = scene.Pointing(ra_deg=210.0, dec_deg=-45.0, rotpa_deg=35.0, camera_angle_deg=20.0)
HEXAPOD = HexapodState(x=0.1, y=-0.05, z=0.02)
SATURATION_E = 125640.0
EDGE = 128.0

pytestmark = pytest.mark.slow


@dataclasses.dataclass
class Sim:
    exposures: dict
    truths: dict
    refcat: RefCatalog
    notes: list
    telescope: AuxTel


@pytest.fixture(scope="module")
def sim() -> Sim:
    rng = np.random.default_rng(31)
    catalog = night.make_catalog(POINTING, seed=11, n_stars=10, blend_pair=True, saturated_star=True)
    telescope = AuxTel(hexapod=HEXAPOD)
    exposures, truths = {}, {}
    for role in (Role.INTRA, Role.EXTRA, Role.INFOCUS):
        electrons, stars = scene.render_scene(
            telescope, role, POINTING, catalog, seeing_arcsec=1.0, exptime_s=20.0, sky_e_per_px_per_s=5.0
        )
        noise = rng.standard_normal(electrons.shape, dtype=np.float32)
        image = electrons + noise * np.sqrt(electrons + 81.0)
        mask = np.zeros(image.shape, np.uint16)
        saturated = image >= SATURATION_E
        image[saturated] = SATURATION_E
        mask[saturated] |= np.uint16(MaskBit.SAT)
        header = fits.Header({"RA": POINTING.ra_deg, "DEC": POINTING.dec_deg, "ROTPA": POINTING.rotpa_deg})
        header["OBSID"] = f"SIM_{role.value}"
        exposures[role] = Exposure(image=image, mask=mask, header=header, units="electron")
        truths[role] = stars
    refcat = RefCatalog.from_arrays(catalog["ra"], catalog["dec"], catalog["mag"])
    return Sim(exposures, truths, refcat, list(catalog["note"]), telescope.with_camera_angle(20.0))


def _with_wcs(sim: Sim, role: Role, wcs, *, header: bool = True) -> Exposure:
    exposure = sim.exposures[role]
    hdr = exposure.header if header else fits.Header({"OBSID": exposure.obsid})
    return dataclasses.replace(exposure, wcs=wcs, header=hdr)


def _wcs(error):
    true = scene.true_wcs(POINTING, AuxTel())
    return (
        true if error is None else scene.offset_wcs(true, dx_px=error[0], dy_px=error[1], drot_deg=error[2])
    )


def _expected(sim: Sim) -> list[int]:
    """Isolated, unsaturated catalog stars whose donuts lie inside the edge margin on both images."""
    rows, cols = sim.exposures[Role.INTRA].image.shape
    keep = []
    for i, note in enumerate(sim.notes):
        inside = all(
            EDGE <= sim.truths[r][i].col <= cols - 1 - EDGE
            and EDGE <= sim.truths[r][i].row <= rows - 1 - EDGE
            for r in (Role.INTRA, Role.EXTRA)
        )
        if inside and note == "field":
            keep.append(i)
    return keep


def _check_positions(sim: Sim, cat, ids: list[int], *, tol_px: float) -> None:
    by_ref = {d.ref_index: d for d in cat.donuts}
    for i in ids:
        d = by_ref[i]
        ti, te = sim.truths[Role.INTRA][i], sim.truths[Role.EXTRA][i]
        assert np.hypot(d.intra_x - ti.col, d.intra_y - ti.row) < tol_px, (i, d)
        assert np.hypot(d.extra_x - te.col, d.extra_y - te.row) < tol_px, (i, d)


def _check_outcomes(sim: Sim, cat) -> None:
    """The saturated star is rejected as such; the blend pair is flagged, not merged silently."""
    saturated = sim.notes.index("saturated")
    assert any(r.ref_index == saturated and r.reason == "saturated" for r in cat.rejected)
    blend = [i for i, n in enumerate(sim.notes) if n == "blend"]
    flagged = [d for d in cat.donuts if d.ref_index in blend]
    assert flagged and all(d.blended for d in flagged)


def test_wcs_mode_with_a_5_px_wcs_error(sim: Sim) -> None:
    wcs = _wcs((5.0, -3.0, 0.05))
    cat = detect_donuts(
        _with_wcs(sim, Role.INTRA, wcs),
        _with_wcs(sim, Role.EXTRA, wcs),
        refcat=sim.refcat,
        config=DetectionConfig(mode="wcs", fallback=False),
        telescope=sim.telescope,
    )
    assert cat.mode == "wcs"
    expected = _expected(sim)
    assert len(expected) >= 4
    # Every isolated catalog star on the chip: within 1 px of the true light centroid on both images.
    _check_positions(sim, cat, expected, tol_px=1.0)
    _check_outcomes(sim, cat)


def test_refit_mode_with_100_px_and_8_degrees(sim: Sim) -> None:
    wcs = _wcs((100.0, 0.0, 8.0))
    cat = detect_donuts(
        _with_wcs(sim, Role.INTRA, wcs),
        _with_wcs(sim, Role.EXTRA, wcs),
        infocus=_with_wcs(sim, Role.INFOCUS, wcs),
        refcat=sim.refcat,
        config=DetectionConfig(mode="refit", fallback=False),
        telescope=sim.telescope,
    )
    assert cat.mode == "refit"
    assert cat.wcs_scatter_arcsec < 1.0 and cat.n_astrometry_matches >= 4
    # The solved WCS puts the stars where the true WCS does (the M2 shift is accounted for separately).
    true = _wcs(None)
    ra, dec = sim.refcat.ra_deg, sim.refcat.dec_deg
    dx = np.subtract(cat.wcs.all_world2pix(ra, dec, 0), true.all_world2pix(ra, dec, 0))
    assert np.abs(dx).max() < 1.0
    _check_positions(sim, cat, _expected(sim), tol_px=1.0)
    _check_outcomes(sim, cat)


def test_template_mode_without_wcs_with_cosmic_rays_and_a_hot_column(sim: Sim) -> None:
    rng = np.random.default_rng(32)
    hit = {}
    for role, column in ((Role.INTRA, 1777), (Role.EXTRA, 3012)):
        exposure = _with_wcs(sim, role, None, header=False)
        image = exposure.image.copy()
        for _ in range(300):  # cosmic-ray tracks of 1-8 pixels, 2-20 ke- each
            x0, y0 = rng.uniform(20, 4050), rng.uniform(20, 3980)
            angle = rng.uniform(0, np.pi)
            for t in range(int(rng.integers(1, 9))):
                image[int(y0 + t * np.sin(angle)), int(x0 + t * np.cos(angle))] += rng.uniform(2e3, 2e4)
        image[:, column] += 3000.0
        hit[role] = dataclasses.replace(exposure, image=image)
    cat = detect_donuts(
        hit[Role.INTRA], hit[Role.EXTRA], config=DetectionConfig(mode="template", fallback=False)
    )
    assert cat.mode == "template" and cat.wcs is None
    truth_i = np.array([(s.col, s.row) for s in sim.truths[Role.INTRA]])
    # No false detection: every donut is a star's donut (cosmic rays and the hot column give none).
    nearest = [int(np.argmin(np.hypot(*(truth_i - (d.intra_x, d.intra_y)).T))) for d in cat.donuts]
    distance = [
        np.hypot(d.intra_x - truth_i[k, 0], d.intra_y - truth_i[k, 1])
        for d, k in zip(cat.donuts, nearest, strict=False)
    ]
    for d, k, dist in zip(cat.donuts, nearest, distance, strict=True):
        assert dist < 1.0 or (d.blended and sim.notes[k] == "blend"), (k, dist)
    # Completeness for isolated donuts above SNR 50 (all the field stars here are far above it).
    expected = _expected(sim)
    found = set(nearest)
    assert len(found & set(expected)) / len(expected) >= 0.95
    assert any(r.reason == "saturated" for r in cat.rejected)


@pytest.mark.parametrize(
    ("case", "mode"),
    [
        ("good WCS", "wcs"),
        ("wrong WCS", "refit"),
        ("wrong WCS, no in-focus", "template"),
        ("no WCS", "template"),
    ],
)
def test_auto_picks_the_mode(sim: Sim, case: str, mode: str) -> None:
    error = {"good WCS": (4.0, -6.0, 0.03)}.get(case, (100.0, 0.0, 8.0))
    wcs = None if case == "no WCS" else _wcs(error)
    header = case != "no WCS"
    cat = detect_donuts(
        _with_wcs(sim, Role.INTRA, wcs, header=header),
        _with_wcs(sim, Role.EXTRA, wcs, header=header),
        infocus=None if "no in-focus" in case else _with_wcs(sim, Role.INFOCUS, wcs, header=header),
        refcat=sim.refcat,
        telescope=sim.telescope,
    )
    assert cat.mode == mode, cat.reason
    if case == "wrong WCS, no in-focus":
        assert "refit not possible: no in-focus image" in cat.reason
    if case == "no WCS":
        assert "no WCS and no RA/DEC" in cat.reason
    found = {
        int(np.argmin([np.hypot(s.col - d.intra_x, s.row - d.intra_y) for s in sim.truths[Role.INTRA]]))
        for d in cat.donuts
    }
    assert set(_expected(sim)) <= found
