"""Per-pair estimation: time and accuracy of the TIE, danish as published (from zero), and our estimators.

Run: ``.venv/bin/python benchmarks/bench_estimation.py [--cases 8] [--flux 2e6]``. Each case is a
batoid-traced AuxTel donut pair (`sim.optics.render_stamp_pair`: random M2 decenter up to 0.3 mm and focus
up to 0.1 mm, a random field position within 0.05 deg, 1" seeing, 200 e- of sky, 255 px stamps centred on the
light), the FACTS.md section 5 set-up. Every estimator sees the same stamps, with one thread
(``OPENBLAS_NUM_THREADS=1``), after one untimed warm-up (the design references and kernels are built once per
process; the cold-start cost is reported separately). Errors are the RMS over Z4-Z11 of the in-focus
deviation against the ``zernikeTA`` truth, nm. Wall time (``perf_counter``) and CPU time (``process_time``)
are both given: the machine is shared, and CPU time is the steadier figure.

Estimators:

- ``tie``: `estimation.tie.solve_tie` (exp solver, onAxis model), the fast peer;
- ``danish_from_zero``: danish as published: `danish.DonutFactory` (inverse mapping) with the AuxTel
  geometry, `danish.DZMultiDonutModel` joint pair fit, constant background, finite-difference Jacobian,
  `scipy.optimize.least_squares` with ``x_scale="jac"`` and tolerances 1e-6, started from zero;
- ``danish`` (our default) and ``tie+danish``: `estimation.estimate_pair`.

Writes ``benchmarks/results/estimation.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time

import danish
import numpy as np
from scipy.optimize import least_squares

from _common import stats, table, write_result
from lsst.ts.auxtelwep.estimation import EstimationConfig, estimate_pair
from lsst.ts.auxtelwep.estimation.forward_model import auxtel_mask_params, design_references
from lsst.ts.auxtelwep.instrument import (
    APERTURE_DIAMETER_M,
    OBSCURATION,
    PIXEL_SIZE_M,
    AuxTel,
    HexapodState,
    Role,
)
from lsst.ts.auxtelwep.sim.optics import render_stamp_pair
from lsst.ts.auxtelwep.stamps import DonutPair

SKY_E = 200.0
NOLL = tuple(range(4, 23))


def make_cases(n: int, flux: float, seed: int) -> list[tuple[DonutPair, np.ndarray, dict]]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        r, phi = 0.3 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        hexapod = HexapodState(x=r * np.cos(phi), y=r * np.sin(phi), z=rng.uniform(-0.1, 0.1))
        field = tuple(float(v) for v in rng.uniform(-0.05, 0.05, 2))
        sim = render_stamp_pair(
            AuxTel().with_hexapod(hexapod), *field, seeing_arcsec=1.0, flux=flux, sky=SKY_E, seed=1000 + i
        )
        pair = sim.donut_pair(index=i)
        info = {
            "hexapod": [round(v, 4) for v in hexapod.as_array()],
            "field_deg": [round(v, 4) for v in field],
        }
        cases.append((pair, sim.truth.zernikes_ta_um, info))
    return cases


def danish_from_zero(pair: DonutPair, telescope: AuxTel) -> np.ndarray:
    """The published danish recipe on one pair (FACTS.md section 5), Z4-Z22 from zero."""
    r_outer = APERTURE_DIAMETER_M / 2
    factory = danish.DonutFactory(
        R_outer=r_outer,
        R_inner=r_outer * OBSCURATION,
        mask_params=auxtel_mask_params(telescope.wavelength_m),
        focal_length=telescope.focal_length_m,
        pixel_scale=PIXEL_SIZE_M,
    )
    refs = [
        design_references(telescope, role, *pair.stamp(role).field_deg) * 1e-6
        for role in (Role.INTRA, Role.EXTRA)
    ]
    thx = [np.deg2rad(pair.stamp(r).field_deg[0]) for r in (Role.INTRA, Role.EXTRA)]
    thy = [np.deg2rad(pair.stamp(r).field_deg[1]) for r in (Role.INTRA, Role.EXTRA)]
    model = danish.DZMultiDonutModel(
        factory,
        dz_terms=[(1, j) for j in NOLL],
        z_refs=np.array(refs),
        field_radius=np.deg2rad(0.1),
        thxs=thx,
        thys=thy,
        npix=pair.size,
        bkg_order=0,
    )
    data = np.array([pair.intra.image, pair.extra.image], dtype=float)
    variances = [pair.intra.variance.astype(float), pair.extra.variance.astype(float)]
    p0 = model.pack_params(
        fluxes=list(data.sum(axis=(1, 2))),
        dxs=[0.0, 0.0],
        dys=[0.0, 0.0],
        fwhm=1.0,
        wavefront_params=[0.0] * len(NOLL),
        bkgs=[(0.0,), (0.0,)],
    )
    result = least_squares(
        model.chi,
        p0,
        jac=model.jac,
        x_scale="jac",
        ftol=1e-6,
        xtol=1e-6,
        gtol=1e-6,
        max_nfev=40,
        args=(data, variances),
    )
    return np.asarray(model.unpack_params(result.x)["wavefront_params"]) * 1e6


def run(estimator: str, pair: DonutPair, telescope: AuxTel) -> tuple[np.ndarray | None, str]:
    if estimator == "danish_from_zero":
        return danish_from_zero(pair, telescope), ""
    algorithm = {"tie": "tie", "danish": "danish", "tie+danish": "tie+danish"}[estimator]
    est = estimate_pair(pair, config=EstimationConfig(algorithm=algorithm), telescope=telescope)
    return est.zernikes_um, est.reason


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--flux", type=float, default=2e6, help="electrons per donut")
    parser.add_argument("--seed", type=int, default=20240624)
    parser.add_argument("--skip-peer", action="store_true", help="skip danish from zero (slow)")
    args = parser.parse_args()
    telescope = AuxTel()
    estimators = ["tie", "danish_from_zero", "danish", "tie+danish"]
    if args.skip_peer:
        estimators.remove("danish_from_zero")
    cases = make_cases(args.cases, args.flux, args.seed)
    cold = {}
    for name in estimators:  # warm-up on the first case: design references, meshes, FFT plans
        t0 = time.perf_counter()
        run(name, cases[0][0], telescope)
        cold[name] = round(time.perf_counter() - t0, 3)
    results = {}
    for name in estimators:
        wall, cpu, errors, failures = [], [], [], []
        for pair, truth, _ in cases:
            t0, c0 = time.perf_counter(), time.process_time()
            z, reason = run(name, pair, telescope)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            if z is None or reason:
                failures.append(reason or "no estimate")
            if z is not None:
                errors.append(float(np.sqrt(np.mean(((z - truth)[:8] * 1e3) ** 2))))
        results[name] = {
            "wall_s": stats(wall),
            "cpu_s": stats(cpu),
            "rms_error_z4_z11_nm": stats(errors),
            "failures": failures,
            "cold_start_s": cold[name],
        }
    rows = [
        [
            n,
            r["cpu_s"]["median"],
            f"{r['cpu_s']['min']:.2f}-{r['cpu_s']['max']:.2f}",
            r["wall_s"]["median"],
            r["rms_error_z4_z11_nm"]["median"],
            r["rms_error_z4_z11_nm"]["max"],
            len(r["failures"]),
        ]
        for n, r in results.items()
    ]
    text = table(
        rows, ["estimator", "cpu s (median)", "cpu range", "wall s", "err nm (median)", "err max", "fail"]
    )
    print(text)
    path = write_result(
        "estimation",
        {
            "setup": {
                "cases": args.cases,
                "flux_e": args.flux,
                "sky_e": SKY_E,
                "seeing_arcsec": 1.0,
                "stamp_px": 255,
                "noll": list(NOLL),
                "seed": args.seed,
                "error": "RMS over Z4-Z11 of the in-focus deviation vs the zernikeTA truth, nm",
                "threads": 1,
            },
            "cases": [info for _, _, info in cases],
            "estimators": results,
            "table": text,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
