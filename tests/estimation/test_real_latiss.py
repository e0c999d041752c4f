"""The real LATISS pair 2021032300307/308 (../shared/data/latiss_2021_danish): what the estimators make of it.

There is no truth. These tests pin what doc/estimation.md reports: the forward fit is stable, its chi-square
and the TIE-vs-forward disagreement are measured and reported, the stamps are in electron-like units with a
background-only variance (so the chi-square is not a units problem), the residual is turbulence speckle that
differs between the two exposures. With Z4-Z22 the TIE does not converge (the forward solution's Z22 folds
its extra mapping); with Z4-Z21 it converges to one point whatever its start, recovers the forward model's
own images to < 10 nm, and still ends about 40 nm from the forward fit on the data: the disagreement is in
the data (structure neither model represents), not a TIE defect. The chi-square of a few hundred is this
pair's brightness (SNR ~17 500): the same donuts as a star of operational flux fit to the photon noise.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import galsim
import numpy as np
import pytest
from scipy.ndimage import shift as nd_shift
from scipy.ndimage import uniform_filter

from lsst.ts.auxtelwep.estimation.forward import ForwardFitResult, ForwardOptions, fit_pair, pair_specs
from lsst.ts.auxtelwep.estimation.forward_model import DonutSetModel
from lsst.ts.auxtelwep.estimation.tie import solve_tie
from lsst.ts.auxtelwep.estimation.tie_geometry import TieGeometry
from lsst.ts.auxtelwep.instrument import AuxTel
from lsst.ts.auxtelwep.stamps import DonutPair

_log = logging.getLogger(__name__)

DATA = "latiss_2021_danish/AuxTelTestDonuts_2021032300307_308.npz"
# The TIE as run on this pair throughout: off-axis mapping, field position taken on axis (unknown).
TIE_ON_AXIS = {
    "geometry": TieGeometry.auxtel(),
    "field_intra_deg": (0.0, 0.0),
    "field_extra_deg": (0.0, 0.0),
    "model": "offAxis",
}


def _z4_z11_rms_nm(a_um: np.ndarray, b_um: np.ndarray) -> float:
    """RMS difference over Z4-Z11 (the first 8 terms), nm."""
    return float(np.sqrt(np.mean(((np.asarray(a_um)[:8] - np.asarray(b_um)[:8]) * 1e3) ** 2)))


def _shared_data() -> Path:
    """``shared/data`` next to the repository root (``<root>/../shared/data``)."""
    root = Path(__file__).resolve().parents[2]
    path = root.parent / "shared" / "data" / DATA
    if not path.is_file():
        pytest.fail(
            f"real LATISS test data missing: expected {path} (the repository's ../shared/data, see "
            "shared/data/README.md)"
        )
    return path


@pytest.fixture(scope="module")
def stamps() -> dict[str, np.ndarray]:
    with np.load(_shared_data()) as data:
        return {k: np.asarray(data[k]) for k in data.files}


def _pair(stamps, *, dx: float = 0.0, dy: float = 0.0) -> DonutPair:
    images = [stamps["intra"], stamps["extra"]]
    if dx or dy:
        images = [nd_shift(im, (dy, dx), order=1, mode="nearest") for im in images]
    # Field position unknown: on axis (the design varies by < 1 nm over the LATISS field).
    return DonutPair.from_arrays(
        images[0],
        images[1],
        variance_intra=float(stamps["var_intra"]),
        variance_extra=float(stamps["var_extra"]),
    )


def _model_images(pair, fit, telescope: AuxTel) -> np.ndarray:
    """Noiseless images of the forward model at a fit's solution (no background), shape (2, n, n)."""
    model = DonutSetModel(
        pair_specs(pair, telescope, 22),
        noll=fit.noll,
        npix=pair.size,
        binning=1,
        origin_offset_px=0.0,
        telescope=telescope,
        blur_per_donut=True,
    )
    params = np.concatenate(
        [fit.fluxes, fit.offsets_px[:, 0], fit.offsets_px[:, 1], [0.0, 0.0], fit.fwhm_arcsec, fit.zernikes_um]
    )
    # One FWHM per exposure, as fitted (a shared-FWHM model would read the second FWHM as Z4).
    assert len(params) == model.nparams
    return model.evaluate(params, jacobian=False).images


@pytest.fixture(scope="module")
def forward(stamps) -> ForwardFitResult:
    return fit_pair(_pair(stamps), telescope=AuxTel(), keep_images=True)


# A band around the 677 nm the danish notebook used for this pair (the filter is not recorded with the data).
BAND_M = (6.2e-7, 6.45e-7, 6.7e-7, 6.95e-7, 7.2e-7)


@pytest.fixture(scope="module")
def forward_diffraction(stamps) -> ForwardFitResult:
    options = ForwardOptions(diffraction_band_m=BAND_M)
    return fit_pair(_pair(stamps), telescope=AuxTel(), options=options, keep_images=True)


@pytest.fixture(scope="module")
def tie_on_data(stamps):
    return solve_tie(stamps["intra"], stamps["extra"], **TIE_ON_AXIS)


def test_units_and_variance_are_consistent_with_photon_noise(stamps) -> None:
    # Pixel-to-pixel noise (from a discrete Laplacian, which removes the smooth signal) against signal:
    # variance = signal / gain + background variance with gain close to 1, i.e. electron-like units with a
    # background-only variance, as the model assumes. The chi-square below is not a units problem.
    for role in ("intra", "extra"):
        a = stamps[role].astype(float)
        c = a[1:-1, 1:-1]
        lap = c - (a[2:, 1:-1] + a[:-2, 1:-1] + a[1:-1, 2:] + a[1:-1, :-2]) / 4
        sel = (c > 1000) & (c < 6000)
        var = (1.4826 * np.median(np.abs(lap[sel] - np.median(lap[sel])))) ** 2 / 1.25
        excess = (var - float(stamps[f"var_{role}"])) / c[sel].mean()
        assert 0.8 < excess < 1.3, f"{role}: noise variance per unit signal {excess:.2f}"


def test_forward_fit_reports_chi2_and_is_stable_under_1px_shifts(stamps, forward) -> None:
    assert forward.success, forward.message
    _log.info(
        "real pair: reduced chi2 %.1f per stamp %s", forward.chi2_reduced, forward.chi2_reduced_per_stamp
    )
    # Reported, not hidden: a few hundred (danish upstream: about 359), against 1.00 on simulations.
    assert 100 < forward.chi2_reduced < 1000
    for dx, dy in ((1.0, 0.0), (0.0, -1.0)):
        moved = fit_pair(_pair(stamps, dx=dx, dy=dy), telescope=AuxTel())
        change = np.abs(moved.zernikes_um - forward.zernikes_um) * 1e3
        # The stamp shift moves the donut, not the wavefront: within 5 nm in every term (measured: < 1 nm;
        # upstream danish jumps between local minima 10-30 nm apart).
        assert change.max() < 5.0, f"shift ({dx}, {dy}): changes {np.round(change, 1)} nm"


def _fainter(stamps, flux_e: float, seed: int) -> DonutPair:
    """The pair as a star of ``flux_e`` electrons would give it: the stamps scaled down, with the photon and
    background noise such a star would have added (Gaussian; the variance from the smoothed stamp)."""
    rng = np.random.default_rng(seed)
    scale = flux_e / float(stamps["intra"].sum())
    images = []
    for role in ("intra", "extra"):
        data = stamps[role].astype(float)
        source = np.maximum(uniform_filter(data, 5), 0.0)
        missing = scale * (1 - scale) * source + (1 - scale**2) * float(stamps[f"var_{role}"])
        images.append(scale * data + rng.normal(0.0, 1.0, data.shape) * np.sqrt(missing))
    return DonutPair.from_arrays(
        images[0],
        images[1],
        variance_intra=float(stamps["var_intra"]),
        variance_extra=float(stamps["var_extra"]),
    )


def test_at_operational_flux_the_model_fits_to_photon_noise(stamps, forward) -> None:
    # The pair holds 3.6e8 e- per donut (SNR about 17 500, as ts_wep's SN): its 10-25 % speckle is hundreds of
    # photon sigmas, hence the chi-square of a few hundred. As the service sees stars (SNR 150-600 here), the
    # same donuts fit to the photon noise: the model is not what fails on real data at operational flux.
    chi2, structure = {}, {}
    for flux in (2e6, 5e5):
        pair = _fainter(stamps, flux, seed=1)
        fit = fit_pair(pair, telescope=AuxTel())
        assert fit.success, fit.message
        chi2[flux] = fit.chi2_reduced
        structure[flux] = fit.structure_fraction
        tie = solve_tie(pair.intra.image, pair.extra.image, **TIE_ON_AXIS)
        gap = _z4_z11_rms_nm(tie.deviation_um, fit.zernikes_um)
        # The TIE-vs-forward disagreement does not fade with the speckle (measured 33-39 nm): it is the
        # radial structure of the data, at any flux.
        assert gap > 20.0, f"{flux:.0e} e-: TIE vs forward {gap:.1f} nm"
    # Measured: 1.29 at 2e6 e- (SNR ~560), 1.02 at 5e5 e- (SNR ~150); the full pair: about 350.
    assert chi2[5e5] < 1.1 and chi2[2e6] < 1.6, chi2
    assert forward.chi2_reduced > 100 * chi2[2e6]
    # What the chi-square hides at operational flux, the residual structure keeps telling: about 21 % of
    # the light at full flux and at 2e6 e- (measured 0.21-0.22 and 0.18-0.19); at 5e5 e- it is below what
    # the noise allows to detect (0).
    assert all(0.17 < f < 0.26 for f in forward.structure_fraction), forward.structure_fraction
    assert all(0.14 < f < 0.26 for f in structure[2e6]), structure


def _pair_with_structure_beyond_the_model(
    low_um: np.ndarray, high_rms_um: float, *, seed: int, flux: float = 3.6e8
) -> DonutPair:
    """A simulated pair like the real one: the wavefront ``low_um`` (Z4-Z22) common to both exposures plus, in
    each exposure, its own random Z23-Z66 of ``high_rms_um`` RMS (amplitudes falling as (n + 1)^(-11/6),
    Kolmogorov-like), at the real pair's flux, seeing (1.4" / 2.0") and background variance."""
    rng = np.random.default_rng(seed)
    noll = np.arange(4, 67)
    blank = DonutPair.from_arrays(
        np.zeros((243, 243)), np.zeros((243, 243)), variance_intra=1, variance_extra=1
    )
    # The design references stop at Z28; beyond, the design's own terms are below 0.1 nm.
    specs = [
        dataclasses.replace(s, reference_um=np.pad(s.reference_um, (0, 66 - 28)))
        for s in pair_specs(blank, AuxTel(), 28)
    ]
    model = DonutSetModel(
        specs, noll=noll, npix=243, binning=1, origin_offset_px=0.0, telescope=AuxTel(), blur_per_donut=True
    )
    order = np.array([galsim.zernike.noll_to_zern(int(j))[0] for j in noll])
    images = []
    for d in range(2):
        high = rng.normal(0.0, 1.0, noll.size) * np.where(noll >= 23, (order + 1.0) ** (-11.0 / 6.0), 0.0)
        dz = np.pad(low_um, (0, noll.size - low_um.size)) + high * high_rms_um / np.sqrt(np.sum(high**2))
        params = np.concatenate([[flux, flux], np.zeros(6), [1.4, 2.0], dz])
        image = model.evaluate(params, jacobian=False).images[d]
        images.append(image + rng.normal(0.0, 1.0, image.shape) * np.sqrt(np.maximum(image, 0.0) + 300.0))
    return DonutPair.from_arrays(images[0], images[1], variance_intra=300.0, variance_extra=300.0)


def test_structure_beyond_the_model_makes_a_gap_like_the_real_one(forward) -> None:
    # The cause of the real pair's chi-square and TIE-vs-forward gap, reproduced: with the real pair's fitted
    # Z4-Z22 and 60 nm RMS of Z23-Z66 in each exposure (ring residual 15-18 % RMS; the real pair's: 21 %),
    # the forward fit's chi-square is a few hundred and the TIE and the forward fit disagree by 19-56 nm over
    # Z4-Z11 (real: 35-44). Against the truth the forward fit is off by 10-28 nm and the TIE (Z4-Z21) by
    # 21-43 nm, the forward fit the closer in every one of 11 realisations (doc/estimation.md). Neither
    # model holds the structure; the forward fit, the default, is the one to believe.
    low = forward.zernikes_um
    pair = _pair_with_structure_beyond_the_model(low, 0.060, seed=7)
    fit = fit_pair(pair, telescope=AuxTel())
    tie = solve_tie(pair.intra.image, pair.extra.image, noll=range(4, 22), **TIE_ON_AXIS)
    forward_error, tie_error = _z4_z11_rms_nm(fit.zernikes_um, low), _z4_z11_rms_nm(tie.deviation_um, low)
    gap = _z4_z11_rms_nm(tie.deviation_um, fit.zernikes_um)
    _log.info(
        "structure beyond Z22: chi2 %.0f, forward %.1f, TIE %.1f, gap %.1f nm",
        fit.chi2_reduced,
        forward_error,
        tie_error,
        gap,
    )
    # Measured with this seed: chi2 255, forward 27.7 nm, TIE 43.2 nm, gap 55.9 nm, residual structure
    # 0.19 / 0.15 (the real pair: 0.22 / 0.21).
    assert fit.chi2_reduced > 100
    assert all(0.1 < f < 0.25 for f in fit.structure_fraction), fit.structure_fraction
    assert gap > 20.0
    assert forward_error < 35.0 and forward_error < tie_error


def test_residual_is_speckle_that_differs_between_exposures(stamps, forward) -> None:
    # Relative residual in the bright ring, after removing its azimuthal mean, for each donut about its
    # fitted centre; then the correlation between the intra residual and the extra one turned by 180 deg
    # (how a static wavefront error would appear in both).
    n = stamps["intra"].shape[0]
    yy, xx = np.mgrid[:n, :n]
    rel = []
    for k, role in enumerate(("intra", "extra")):
        model = forward.models[k]
        cx, cy = (n - 1) / 2 + forward.offsets_px[k]
        r = np.hypot(xx - cx, yy - cy)
        ring = (r > 50) & (r < 80)
        frac = np.where(ring, stamps[role] / model - 1, 0.0)
        ri = r.astype(int)
        profile = np.bincount(ri[ring], frac[ring], minlength=ri.max() + 1) / np.maximum(
            np.bincount(ri[ring], minlength=ri.max() + 1), 1
        )
        rel.append(np.where(ring, frac - profile[ri], 0.0))
        rms = float(np.std(rel[-1][ring]))
        # 10-25 % RMS structure at a signal of about 1.5e4 e- per pixel (photon noise: 0.8 %).
        assert 0.10 < rms < 0.25, f"{role}: speckle RMS {rms:.3f}"
    rotated = rel[0][::-1, ::-1]
    both = (rel[1] != 0) & (rotated != 0)
    corr = float(np.corrcoef(rotated[both], rel[1][both])[0, 1])
    assert abs(corr) < 0.3, f"intra/extra speckle correlation {corr:.2f}"


def test_tie_vs_forward_disagreement_is_reported_and_tie_limited(stamps, forward, tie_on_data) -> None:
    disagreement = _z4_z11_rms_nm(tie_on_data.deviation_um, forward.zernikes_um)
    _log.info(
        "real pair: TIE %s (%s) vs forward, Z4-Z11 RMS %.1f nm",
        tie_on_data.converged,
        tie_on_data.message,
        disagreement,
    )
    # Measured: about 37 nm (upstream: 30-35 nm), and the TIE does not converge on this pair.
    assert 10.0 < disagreement < 80.0
    assert not tie_on_data.converged
    # The TIE run on the forward model's own noiseless images (same wavefront with Z4-Z22, same seeing) also
    # fails to converge and misses that known wavefront by more than 10 nm: with Z22 the TIE is out of its
    # range (see the Z4-Z21 test below for what it does within it).
    images = _model_images(_pair(stamps), forward, AuxTel())
    on_model = solve_tie(images[0], images[1], **TIE_ON_AXIS)
    miss = _z4_z11_rms_nm(on_model.deviation_um, forward.zernikes_um)
    # Measured: a caustic at iteration 18, 20 nm from the known wavefront.
    assert not on_model.converged
    assert miss > 10.0, f"TIE on the model images: {miss:.1f} nm"


def test_diffraction_fills_the_hole_and_lowers_chi2(stamps, forward, forward_diffraction) -> None:
    # The one model change of the candidates (orientation, defocus amount, wavelength, field angle, blur
    # profile, Z23-Z37, diffraction) that moves the chi-square by more than 10 %: the geometric donut has an
    # empty hole, the data's extra hole holds 30-45 % of the ring, and diffraction at AuxTel's small defocus
    # puts about 40 % there (15 % in the intra donut, whose hole is larger). Measured 347 -> 261.
    assert forward_diffraction.success, forward_diffraction.message
    _log.info(
        "real pair with diffraction: reduced chi2 %.1f (geometric %.1f), Z4-Z11 %s nm",
        forward_diffraction.chi2_reduced,
        forward.chi2_reduced,
        np.round(forward_diffraction.zernikes_um[:8] * 1e3),
    )
    assert forward_diffraction.chi2_reduced < 0.85 * forward.chi2_reduced
    # What is left is far from 1: turbulence speckle of each exposure (see the speckle test).
    assert forward_diffraction.chi2_reduced > 100
    n = stamps["extra"].shape[0]
    c = (n - 1) // 2

    def hole_fill(image):
        return image[c - 3 : c + 4, c - 3 : c + 4].mean() / image[c, c + 50 : c + 80].mean()

    data_fill = hole_fill(stamps["extra"])
    geo_fill = hole_fill(forward.models[1] - forward.backgrounds[1])
    dif_fill = hole_fill(forward_diffraction.models[1] - forward_diffraction.backgrounds[1])
    # Measured: data 0.44, geometric + blur 0.12, diffraction + blur 0.19: diffraction explains part of the
    # filled hole, not all of it (what is left is in doc/estimation.md).
    assert data_fill > 0.3
    assert geo_fill < 0.15
    assert geo_fill + 0.04 < dif_fill < data_fill
    moved = fit_pair(
        _pair(stamps, dx=1.0), telescope=AuxTel(), options=ForwardOptions(diffraction_band_m=BAND_M)
    )
    change = np.abs(moved.zernikes_um - forward_diffraction.zernikes_um) * 1e3
    # Stable under a 1 px shift, as the geometric fit (measured 0.2 nm).
    assert change.max() < 5.0, f"changes {np.round(change, 1)} nm"


def test_tie_started_at_the_forward_solution_returns_to_its_own(stamps, forward) -> None:
    geometry, kwargs = TIE_ON_AXIS["geometry"], TIE_ON_AXIS
    intrinsic = geometry.design.intrinsic_zernikes_um(0.0, 0.0, forward.noll)
    # The forward solution (Z22 about -42 nm) folds the TIE's extra mapping at the rim (r > 0.93, 9 %):
    # the TIE cannot even start there (from zero, its Z4-Z22 loop drifts in Z4 until that mapping folds).
    folded = solve_tie(stamps["intra"], stamps["extra"], start_um=forward.zernikes_um + intrinsic, **kwargs)
    assert folded.caustic and folded.iterations == 0, folded.message
    # Without Z22 both estimators converge, each to its own answer.
    noll = tuple(range(4, 22))
    pair = _pair(stamps)
    telescope = AuxTel()
    fwd = fit_pair(pair, telescope=telescope, options=ForwardOptions(noll=noll))
    assert fwd.success, fwd.message
    from_zero = solve_tie(stamps["intra"], stamps["extra"], noll=noll, **kwargs)
    start = fwd.zernikes_um + geometry.design.intrinsic_zernikes_um(0.0, 0.0, noll)
    started = solve_tie(stamps["intra"], stamps["extra"], noll=noll, start_um=start, **kwargs)
    assert from_zero.converged and started.converged, (from_zero.message, started.message)

    # Started at the forward solution the TIE walks back to its own fixed point (measured 0.4 nm from the
    # start at zero, 44 nm from the forward fit): one fixed point, not a convergence defect.
    assert _z4_z11_rms_nm(started.deviation_um, from_zero.deviation_um) < 3.0
    gap = _z4_z11_rms_nm(started.deviation_um, fwd.zernikes_um)
    _log.info("real pair Z4-Z21: TIE from the forward solution ends %.1f nm RMS (Z4-Z11) from it", gap)
    assert gap > 25.0
    # On the forward model's own noiseless images the same TIE recovers the forward wavefront (measured
    # 6.6 nm): the TIE sees the data differently from the model, the mismatch is in the data.
    images = _model_images(pair, fwd, telescope)
    on_model = solve_tie(images[0], images[1], noll=noll, **kwargs)
    assert on_model.converged, on_model.message
    assert _z4_z11_rms_nm(on_model.deviation_um, fwd.zernikes_um) < 10.0
