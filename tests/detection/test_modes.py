"""The three modes and the automatic choice on synthetic fields (independent renderer: detsynth.py).

Full-frame fields are rendered once per module; the edge cases (empty field, saturated star, blend) use
small images, which detection handles the same way.
"""

import dataclasses
from pathlib import Path

import detsynth as ds
import numpy as np
import pytest
from astropy.io import fits

from lsst.ts.auxtelwep.detection import DetectionConfig, detect_donuts
from lsst.ts.auxtelwep.detection.defocal import DefocalImage
from lsst.ts.auxtelwep.errors import CatalogError, ConfigurationError, DetectionError, InputError
from lsst.ts.auxtelwep.exposure import Exposure, MaskBit, RawImage
from lsst.ts.auxtelwep.instrument import AuxTel, HexapodState, Role
from lsst.ts.auxtelwep.sim.stamp_pair import render_stamp_pair

SMALL = (1024, 1024)


@pytest.fixture(scope="module")
def triplet():
    """A 12-star field: intra, extra (telescope offset by (4.2, -2.7) px) and in-focus images."""
    rng = np.random.default_rng(20)
    field = ds.make_field(rng, n_stars=12, extra_faint=15, flux_range=(8e5, 5e6))
    intra = ds.render(field, rng)
    extra = ds.render(field, rng, offset_px=(4.2, -2.7))
    infocus = ds.render(field, rng, kind="star", cosmic_rays=20)
    return field, intra, extra, infocus


def _with_header(exposure, header, role: str):
    """``exposure`` with ``header``, named for its role (one OBSID in two roles is refused)."""
    header = header.copy()
    header["OBSID"] = f"SIM_{role}"
    return dataclasses.replace(exposure, header=header)


def _detect(triplet, header, *, infocus=False, config=None):
    """`detect_donuts` on the triplet's pair (and in-focus image if ``infocus``), all with ``header``."""
    field, intra, extra, focus = triplet
    return detect_donuts(
        _with_header(intra, header, "intra"),
        _with_header(extra, header, "extra"),
        infocus=_with_header(focus, header, "infocus") if infocus else None,
        refcat=field.refcat,
        config=config,
    )


def _errors(cat, field, offset=(0.0, 0.0)):
    """Distance of each donut (intra, extra) to the nearest true position, px."""
    n = len(field.flux)
    tx, ty = field.x[:n], field.y[:n]
    out = []
    for d in cat.donuts:
        di = np.hypot(tx - d.intra_x, ty - d.intra_y).min()
        de = np.hypot(tx + offset[0] - d.extra_x, ty + offset[1] - d.extra_y).min()
        out.append((di, de))
    return np.array(out)


@pytest.mark.slow
def test_auto_picks_wcs_when_the_header_is_good(triplet) -> None:
    field = triplet[0]
    header = ds.header_for(field, shift_px=(3.0, -4.0), rotation_deg=0.02)
    cat = _detect(triplet, header)
    assert cat.mode == "wcs" and cat.reason.startswith("wcs chosen")
    on_chip = (
        12  # make_field keeps the 12 bright stars 150 px inside the chip; the faint ones are undetectable
    )
    assert len(cat) == on_chip
    # SNR >= 150 donuts (centroid noise ~0.2 px): within 1 px on both images, each with its own position.
    assert _errors(cat, field, (4.2, -2.7)).max() < 1.0
    assert {d.ref_index for d in cat.donuts} == set(range(12))


@pytest.mark.slow
def test_auto_refits_a_wcs_off_by_100_px_and_8_degrees(triplet) -> None:
    field = triplet[0]
    header = ds.header_for(field, shift_px=(100.0, 0.0), rotation_deg=8.0)
    cat = _detect(triplet, header, infocus=True)
    assert cat.mode == "refit" and "wcs not chosen" in cat.reason
    assert cat.wcs_scatter_arcsec < 0.1 and cat.n_astrometry_matches >= 10
    assert len(cat) == 12 and _errors(cat, field, (4.2, -2.7)).max() < 1.0


@pytest.mark.slow
def test_auto_falls_back_to_template_without_an_infocus_image(triplet) -> None:
    field = triplet[0]
    header = ds.header_for(field, shift_px=(100.0, 0.0), rotation_deg=8.0)
    cat = _detect(triplet, header)
    assert cat.mode == "template"
    assert "refit not possible: no in-focus image" in cat.reason
    assert len(cat) == 12 and cat.wcs is None and all(d.ref_index is None for d in cat.donuts)
    # The common extra - intra offset is found (4.2, -2.7) to a fraction of a pixel.
    assert cat.offsets_px[:2] == pytest.approx((4.2, -2.7), abs=0.3)


@pytest.mark.slow
def test_forced_wcs_mode_falls_back_when_the_wcs_misses(triplet) -> None:
    field = triplet[0]
    header = ds.header_for(field, shift_px=(300.0, 0.0), rotation_deg=0.0)
    cat = _detect(triplet, header, infocus=True, config=DetectionConfig(mode="wcs"))
    # 300 px off: the catalog does not line up with the template detections even within the search radius,
    # so mode 'wcs' refuses (rather than hand out donuts of the wrong stars) and the fallback solves the WCS.
    assert cat.mode == "refit" and cat.reason.startswith("wcs failed: the WCS does not line up")
    assert len(cat) == 12 and _errors(cat, field, (4.2, -2.7)).max() < 1.0
    with pytest.raises(DetectionError, match="wcs failed: the WCS does not line up"):
        _detect(triplet, header, config=DetectionConfig(mode="wcs", fallback=False))


@pytest.mark.slow
def test_template_completeness_with_cosmic_rays_and_hot_columns() -> None:
    rng = np.random.default_rng(21)
    # 35 isolated donuts from SNR ~25 to ~600 (sky 400 e-/px, read noise 9 e-).
    field = ds.make_field(rng, n_stars=35, flux_range=(1.2e5, 4e6))
    intra = ds.render(field, rng, cosmic_rays=300, hot_column=1500)
    extra = ds.render(field, rng, offset_px=(-6.0, 3.5), cosmic_rays=300, hot_column=2701)
    cat = detect_donuts(intra, extra, config=DetectionConfig(max_donuts=100))
    assert cat.mode == "template"
    # Ideal aperture SNR of each injected donut: F / sqrt(F + N_ap * sigma^2).
    n_ap = np.pi * (ds.OUTER_PX + 2.5 * ds.FWHM_PX / 2.3548) ** 2
    snr = field.flux / np.sqrt(field.flux + n_ap * (400.0 + 81.0))
    err = _errors(cat, field, (-6.0, 3.5))
    # No false detection: every donut is a true one (cosmic rays and hot columns give none).
    assert err.max() < 3.0
    found = np.zeros(len(field.flux), dtype=bool)
    for d in cat.donuts:
        found[np.argmin(np.hypot(field.x - d.intra_x, field.y - d.intra_y))] = True
    bright = snr >= 50
    assert bright.sum() >= 20
    assert found[bright].mean() >= 0.95
    assert not any(d.blended for d in cat.donuts)


def _small(rng, positions, fluxes, *, saturation=None, sky=400.0):
    field = ds.make_field(rng, shape=SMALL, positions=np.array(positions, dtype=float).reshape(-1, 2))
    field.flux = np.array(fluxes, dtype=float)
    return (
        field,
        ds.render(field, rng, saturation=saturation, sky=sky),
        ds.render(field, rng, saturation=saturation, sky=sky),
    )


def test_empty_field_says_no_donuts() -> None:
    rng = np.random.default_rng(22)
    _, intra, extra = _small(rng, np.empty((0, 2)), [])
    with pytest.raises(DetectionError, match=r"no donuts on the intra and extra-focal image.*10 sigma"):
        detect_donuts(intra, extra)


def test_saturated_star_is_rejected_with_the_reason() -> None:
    rng = np.random.default_rng(23)
    # 2e9 e- over ~26000 px: ~77000 e-/px on the plateau plus the sky... clipped at 60000.
    _, intra, extra = _small(rng, [(500.0, 480.0)], [2e9], saturation=60000.0)
    assert (intra.mask & MaskBit.SAT).any()
    with pytest.raises(DetectionError, match="saturated"):
        detect_donuts(intra, extra)


def test_two_star_blend_is_flagged_not_merged_silently() -> None:
    rng = np.random.default_rng(24)
    # A pair 60 px and 1 mag apart: one merged detection, flagged as blended.
    _, intra, extra = _small(rng, [(400.0, 500.0), (460.0, 500.0)], [2e6, 2e6 / 2.512])
    cat = detect_donuts(intra, extra)
    assert len(cat) >= 1 and all(d.blended for d in cat.donuts)
    # A pair 50 px and 0.25 mag apart: one detection whose annulus looks whole, but the neighbour's ring
    # crosses its hole in both images (0.35-0.39 of the annulus' surface brightness).
    _, intra, extra = _small(rng, [(400.0, 500.0), (440.0, 530.0)], [2e6, 2e6 / 10**0.1])
    cat = detect_donuts(intra, extra, config=DetectionConfig(mode="template"))
    assert len(cat) >= 1 and all(d.blended for d in cat.donuts)
    # A pair 150 px apart: two detections, each flagged as blending the other.
    _, intra, extra = _small(rng, [(400.0, 500.0), (550.0, 500.0)], [2e6, 1e6])
    cat = detect_donuts(intra, extra)
    assert len(cat) == 2 and all(d.blended for d in cat.donuts)
    assert cat.donuts[0].blend_with == (1,) and cat.donuts[1].blend_with == (0,)


def test_configuration_errors() -> None:
    rng = np.random.default_rng(25)
    _, intra, extra = _small(rng, [(500.0, 500.0)], [1e6])
    with pytest.raises(ConfigurationError, match="needs a reference catalog"):
        detect_donuts(intra, extra, config=DetectionConfig(mode="wcs", fallback=False))
    with pytest.raises(ConfigurationError, match="differ in shape"):
        detect_donuts(intra, dataclasses.replace(extra, image=extra.image[:-1], mask=extra.mask[:-1]))
    with pytest.raises(ValueError, match="mag_min"):
        DetectionConfig(mag_min=15.0, mag_max=12.0)
    # Without fallback a forced refit without an in-focus image is refused up front.
    with pytest.raises(ConfigurationError, match="in-focus"):
        detect_donuts(
            intra,
            extra,
            refcat=ds.make_field(rng, shape=SMALL, n_stars=1).refcat,
            config=DetectionConfig(mode="refit", fallback=False),
        )


def _one_sided_pair(decenter_mm: float, focus_mm: float, stars: list[tuple[float, float, float]]):
    """Intra and extra frames (1024 px, electrons) of ``stars`` (x, y, flux) with M2 decentred."""
    telescope = AuxTel().with_hexapod(HexapodState(x=0.6 * decenter_mm, y=-0.8 * decenter_mm, z=focus_mm))
    rng = np.random.default_rng(31)
    images = [rng.poisson(200.0, SMALL).astype(np.float32) for _ in range(2)]
    for k, (x, y, flux) in enumerate(stars):
        sim = render_stamp_pair(telescope, 0.01, -0.02, seeing_arcsec=1.0, flux=flux, sky=0.0, seed=k)
        for image, stamp, (cx, cy) in (
            (images[0], sim.intra, sim.truth.intra_centroid),
            (images[1], sim.extra, sim.truth.extra_centroid),
        ):
            x0, y0 = round(x - cx), round(y - cy)
            image[y0 : y0 + stamp.shape[0], x0 : x0 + stamp.shape[1]] += stamp
    header = fits.Header({"BUNIT": "electron"})
    mask = np.zeros(SMALL, dtype=np.uint16)
    return [Exposure(image=im, mask=mask, header=header, wcs=None, units="electron") for im in images]


@pytest.mark.parametrize(("decenter_mm", "focus_mm"), [(0.42, 0.1), (1.4, 0.02), (2.8, 0.095)])
def test_a_donut_position_is_its_light_centroid(decenter_mm: float, focus_mm: float) -> None:
    # The centroid was taken in the template's aperture: a donut grown by a focus error, or stretched by
    # coma, lost its edge there (2-3 px off at 0.42 mm and 0.1 mm of focus error), and beyond 7 px from the
    # correlation peak the peak was kept (6 px off at 1.4 mm, 13 px at 2.8 mm).
    telescope = AuxTel().with_hexapod(HexapodState(x=0.6 * decenter_mm, y=-0.8 * decenter_mm, z=focus_mm))
    sim = render_stamp_pair(
        telescope, 0.01, -0.02, seeing_arcsec=1.0, flux=5e6, sky=0.0, seed=3, noiseless=True
    )
    rng = np.random.default_rng(32)
    for role, stamp in ((Role.INTRA, sim.intra), (Role.EXTRA, sim.extra)):
        # The oracle is the centroid of the light put in (the 255 px stamp clips 0.4 px off the ray-traced
        # truth at 2.8 mm).
        rows, cols = np.mgrid[: stamp.shape[0], : stamp.shape[1]]
        cx, cy = (stamp * cols).sum() / stamp.sum(), (stamp * rows).sum() / stamp.sum()
        x0, y0 = round(300.0 - cx), round(300.0 - cy)
        image = np.full((600, 600), 200.0)
        image[y0 : y0 + stamp.shape[0], x0 : x0 + stamp.shape[1]] += stamp
        image = rng.poisson(image).astype(np.float32)
        exposure = Exposure(
            image=image,
            mask=np.zeros(image.shape, dtype=np.uint16),
            header=fits.Header({"BUNIT": "electron"}),
            wcs=None,
            units="electron",
        )
        defocal = DefocalImage(exposure, role, telescope=AuxTel(), config=DetectionConfig())
        m = defocal.measure(x0 + cx + 3.0, y0 + cy - 2.0)  # a guess as placement gives it
        # SNR ~650-1000: 0.3 px is three times the noise; the bias was 3-6 px here.
        assert np.hypot(m.x - (x0 + cx), m.y - (y0 + cy)) < 0.3, (role, m.x - x0 - cx, m.y - y0 - cy)


@pytest.mark.parametrize(("decenter_mm", "focus_mm"), [(1.0, 0.05), (1.4, 0.02)])
def test_one_sided_donuts_are_stars_not_blends(decenter_mm: float, focus_mm: float) -> None:
    # M2 decentred by a millimetre makes every donut one-sided (coma), and the matched filter finds a second
    # peak 50-70 px from its centre on both images: unpaired at 1 mm, paired with its twin near focus. Taken
    # for neighbours, they made every donut a blend, and template mode (no WCS, no in-focus image) gave no
    # correction at all.
    intra, extra = _one_sided_pair(decenter_mm, focus_mm, [(300.0, 300.0, 5e6), (700.0, 650.0, 5e6)])
    cat = detect_donuts(intra, extra, config=DetectionConfig(mode="template"))
    assert len(cat) == 2 and not any(d.blended for d in cat.donuts)
    assert any(r.reason.startswith("second peak of the one-sided donut") for r in cat.rejected)
    # A real neighbour 80 px and 1 mag away shows in the donut's own light: still a blend.
    stars = [(300.0, 300.0, 5e6), (380.0, 300.0, 2e6), (700.0, 650.0, 5e6)]
    cat = detect_donuts(
        *_one_sided_pair(decenter_mm, focus_mm, stars), config=DetectionConfig(mode="template")
    )
    near = [d for d in cat.donuts if np.hypot(d.intra_x - 330.0, d.intra_y - 300.0) < 60.0]
    assert near and all(d.blended for d in near)


def test_a_donut_on_dead_pixels_is_rejected_as_such(triplet) -> None:
    field, intra, extra, _ = triplet
    header = ds.header_for(field, shift_px=(3.0, -4.0), rotation_deg=0.02)
    # A dead amplifier under the first star's intra donut: masked BAD by the ISR, nothing in it.
    x, y = round(field.x[0]), round(field.y[0])
    box = (slice(y - 150, y + 150), slice(x - 150, x + 150))
    image, mask = intra.image.copy(), intra.mask.copy()
    image[box], mask[box] = 0.0, MaskBit.BAD
    dead = dataclasses.replace(_with_header(intra, header, "intra"), image=image, mask=mask)
    cat = detect_donuts(dead, _with_header(extra, header, "extra"), refcat=field.refcat)
    (rejected,) = [r for r in cat.rejected if r.ref_index == 0]
    assert rejected.reason.startswith("100 % of the predicted donut is BAD/SAT/NO_DATA"), rejected.reason


def test_inputs_of_the_wrong_type_are_named(tmp_path: Path) -> None:
    image = Exposure(
        image=np.zeros((200, 200), np.float32), mask=np.zeros((200, 200), np.uint16), header=fits.Header()
    )
    for wrong in (np.zeros((200, 200)), RawImage("raw.fits", fits.Header(), {})):
        with pytest.raises(InputError, match=r"intra: expected Exposure, got .*read_exposure\(path\)"):
            detect_donuts(wrong, image)
    # A catalog file is read (here: found missing) before any detection runs.
    with pytest.raises(CatalogError, match="no such reference catalog"):
        detect_donuts(image, image, refcat=str(tmp_path / "refcat.ecsv"))
    with pytest.raises(InputError, match="refcat: expected RefCatalog, got list"):
        detect_donuts(image, image, refcat=[(10.0, -30.0, 12.0)])
    with pytest.raises(ConfigurationError, match="mode"):
        detect_donuts(image, image, config={"mode": "guess"})
