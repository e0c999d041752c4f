"""A chi-square as a Gaussian deviate (significance.py)."""

import numpy as np
import pytest

from lsst.ts.auxtelwep.significance import gaussian_sigmas


def test_one_degree_of_freedom_is_the_square_root() -> None:
    chi2 = np.array([0.25, 1.0, 4.0, 9.0, 100.0])
    np.testing.assert_allclose(gaussian_sigmas(chi2, 1), np.sqrt(chi2), rtol=1e-9)


def test_same_tail_probability_for_several_degrees_of_freedom() -> None:
    # P(chi2_3 > 7.815) = 0.05, the two-sided 5 % point of a Gaussian is 1.960.
    assert gaussian_sigmas(7.8147, 3) == pytest.approx(1.960, abs=1e-3)
    # P(chi2_19 > 30.144) = 0.05.
    assert gaussian_sigmas(30.1435, 19) == pytest.approx(1.960, abs=1e-3)


def test_far_tail_stays_finite_and_ordered() -> None:
    sigmas = gaussian_sigmas(np.array([1e3, 1e4, 1e5]), 5)
    assert np.all(np.isfinite(sigmas))
    assert np.all(np.diff(sigmas) > 0)
