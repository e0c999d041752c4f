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

import dataclasses

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import binary_dilation, binary_erosion, uniform_filter

from ..zernikes import ZernikeBases
from .tie_mapping import PupilGrid

__all__ = ["FFT_INNER_ITERATIONS", "SUM_CLIP_SEQUENCE", "FftPoissonSolver", "exp_solve"]

FFT_INNER_ITERATIONS = 6
"""Boundary-condition iterations of the FFT solver (cwfs)."""
SUM_CLIP_SEQUENCE = (0.33, 0.33, 0.33, 0.39, 0.39, 0.45, 0.45, 0.51)
"""Per outer iteration (then the last value): pixels of the FFT signal whose intensity sum is below this
fraction of the mid-range are given a large denominator, which damps the noisy edges (cwfs's sum clip)."""


def exp_solve(
    i1: NDArray[np.float64], i2: NDArray[np.float64], bases: ZernikeBases, k_scale: float
) -> NDArray[np.float64]:
    """Series-expansion solution, coefficients in metres in the order of ``bases.noll``.

    Parameters
    ----------
    i1, i2 : `numpy.ndarray`, shape ``(npoint,)``
        Compensated, unit-sum intra and extra pupil images on the domain points.
    bases : `ZernikeBases`
        Zernike values and derivatives at the domain points.
    k_scale : `float`
        Difference of the two donuts' ray displacements per unit wavefront slope, pupil units (1/m).
    """
    i0 = 0.5 * (i1 + i2)
    rhs = bases.value @ (i1 - i2)
    normal = (bases.dx * i0) @ bases.dx.T + (bases.dy * i0) @ bases.dy.T
    coefs, *_ = np.linalg.lstsq(-k_scale * normal, rhs, rcond=None)
    return coefs


def _frequencies(n_pad: int, spacing: float) -> NDArray[np.float64]:
    """-4 pi^2 |f|^2 on the half-spectrum grid of ``rfft2``, with the zero frequency set to infinity."""
    fy = np.fft.fftfreq(n_pad, d=spacing)
    fx = np.fft.rfftfreq(n_pad, d=spacing)
    k2 = -4.0 * np.pi**2 * (fy[:, None] ** 2 + fx[None, :] ** 2)
    k2[0, 0] = np.inf  # the mean of the solution is free: set it to zero
    return k2


@dataclasses.dataclass(frozen=True, eq=False)
class FftPoissonSolver:
    """FFT Poisson solver for one pupil mask, with everything that does not change between iterations.

    Build it with `FftPoissonSolver.build`; call it like `exp_solve`.

    Notes
    -----
    The signal is ``2 (i1 - i2) / (k_scale (i1 + i2))`` where the sum is above the clip level; the signal on
    the pupil's own edge pixels carries the normal derivative of the wavefront (the "edge signal"). The pupil
    proper (``obscuration <= r <= 1`` and the vignetting) is where the signal is imposed and where the
    solution is fitted with Zernikes; outside it the Laplacian of the Neumann extension is used.
    """

    grid: PupilGrid
    mask: NDArray[np.bool_]
    core: NDArray[np.bool_]
    pupil: NDArray[np.bool_]
    ring_in: NDArray[np.bool_]
    fill: NDArray[np.bool_]
    count: NDArray[np.float64]
    k2: NDArray[np.float64]
    fit_matrix: NDArray[np.float64]
    lo: int
    box: int

    @classmethod
    def build(cls, mask: NDArray[np.bool_], grid: PupilGrid, *, boundary_px: int = 1) -> FftPoissonSolver:
        """Prepare the solver for the lit domain points ``mask`` (boundary rings included) of ``grid``.

        Parameters
        ----------
        mask : `numpy.ndarray` of bool, shape ``(npoint,)``
            Domain points lit on both donuts.
        grid : `PupilGrid`
            The pupil grid.
        boundary_px : `int`, optional
            Width of the boundary rings, pixels.
        """
        n = grid.n_side
        n_pad = int(2 ** np.ceil(np.log2(n)))
        lo = (n_pad - n) // 2
        r = np.hypot(grid.bases.x, grid.bases.y)
        core = mask & (r <= 1.0) & (r >= grid.obscuration)
        pupil = np.zeros((n_pad, n_pad), dtype=bool)
        pupil[lo : lo + n, lo : lo + n] = grid.domain_image(core)
        structure = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
        ring_out = binary_dilation(pupil, structure, iterations=boundary_px) & ~pupil
        ring_in = pupil & ~binary_erosion(pupil, structure, iterations=boundary_px)
        box = 2 * boundary_px + 1
        count = uniform_filter(ring_in.astype(float), box, mode="constant")
        fill = ring_out & (count > 0.5 / box**2)
        # Least-squares Zernike fit over the pupil, with a piston column (on a vignetted pupil the other
        # Zernikes are not free of piston); the piston row is dropped.
        design = np.vstack([np.ones(int(core.sum())), grid.bases.value[:, core]]).T
        fit_matrix = np.linalg.pinv(design)[1:]
        k2 = _frequencies(n_pad, grid.spacing)
        return cls(grid, mask, core, pupil, ring_in, fill, count, k2, fit_matrix, lo, box)

    def __call__(
        self, i1: NDArray[np.float64], i2: NDArray[np.float64], k_scale: float, *, iteration: int
    ) -> NDArray[np.float64]:
        """Solve for the residual wavefront, coefficients in metres in the order of ``grid.bases.noll``.

        Parameters
        ----------
        i1, i2 : `numpy.ndarray`, shape ``(grid.npoint,)``
            Compensated pupil images.
        k_scale : `float`
            TIE scale (module docstring), 1/m.
        iteration : `int`
            Outer iteration (0-based), which selects the sum clip level.
        """
        n, lo, pupil = self.grid.n_side, self.lo, self.pupil
        total = i1 + i2
        level = SUM_CLIP_SEQUENCE[min(iteration, len(SUM_CLIP_SEQUENCE) - 1)]
        lit = total[self.mask & (total > 0)]
        mid = 0.5 * (lit.max() + lit.min())
        den = np.where(total < level * mid, 1.5 * mid, total)
        signal = np.zeros(pupil.shape)
        signal[lo : lo + n, lo : lo + n][self.grid.domain] = np.where(
            self.mask, 2.0 * (i1 - i2) / (den * k_scale), 0.0
        )
        s = signal
        wave = np.zeros_like(s)
        spacing2 = self.grid.spacing**2
        for _ in range(FFT_INNER_ITERATIONS):
            wave = np.fft.irfft2(np.fft.rfft2(s) / self.k2, s=s.shape)
            wave -= wave[pupil].mean()
            wave[~pupil] = 0.0
            # Neumann condition: each outside ring pixel takes the mean of the nearby inside ring pixels.
            extended = wave.copy()
            near = uniform_filter(np.where(self.ring_in, wave, 0.0), self.box, mode="constant")
            extended[self.fill] = near[self.fill] / self.count[self.fill]
            lap = np.zeros_like(extended)
            lap[1:-1, :] += extended[:-2, :] - 2 * extended[1:-1, :] + extended[2:, :]
            lap[:, 1:-1] += extended[:, :-2] - 2 * extended[:, 1:-1] + extended[:, 2:]
            s = lap / spacing2
            s[pupil] = signal[pupil]
        values = wave[lo : lo + n, lo : lo + n][self.grid.domain][self.core]
        return self.fit_matrix @ values
