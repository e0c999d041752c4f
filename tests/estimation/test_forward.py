"""The forward model's pieces: Jacobian, blur, binning, design references, mask, solver."""

import numpy as np
import pytest

from lsst.ts.auxtelwep.errors import EstimationError, InputError
from lsst.ts.auxtelwep.estimation import forward_model as fm
from lsst.ts.auxtelwep.estimation.forward import ForwardOptions, fit_pair
from lsst.ts.auxtelwep.estimation.lm import levenberg_marquardt
from lsst.ts.auxtelwep.instrument import AuxTel, Role
from lsst.ts.auxtelwep.stamps import DonutPair

NOLL = tuple(range(4, 12))


@pytest.fixture(scope="module")
def telescope() -> AuxTel:
    return AuxTel()


@pytest.fixture(scope="module")
def binned_model(telescope: AuxTel) -> fm.DonutSetModel:
    specs = [
        fm.DonutSpec(fm.design_references(telescope, role, 0.02, -0.01), 0.02, -0.01)
        for role in (Role.INTRA, Role.EXTRA)
    ]
    return fm.DonutSetModel(specs, noll=NOLL, npix=63, binning=4, origin_offset_px=0.5, telescope=telescope)


def _params(model: fm.DonutSetModel, rng: np.random.Generator) -> np.ndarray:
    p = np.zeros(model.nparams)
    p[: model.nd] = [1e6, 1.1e6]
    p[model.nd : 3 * model.nd] = rng.normal(0, 0.5, 2 * model.nd)
    p[3 * model.nd : 4 * model.nd] = [1.0, -2.0]
    p[model.blur_slice] = 1.1
    p[model.dz_slice] = rng.normal(0, 0.02, len(NOLL))
    return p


def test_jacobian_matches_finite_differences(binned_model: fm.DonutSetModel) -> None:
    rng = np.random.default_rng(11)
    p = _params(binned_model, rng)
    jac = binned_model.evaluate(p).jacobian
    steps = np.full(binned_model.nparams, 1e-3)
    steps[: binned_model.nd] = 1e3
    steps[binned_model.nd : 4 * binned_model.nd] = 1e-2
    steps[binned_model.blur_slice] = 1e-3
    for k in range(binned_model.nparams):
        up, down = p.copy(), p.copy()
        up[k] += steps[k]
        down[k] -= steps[k]
        fd = (
            binned_model.evaluate(up, jacobian=False).images
            - binned_model.evaluate(down, jacobian=False).images
        ) / (2 * steps[k])
        rel = np.linalg.norm(jac[k] - fd) / np.linalg.norm(fd)
        # Flux, offsets, background and blur are exact (float32 round-off). The Zernike columns come from the
        # transport-of-intensity identity sampled at the centres of 4x-binned pixels: up to 8 % here (below
        # 1 % at full resolution), which only slows Gauss-Newton down; the residual itself is exact.
        tol = 2e-3 if k < binned_model.dz_slice.start else 0.1
        assert rel < tol, f"parameter {k}: Jacobian column off by {rel:.3g} (tol {tol})"


def test_model_conserves_flux_and_offsets_move_the_centroid(binned_model: fm.DonutSetModel) -> None:
    rng = np.random.default_rng(2)
    p = _params(binned_model, rng)
    p[3 * binned_model.nd : 4 * binned_model.nd] = 0.0
    base = binned_model.evaluate(p, jacobian=False)
    # Flux follows the flux parameters; the blur's wings beyond the 252 px stamp take up to 0.3 %.
    assert base.images.sum(axis=(1, 2)) == pytest.approx(p[:2] * base.valid_fraction, rel=3e-3)
    shifted = p.copy()
    shifted[binned_model.nd] += 4.0  # dx of the intra donut, stamp pixels = 1 model pixel
    moved = binned_model.evaluate(shifted, jacobian=False).images[0]
    cols = np.arange(binned_model.npix)
    shift = (moved.sum(axis=0) @ cols) / moved.sum() - (base.images[0].sum(axis=0) @ cols) / base.images[
        0
    ].sum()
    assert shift == pytest.approx(1.0, abs=0.01)


def test_bin_stamp_centres_and_sums() -> None:
    stamp = np.arange(255 * 255, dtype=float).reshape(255, 255)
    binned, offset = fm.bin_stamp(stamp, 4)
    assert binned.shape == (63, 63)
    # 63 blocks of 4 starting at pixel 1: the middle block spans 125..128, centre 126.5 vs stamp centre 127.
    assert offset == pytest.approx(-0.5)
    assert binned.sum() == pytest.approx(stamp[1:253, 1:253].sum())
    mask, _ = fm.bin_stamp(stamp == 5000.0, 4, reduce="any")
    assert mask.sum() == 1


def test_design_references_match_batoid(telescope: AuxTel) -> None:
    fx, fy = 0.043, -0.061
    # zernikeTA with the model's focal length (forward_optics: the donuts' own plate scales would put 2.2 nm
    # of Z4 too little in the extra reference).
    exact = fm.design_zernikes_ta(
        telescope.with_role(Role.EXTRA).optic,
        fx,
        fy,
        wavelength_m=telescope.wavelength_m,
        focal_length_m=telescope.focal_length_m,
    )[4:23]
    approx = fm.design_references(telescope, Role.EXTRA, fx, fy)[4:23]
    # Quadratic field fit over 3 x 3 points: 0.05 nm in the LATISS field (ray-trace noise level).
    np.testing.assert_allclose(
        approx, exact, atol=2e-4, err_msg="design reference off at (0.043, -0.061) deg"
    )
    with pytest.raises(InputError, match="intra and extra"):
        fm.design_references(telescope, Role.INFOCUS, 0.0, 0.0)


def test_mask_follows_the_baffles(telescope: AuxTel) -> None:
    mask = fm.auxtel_mask_params(telescope.wavelength_m)
    m2c = mask["Baffle_M2c"]["outer"]
    # Baffle_M2c: 0.2115 m, 2.7 m above the stop -> its shadow moves 0.0471 m per degree (danish: 0.04712).
    assert m2c["radius"] == [pytest.approx(0.2115)]
    assert m2c["center"][0] == pytest.approx(0.04712, rel=1e-3)
    assert m2c["clear"] is False
    assert mask["Baffle_M1"]["outer"]["clear"] is True
    # The whole LATISS field (corners at 0.076 deg) is covered, not only danish's 0.07 deg.
    assert m2c["thetaMax"] >= 0.1


def test_levenberg_marquardt_solves_a_nonlinear_problem() -> None:
    rng = np.random.default_rng(5)
    t = np.linspace(0, 4, 400)
    truth = np.array([2.0, 1.3, 0.4])
    y = truth[0] * np.exp(-truth[1] * t) + truth[2] + rng.normal(0, 0.01, t.size)

    def res(p):
        return (y - (p[0] * np.exp(-p[1] * t) + p[2])) / 0.01

    def jac(p):
        e = np.exp(-p[1] * t)
        return res(p), -np.array([e, -p[0] * t * e, np.ones_like(t)]) / 0.01

    out = levenberg_marquardt(
        res, jac, np.array([1.0, 0.5, 0.0]), lower=np.full(3, -10.0), upper=np.full(3, 10.0), ndof=397
    )
    assert out.success, out.message
    cov = np.linalg.inv(out.normal_matrix)
    # Within 4 sigma of the truth (noise 0.01 per point).
    assert np.all(np.abs(out.x - truth) < 4 * np.sqrt(np.diag(cov))), (out.x, truth)
    assert out.chi2 / 397 == pytest.approx(1.0, abs=0.2)


def _decay_problem(noise: float):
    """Residuals and Jacobian of an exponential decay fitted to 400 points with Gaussian noise."""
    rng = np.random.default_rng(5)
    t = np.linspace(0, 4, 400)
    y = 2.0 * np.exp(-1.3 * t) + 0.4 + rng.normal(0, noise, t.size)

    def res(p):
        return (y - (p[0] * np.exp(-p[1] * t) + p[2])) / noise

    def jac(p):
        e = np.exp(-p[1] * t)
        return res(p), -np.array([e, -p[0] * t * e, np.ones_like(t)]) / noise

    return res, jac


def test_levenberg_marquardt_stops_on_a_chord_step() -> None:
    # Started a few sigma from the optimum: after one accepted step, the step the first Jacobian gives is
    # already below the tolerance, so no second Jacobian is computed, and the answer is the optimum's.
    res, jac = _decay_problem(0.01)
    bounds = dict(lower=np.full(3, -10.0), upper=np.full(3, 10.0), ndof=397)
    optimum = levenberg_marquardt(
        res, jac, np.array([1.0, 0.5, 0.0]), step_tol=1e-8, chi2_tol=1e-12, **bounds
    )
    sigma = np.sqrt(np.diag(np.linalg.inv(optimum.normal_matrix)))
    out = levenberg_marquardt(res, jac, optimum.x + 3 * sigma, **bounds)
    assert out.success and "previous Jacobian" in out.message, out.message
    assert out.njev == 1
    assert np.all(np.abs(out.x - optimum.x) < 0.1 * sigma), (out.x - optimum.x) / sigma


def test_levenberg_marquardt_absolute_tolerance_stops_precise_fits_early() -> None:
    # With an approximate Jacobian (as a binned stage's is) the solver creeps in by a constant factor per
    # step; an absolute tolerance of a parameter sigma ends it sooner, within that of the strict answer.
    res, exact_jac = _decay_problem(1e-6)

    def jac(p):
        r, jac_t = exact_jac(p)
        return r, 0.7 * jac_t

    bounds = dict(lower=np.full(3, -10.0), upper=np.full(3, 10.0), ndof=397)
    start = np.array([1.6, 1.1, 0.5])
    strict = levenberg_marquardt(res, jac, start, **bounds)
    sigma = np.sqrt(np.diag(np.linalg.inv(strict.normal_matrix)))
    loose = levenberg_marquardt(res, jac, start, x_tol=sigma, **bounds)
    assert strict.success and loose.success
    assert loose.nfev < strict.nfev, (loose.nfev, strict.nfev)
    assert np.all(np.abs(loose.x - strict.x) < sigma)


def test_levenberg_marquardt_reports_an_exhausted_budget() -> None:
    def res(p):
        return np.array([p[0] ** 2 - 2.0, 10 * (p[1] - p[0] ** 2)])

    def jac(p):
        return res(p), np.array([[2 * p[0], -20 * p[0]], [0.0, 10.0]])

    out = levenberg_marquardt(
        res,
        jac,
        np.array([30.0, -5.0]),
        lower=np.full(2, -100.0),
        upper=np.full(2, 100.0),
        ndof=1,
        max_nfev=3,
    )
    assert out.status == 0 and not out.success
    assert "budget of 3" in out.message


def test_fit_refuses_an_empty_pair_with_its_reason(telescope: AuxTel) -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 10.0, (2, 101, 101))
    pair = DonutPair.from_arrays(noise[0], noise[1], variance_intra=100.0, variance_extra=100.0)
    with pytest.raises(EstimationError) as info:
        fit_pair(pair, telescope=telescope, options=ForwardOptions(noll=NOLL))
    # No donut: the optimiser drives the fluxes to zero or cannot converge; either way a reason is given
    # and the (failed) result is attached for diagnosis.
    assert "forward fit failed" in str(info.value)
    assert info.value.result is not None
    assert not info.value.result.success


def test_fit_checks_the_start_vector(telescope: AuxTel) -> None:
    pair = DonutPair.from_arrays(
        np.zeros((101, 101)), np.zeros((101, 101)), variance_intra=1, variance_extra=1
    )
    with pytest.raises(InputError, match="start_um has shape"):
        fit_pair(pair, telescope=telescope, options=ForwardOptions(noll=NOLL), start_um=np.zeros(3))
