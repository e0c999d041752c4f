"""A chi-square as the Gaussian deviate of the same tail probability.

Both the combination of donut pairs (how far one pair lies from the others over all its Zernike terms) and
the closed loop (how far a correction lies from zero over its axes) judge a chi-square of several degrees of
freedom against a threshold quoted in sigma. Converting through the tail probability makes "3 sigma" mean
the same false-alarm rate whatever the number of terms or axes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

__all__ = ["gaussian_sigmas"]


def gaussian_sigmas(chi2: ArrayLike, dof: int) -> NDArray[np.float64]:
    """Two-sided Gaussian deviates with the tail probability of a chi-square.

    Parameters
    ----------
    chi2 : array-like
        Chi-square values (>= 0).
    dof : `int`
        Degrees of freedom (>= 1).

    Returns
    -------
    sigmas : `numpy.ndarray`
        ``s`` with ``P(|N(0, 1)| > s) = P(chi2_dof > chi2)``: one degree of freedom gives ``sqrt(chi2)``.
        Beyond double precision's tail (p < 1e-308) ``sqrt(chi2)`` stands in (finite and monotonic).
    """
    chi2 = np.asarray(chi2, dtype=float)
    tail = special.chdtrc(dof, chi2)
    with np.errstate(divide="ignore"):
        sigmas = -special.ndtri(tail / 2)
    return np.where(np.isfinite(sigmas), sigmas, np.sqrt(chi2))
