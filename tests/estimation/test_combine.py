"""Sigma-clipped combination of per-pair wavefronts."""

import numpy as np
import pytest

from lsst.ts.auxtelwep.errors import InputError
from lsst.ts.auxtelwep.estimation.combine import sigma_clip_combine


def test_outlier_pair_is_dropped_and_mean_recovered() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(0, 0.1, 19)
    values = truth + rng.normal(0, 0.002, (8, 19))
    values[5, 2] += 0.08  # one bad pair (80 nm off in one term)
    comb = sigma_clip_combine(values, np.full(values.shape, 0.002))
    assert comb.kept.tolist() == [True] * 5 + [False] + [True] * 2
    assert comb.distance[5] > 10
    # Mean of 7 pairs with 2 nm scatter: within 4 sigma = 4 * 2 / sqrt(7) nm.
    np.testing.assert_allclose(comb.mean_um, truth, atol=4 * 0.002 / np.sqrt(7))
    assert np.all(comb.err_um > 0)
    assert np.all(comb.scatter_um < 0.004)


def test_field_differences_below_the_floor_are_not_clipped() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(0, 1e-4, (5, 8))
    values[0] += 0.004  # 4 nm away, tiny formal errors: real field dependence, not an outlier
    comb = sigma_clip_combine(values, np.full(values.shape, 1e-4), floor_um=0.005)
    assert comb.kept.all()


def test_two_pairs_are_never_clipped() -> None:
    comb = sigma_clip_combine(np.array([[0.0, 0.0], [1.0, 1.0]]))
    assert comb.kept.all()
    np.testing.assert_allclose(comb.mean_um, [0.5, 0.5])
    # Error of the mean of two: their scatter (0.707) over sqrt(2).
    np.testing.assert_allclose(comb.err_um, [0.5, 0.5])


def test_single_pair_uses_its_formal_error() -> None:
    comb = sigma_clip_combine(np.array([[0.1, -0.2]]), np.array([[0.01, 0.02]]))
    np.testing.assert_allclose(comb.err_um, [0.01, 0.02])
    np.testing.assert_allclose(comb.scatter_um, [0.0, 0.0])


@pytest.mark.parametrize(
    "values, errors, match",
    [
        (np.zeros((0, 3)), None, "n_pairs >= 1"),
        (np.array([[np.nan, 0.0]]), None, "finite"),
        (np.zeros((2, 3)), np.zeros((2, 2)), "errors_um has shape"),
    ],
)
def test_bad_input_is_refused(values, errors, match) -> None:
    with pytest.raises(InputError, match=match):
        sigma_clip_combine(values, errors)
