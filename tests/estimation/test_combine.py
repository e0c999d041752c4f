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
    # The weights are those of the mean: the dropped pair has none, each term's weights sum to 1.
    assert np.all(comb.weights[5] == 0) and np.allclose(comb.weights.sum(axis=0), 1.0)
    np.testing.assert_allclose(np.sum(comb.weights * values, axis=0), comb.mean_um, rtol=1e-12)


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


def test_one_pair_without_an_error_has_none() -> None:
    # The TIE alone with one donut was reported "Z4=-211.5±0.0": a perfect measurement, not an unknown one.
    comb = sigma_clip_combine(np.array([[0.1, -0.2]]))
    assert np.all(np.isnan(comb.err_um))
    # Two such pairs: their spread is the error.
    assert np.all(sigma_clip_combine(np.array([[0.1, -0.2], [0.12, -0.21]])).err_um > 0)


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


def test_good_pairs_are_kept_whatever_their_number_of_terms() -> None:
    # 8 pairs whose 19 terms scatter as their formal errors say: at "3 sigma" about 0.3 % of pairs may go
    # (the largest-term rule dropped ~5-19 %: one of 19 terms beyond 3 sigma is common).
    rng = np.random.default_rng(5)
    errors = np.full((8, 19), 0.012)
    dropped = 0
    for _ in range(300):
        values = rng.normal(0.0, 0.012, (8, 19))
        dropped += int((~sigma_clip_combine(values, errors, floor_um=0.001).kept).sum())
    assert dropped / (300 * 8) < 0.01


def test_bright_pairs_weigh_more_than_faint_ones() -> None:
    rng = np.random.default_rng(6)
    errors = np.array([[0.0015] * 8] + [[0.012] * 8] * 3)
    combined, plain = [], []
    for _ in range(300):
        values = rng.normal(0.0, errors)
        combined.append(sigma_clip_combine(values, errors, floor_um=0.001).mean_um)
        plain.append(values.mean(axis=0))
    rms_combined, rms_plain = np.sqrt(np.mean(np.square(combined))), np.sqrt(np.mean(np.square(plain)))
    # Inverse-variance weights: about the bright pair's 1.5 nm; plain mean: sqrt(1.5^2 + 3 * 12^2) / 4 = 5.3.
    assert rms_combined < 1.7e-3 and rms_plain > 4.5e-3
    # The reported error follows: about the bright pair's (the weighted scatter of four pairs may add some).
    comb = sigma_clip_combine(rng.normal(0.0, errors), errors, floor_um=0.001)
    assert np.median(comb.err_um) < 2.5e-3 and np.all(comb.err_um >= 1.4e-3)
