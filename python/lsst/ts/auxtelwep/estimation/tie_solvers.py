"""The two TIE solvers: series expansion ("exp") and FFT Poisson solver ("fft").

Both take the compensated, unit-sum pupil images ``i1`` (intra) and ``i2`` (extra) on the domain points of a
`PupilGrid` and return the residual wavefront as Zernike coefficients (metres) over the grid's bases.

The equation
------------
With ``k_scale`` the difference of the ray displacements of the two donuts per unit wavefront slope (in pupil
units, 1/m), the linearised transport of intensity between the compensated images reads

    i1 - i2 = k_scale * div(I grad w),        I = (i1 + i2) / 2,

with derivatives in normalised pupil coordinates and ``w`` in metres.

- "exp" (Gureyev & Nugent 1996): multiply by each Zernike ``Z_j`` and integrate by parts,
  ``sum Z_j (i1 - i2) = -k_scale * sum_k w_k sum I grad Z_j . grad Z_k``, a small linear system.
- "fft" (Roddier & Roddier 1993, as in cwfs): ``lap w = 2 (i1 - i2) / ((i1 + i2) k_scale)`` inside the pupil
  (where the edge pixels also carry the jump of the normal derivative), solved with FFTs on a grid padded to a
  power of two; the Neumann condition ``dw/dn = 0`` just outside is imposed iteratively by extending the
  estimate across the boundary and replacing the signal outside the pupil by the Laplacian of that extension.
  The wavefront is then fitted with the Zernike bases over the pupil.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import binary_dilation, binary_erosion, uniform_filter

from ..zernikes import ZernikeBases
from .tie_mapping import PupilGrid

__all__ = ["FFT_INNER_ITERATIONS", "SUM_CLIP_SEQUENCE", "exp_solve", "fft_solve"]

FFT_INNER_ITERATIONS = 6
"""Boundary-condition iterations of the FFT solver (cwfs)."""
SUM_CLIP_SEQUENCE = (0.33, 0.33, 0.33, 0.39, 0.39, 0.45, 0.45, 0.51)
"""Per outer iteration (then the last value): pixels of the FFT signal whose intensity sum is below this
fraction of the mid-range are given a large denominator, which damps the noisy edges (cwfs's sum clip)."""


def exp_solve(
    i1: NDArray[np.float64], i2: NDArray[np.float64], bases: ZernikeBases, k_scale: float
) -> NDArray[np.float64]:
    """Series-expansion solution, coefficients in metres in the order of ``bases.noll``."""
    i0 = 0.5 * (i1 + i2)
    rhs = bases.value @ (i1 - i2)
    normal = (bases.dx * i0) @ bases.dx.T + (bases.dy * i0) @ bases.dy.T
    coefs, *_ = np.linalg.lstsq(-k_scale * normal, rhs, rcond=None)
    return coefs


def _frequencies(n_pad: int, spacing: float) -> NDArray[np.float64]:
    f = np.fft.fftfreq(n_pad, d=spacing)
    k2 = -4.0 * np.pi**2 * (f[:, None] ** 2 + f[None, :] ** 2)
    k2[0, 0] = np.inf  # the mean of the solution is free: set it to zero
    return k2


def fft_solve(
    i1: NDArray[np.float64],
    i2: NDArray[np.float64],
    mask: NDArray[np.bool_],
    grid: PupilGrid,
    k_scale: float,
    *,
    iteration: int,
    boundary_px: int = 1,
) -> NDArray[np.float64]:
    """FFT Poisson solution, coefficients in metres in the order of ``grid.bases.noll``.

    Parameters
    ----------
    i1, i2 : `numpy.ndarray`, shape ``(grid.npoint,)``
        Compensated pupil images (unit sums).
    mask : `numpy.ndarray` of bool, shape ``(grid.npoint,)``
        Lit domain points, boundary rings included: where the signal is measured.
    grid : `PupilGrid`
        The pupil grid.
    k_scale : `float`
        TIE scale (see module docstring), 1/m.
    iteration : `int`
        Outer iteration number (0-based), which selects the sum clip level.
    boundary_px : `int`
        Width of the Neumann boundary band, grid pixels.

    Notes
    -----
    The signal is ``2 (i1 - i2) / (k_scale (i1 + i2))`` where the sum is above the clip level; the signal
    on the pupil's own edge pixels carries the normal derivative of the wavefront (the "edge signal"). The
    pupil proper (``obscuration <= r <= 1`` and the vignetting) is where the signal is imposed and where the
    solution is fitted with Zernikes; outside it the Laplacian of the Neumann extension is used.
    """
    n = grid.n_side
    n_pad = int(2 ** np.ceil(np.log2(n)))
    lo = (n_pad - n) // 2
    r = np.hypot(grid.bases.x, grid.bases.y)
    core = mask & (r <= 1.0) & (r >= grid.obscuration)
    pupil = np.zeros((n_pad, n_pad), dtype=bool)
    pupil[lo : lo + n, lo : lo + n] = grid.domain_image(core)

    total = i1 + i2
    level = SUM_CLIP_SEQUENCE[min(iteration, len(SUM_CLIP_SEQUENCE) - 1)]
    lit = total[mask & (total > 0)]
    mid = 0.5 * (lit.max() + lit.min())
    den = np.where(total < level * mid, 1.5 * mid, total)
    signal = np.zeros((n_pad, n_pad))
    signal[lo : lo + n, lo : lo + n][grid.domain] = np.where(mask, 2.0 * (i1 - i2) / (den * k_scale), 0.0)

    structure = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    ring_out = binary_dilation(pupil, structure, iterations=boundary_px) & ~pupil
    ring_in = pupil & ~binary_erosion(pupil, structure, iterations=boundary_px)
    box = 2 * boundary_px + 1
    count = uniform_filter(ring_in.astype(float), box, mode="constant")
    fill = ring_out & (count > 0.5 / box**2)
    k2 = _frequencies(n_pad, grid.spacing)
    s = signal
    wave = np.zeros_like(s)
    for _ in range(FFT_INNER_ITERATIONS):
        wave = np.real(np.fft.ifft2(np.fft.fft2(s) / k2))
        wave -= wave[pupil].mean()
        wave[~pupil] = 0.0
        # Neumann condition: each outside ring pixel takes the mean of the nearby inside ring pixels.
        extended = wave.copy()
        extended[fill] = (
            uniform_filter(np.where(ring_in, wave, 0.0), box, mode="constant")[fill] / count[fill]
        )
        lap = np.zeros_like(extended)
        lap[1:-1, :] += extended[:-2, :] - 2 * extended[1:-1, :] + extended[2:, :]
        lap[:, 1:-1] += extended[:, :-2] - 2 * extended[:, 1:-1] + extended[:, 2:]
        s = lap / grid.spacing**2
        s[pupil] = signal[pupil]
    values = wave[lo : lo + n, lo : lo + n][grid.domain][core]
    # Fit with a piston column too: on a vignetted pupil the other Zernikes are not free of piston.
    design = np.vstack([np.ones(values.size), grid.bases.value[:, core]]).T
    coefs, *_ = np.linalg.lstsq(design, values, rcond=None)
    return coefs[1:]
