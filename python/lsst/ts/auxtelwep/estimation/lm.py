"""A small Levenberg-Marquardt solver for problems with many residuals and few parameters.

Why not `scipy.optimize.least_squares`: its trust-region step takes an SVD of the full Jacobian
(about 130 000 x 28 for a pair of 255 px stamps), which costs more than our whole model evaluation with its
analytic Jacobian. Here the Jacobian is reduced at once to the normal matrix ``J^T J`` and gradient ``J^T r``
(28 x 28), and the damped Gauss-Newton step is solved in that small space.

Stopping is in statistical units rather than relative cost: a relative tolerance of 1e-3 on a chi-square of
130 000 would stop while parameters can still move by many sigma. The solver stops when the last accepted step
is smaller than ``step_tol`` standard deviations (``sqrt(dx^T J^T J dx / chi2_reduced)``) or lowered the
chi-square by less than ``chi2_tol`` (again in reduced units). After an accepted step that is not yet that
small, the step the previous Jacobian gives from the new point (a chord step, nearly free) is tried first:
if it is below ``step_tol`` and lowers the chi-square, the solver stops there without a new Jacobian. A fit
that starts close (the TIE seed, a coarse stage before) thus takes one Jacobian per stage instead of two.
An absolute tolerance per parameter (``x_tol``) can stop it too, for data so good that a tenth of a sigma
is finer than anything the answer needs.

Status codes follow `scipy.optimize.least_squares`: 2 chi-square tolerance, 3 step tolerance, 4 both,
0 evaluation budget exhausted, -1 the damped system could not be solved or the residuals are not finite.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

__all__ = ["LMResult", "levenberg_marquardt"]

ResidualFn = Callable[[NDArray], NDArray]
JacobianFn = Callable[[NDArray], tuple[NDArray, NDArray]]


@dataclasses.dataclass(frozen=True)
class LMResult:
    """Outcome of `levenberg_marquardt`.

    Attributes
    ----------
    x : `numpy.ndarray`, shape (n,)
        Best parameters found.
    chi2 : `float`
        Sum of squared residuals at ``x``.
    normal_matrix : `numpy.ndarray`, shape (n, n)
        ``J^T J`` at the last Jacobian evaluation (at ``x`` when the fit converged).
    nfev, njev : `int`
        Residual and Jacobian evaluations.
    status : `int`
        See module docstring.
    message : `str`
        Why the solver stopped.
    """

    x: NDArray[np.float64]
    chi2: float
    normal_matrix: NDArray[np.float64]
    nfev: int
    njev: int
    status: int
    message: str

    @property
    def success(self) -> bool:
        """True when a tolerance was met."""
        return self.status > 0


def levenberg_marquardt(
    residuals: ResidualFn,
    jacobian: JacobianFn,
    x0: NDArray,
    *,
    lower: NDArray,
    upper: NDArray,
    ndof: int,
    step_tol: float = 0.1,
    chi2_tol: float = 0.1,
    max_nfev: int = 40,
    damping: float = 1e-4,
    x_tol: NDArray | None = None,
) -> LMResult:
    """Minimise ``sum(residuals(x)**2)`` within box bounds.

    Parameters
    ----------
    residuals : callable
        ``x -> r`` (any shape; flattened).
    jacobian : callable
        ``x -> (r, Jt)`` with ``Jt`` the *transposed* Jacobian, shape (n, r.size) (each parameter's column
        contiguous; float32 is fine, the products are formed in it).
    x0 : `numpy.ndarray`, shape (n,)
        Start.
    lower, upper : `numpy.ndarray`, shape (n,)
        Bounds; steps are clipped to them.
    ndof : `int`
        Degrees of freedom, to express the tolerances in reduced chi-square.
    step_tol, chi2_tol : `float`
        Stopping tolerances (module docstring).
    max_nfev : `int`
        Largest number of residual evaluations (Jacobian evaluations count as one each).
    x_tol : `numpy.ndarray`, shape (n,), optional
        Absolute step tolerance per parameter (``inf``: any): a step within it for every parameter, and
        within ten ``step_tol``, also stops the solver.
    damping : `float`
        Initial Marquardt damping relative to the diagonal of ``J^T J`` (small: a good start is expected).
    """
    x = np.clip(np.asarray(x0, dtype=float), lower, upper)
    nfev = njev = 0
    lam, nu = damping, 2.0
    r, jac = jacobian(x)
    nfev += 1
    njev += 1
    chi2 = float(np.dot(r.ravel().astype(np.float64), r.ravel()))
    a, g = _normal(r, jac)
    diag_scale = np.maximum(np.diag(a), 1e-30)
    if not np.isfinite(chi2):
        return LMResult(x, chi2, a, nfev, njev, -1, "the residuals at the start are not finite")
    while True:
        if nfev >= max_nfev:
            return LMResult(x, chi2, a, nfev, njev, 0, f"the budget of {max_nfev} evaluations is exhausted")
        try:
            step = np.linalg.solve(a + lam * np.diag(diag_scale), -g)
        except np.linalg.LinAlgError:
            return LMResult(x, chi2, a, nfev, njev, -1, "the damped normal equations are singular")
        x_new = np.clip(x + step, lower, upper)
        step = x_new - x
        r_new = residuals(x_new)
        nfev += 1
        chi2_new = float(np.dot(r_new.ravel().astype(np.float64), r_new.ravel()))
        predicted = -(2.0 * float(g @ step) + float(step @ a @ step))
        actual = chi2 - chi2_new
        if np.isfinite(chi2_new) and actual > 0:
            rho = actual / predicted if predicted > 0 else 0.0
            lam *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            nu = 2.0
            scale = max(chi2_new / max(ndof, 1), 1.0)
            step_sigma = _in_sigmas(step, a, scale)
            x, chi2 = x_new, chi2_new
            small_step = _small(step, step_sigma, step_tol, x_tol)
            small_gain = actual / scale < chi2_tol
            if small_step or small_gain:
                status = 4 if small_step and small_gain else (3 if small_step else 2)
                message = (
                    f"converged: last step {step_sigma:.3g} sigma (tol {step_tol}), "
                    f"chi-square gain {actual / scale:.3g} (tol {chi2_tol}) in reduced units"
                )
                # J^T J from the previous point serves for the covariance: the step was tiny.
                return LMResult(x, chi2, a, nfev, njev, status, message)
            # Before a new Jacobian (the costliest evaluation), try the step the last one gives from here
            # (a chord step): when it is below the tolerance and lowers the chi-square, the fit has
            # converged as surely as with a fresh Jacobian.
            chord = _chord_step(jac, r_new, a + lam * np.diag(diag_scale), x, lower, upper)
            chord_sigma = np.inf if chord is None else _in_sigmas(chord, a, scale)
            if chord is not None and _small(chord, chord_sigma, step_tol, x_tol):
                r_chord = residuals(x + chord)
                nfev += 1
                chi2_chord = float(np.dot(r_chord.ravel().astype(np.float64), r_chord.ravel()))
                if np.isfinite(chi2_chord) and chi2_chord <= chi2:
                    message = (
                        f"converged: last step {chord_sigma:.3g} sigma (tol {step_tol}, with the previous "
                        f"Jacobian), chi-square gain {(chi2 - chi2_chord) / scale:.3g} in reduced units"
                    )
                    return LMResult(x + chord, chi2_chord, a, nfev, njev, 3, message)
            r, jac = jacobian(x)
            njev += 1
            a, g = _normal(r, jac)
            diag_scale = np.maximum(diag_scale, np.diag(a))
        else:
            scale = max(chi2 / max(ndof, 1), 1.0)
            if 0 <= predicted / scale < chi2_tol:
                # At the minimum to within what the (approximate) Jacobian can resolve.
                message = (
                    f"converged: the best step would gain {predicted / scale:.3g} in reduced chi-square "
                    f"(tol {chi2_tol}) and none is accepted"
                )
                return LMResult(x, chi2, a, nfev, njev, 2, message)
            lam *= nu
            nu *= 2.0
            if lam > 1e12:
                return LMResult(
                    x, chi2, a, nfev, njev, -1, "no step lowers the chi-square (damping exhausted)"
                )


def _in_sigmas(step: NDArray, normal: NDArray, scale: float) -> float:
    """Size of a step in standard deviations (``normal`` = J^T J, ``scale`` = reduced chi-square >= 1)."""
    return float(np.sqrt(max(step @ normal @ step, 0.0) / scale))


def _small(step: NDArray, step_sigma: float, step_tol: float, x_tol: NDArray | None) -> bool:
    """Whether a step is small enough to stop (`levenberg_marquardt`'s tolerances)."""
    if step_sigma < step_tol:
        return True
    return x_tol is not None and step_sigma < 10.0 * step_tol and bool(np.all(np.abs(step) <= x_tol))


def _chord_step(
    jac_t: NDArray, r: NDArray, damped: NDArray, x: NDArray, lower: NDArray, upper: NDArray
) -> NDArray[np.float64] | None:
    """The damped Gauss-Newton step at residuals ``r`` with an earlier Jacobian (None if singular)."""
    r = r.reshape(-1)
    g = (jac_t.reshape(-1, r.size) @ r.astype(jac_t.dtype)).astype(np.float64)
    try:
        step = np.linalg.solve(damped, -g)
    except np.linalg.LinAlgError:
        return None
    return np.clip(x + step, lower, upper) - x


def _normal(r: NDArray, jac_t: NDArray) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r = r.reshape(-1)
    jac_t = jac_t.reshape(-1, r.size)
    a = (jac_t @ jac_t.T).astype(np.float64)
    g = (jac_t @ r.astype(jac_t.dtype)).astype(np.float64)
    return a, g
