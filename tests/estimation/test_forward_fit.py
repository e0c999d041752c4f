"""Forward-model fits of batoid-traced AuxTel donut pairs (sim.optics), against the injected truth."""

import numpy as np
import pytest

from lsst.ts.auxtelwep.estimation.forward import ForwardOptions, fit_pair
from lsst.ts.auxtelwep.instrument import AuxTel, HexapodState
from lsst.ts.auxtelwep.sim.optics import render_stamp_pair
from lsst.ts.auxtelwep.stamps import DonutPair

SKY_E = 200.0


def _pair(hexapod: HexapodState, field: tuple[float, float], *, flux: float, seed: int, seeing: float = 1.0):
    sim = render_stamp_pair(
        AuxTel().with_hexapod(hexapod), *field, seeing_arcsec=seeing, flux=flux, sky=SKY_E, seed=seed
    )
    pair = DonutPair.from_arrays(
        sim.intra - SKY_E, sim.extra - SKY_E, variance_intra=SKY_E, variance_extra=SKY_E, field_deg=field
    )
    return pair, sim.truth.zernikes_ta_um


def _rms_nm(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean(((estimate - truth)[:8] * 1e3) ** 2)))  # Z4-Z11


@pytest.fixture(scope="module")
def bright_cases():
    rng = np.random.default_rng(2024)
    cases = []
    for seed in range(3):
        hexapod = HexapodState(x=rng.uniform(-0.3, 0.3), y=rng.uniform(-0.3, 0.3), z=rng.uniform(-0.1, 0.1))
        field = tuple(rng.uniform(-0.05, 0.05, 2))
        cases.append((hexapod, *_pair(hexapod, field, flux=2e6, seed=seed)))
    return cases


def test_bright_donuts_within_2nm(bright_cases) -> None:
    telescope = AuxTel()
    errors = []
    for hexapod, pair, truth in bright_cases:
        result = fit_pair(pair, telescope=telescope)
        rms = _rms_nm(result.zernikes_um, truth)
        errors.append(rms)
        assert result.success, result.message
        # Photon noise only: the reduced chi-square of a right model is 1 to within a few per cent.
        assert result.chi2_reduced == pytest.approx(1.0, abs=0.03), f"{hexapod}: chi2 {result.chi2_reduced}"
        assert result.fwhm_arcsec[0] == pytest.approx(1.0, abs=0.05)
        # Nothing left beyond the noise: no residual structure detected.
        assert result.structure_fraction == (0.0, 0.0)
        # Each case within 3 nm (noise of one realisation, about 1 nm, on top of the model error).
        assert rms < 3.0, f"{hexapod}: Z4-Z11 RMS error {rms:.2f} nm"
        # The reported errors are honest: no coefficient is more than 5 sigma off.
        pulls = np.abs(result.zernikes_um - truth)[:8] / result.zernikes_err_um[:8]
        assert pulls.max() < 5, f"{hexapod}: pulls {np.round(pulls, 1)}"
        assert [s.name for s in result.stages] == ["grid", "coarse", "polish"]
    # The target: danish accuracy for bright isolated donuts.
    assert np.mean(errors) <= 2.0, (
        f"mean Z4-Z11 RMS error {np.mean(errors):.2f} nm over {np.round(errors, 2)}"
    )


def _snr_flux(snr: float, n_pixels: float = 31_000.0) -> float:
    """Flux giving ``snr = S / sqrt(S + n_pixels * sky)`` (detection's aperture SNR, a 100 px radius)."""
    b = snr**2
    return 0.5 * (b + np.sqrt(b * b + 4 * b * n_pixels * SKY_E))


@pytest.mark.parametrize("snr, seed", [(100.0, 7), (200.0, 8)])
def test_faint_donuts_are_photon_noise_limited(snr: float, seed: int) -> None:
    pair, truth = _pair(HexapodState(x=0.2, y=-0.1, z=0.04), (0.01, 0.03), flux=_snr_flux(snr), seed=seed)
    result = fit_pair(pair, telescope=AuxTel())
    assert result.success, result.message
    assert result.chi2_reduced == pytest.approx(1.0, abs=0.03)
    rms = _rms_nm(result.zernikes_um, truth)
    formal = float(np.sqrt(np.mean((result.zernikes_err_um[:8] * 1e3) ** 2)))
    # The error is the photon noise the fit reports, within twice the formal error: about 12 nm RMS over
    # Z4-Z11 at SNR 100 with 1" seeing and 200 e- of sky, 6 nm at SNR 200, mostly Z5/Z6 (the 5 nm target at
    # SNR 100 is below this bound; see doc/estimation.md). Fits started at the truth end at the same place.
    assert rms < 2.0 * formal, f"SNR {snr}: error {rms:.1f} nm against a formal {formal:.1f} nm"
    assert formal < 1500.0 / snr, f"SNR {snr}: formal error {formal:.1f} nm larger than expected"


@pytest.mark.parametrize(
    "hexapod",
    [HexapodState(x=2.8, z=0.095), HexapodState(u=0.25, v=0.1, z=-0.09)],
    ids=["coma-0.5um-z4-0.36um", "tilt-coma-0.5um-z4+0.38um"],
)
def test_large_aberrations_converge(hexapod: HexapodState) -> None:
    # About 0.5 um of coma and 0.4 um of focus error: one donut of the pair is close to a caustic.
    pair, truth = _pair(hexapod, (0.01, 0.01), flux=1e6, seed=3)
    assert np.abs(truth[[3, 4]]).max() > 0.45 and abs(truth[0]) > 0.35  # the case is as large as stated
    result = fit_pair(pair, telescope=AuxTel())
    assert result.success, result.message
    assert result.chi2_reduced < 1.05
    # Started from zero and the Z4 grid; the danish paper's equivalent case ended at 11.7 nm.
    assert _rms_nm(result.zernikes_um, truth) < 10.0


def test_tie_seed_and_zero_start_agree(bright_cases) -> None:
    _, pair, truth = bright_cases[0]
    from_grid = fit_pair(pair, telescope=AuxTel())
    seeded = fit_pair(pair, telescope=AuxTel(), start_um=truth + 0.02)
    # Same minimum from two starts 20 nm apart in every term (tolerance: the 0.1-sigma step tolerance).
    np.testing.assert_allclose(seeded.zernikes_um, from_grid.zernikes_um, atol=5e-4)
    assert seeded.stages[0].name == "coarse"


def test_binning_one_stage_matches(bright_cases) -> None:
    _, pair, _ = bright_cases[1]
    staged = fit_pair(pair, telescope=AuxTel())
    single = fit_pair(pair, telescope=AuxTel(), options=ForwardOptions(coarse_binning=1))
    np.testing.assert_allclose(single.zernikes_um, staged.zernikes_um, atol=5e-4)
    assert len(single.stages) == 2  # grid and polish
