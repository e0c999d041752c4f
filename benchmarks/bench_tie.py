"""Benchmark of the TIE solver on batoid-traced AuxTel donut pairs: time per pair and error against truth.

Run: ``.venv/bin/python benchmarks/bench_tie.py [--pairs N] [--flux E]``; writes
``benchmarks/results/tie.json``.

Pairs: M2 decenters up to 0.3 mm and focus errors up to 0.1 mm (uniform, seeded), field angles up to
0.03 deg, 1" Kolmogorov seeing, 255 px stamps, ``--flux`` electrons per donut (default 2e6) on 200 e- of sky,
Poisson noise (`lsst.ts.auxtelwep.sim.optics.render_stamp_pair`). Truth: the in-focus deviation from the
design (``zernikeTA``), compared with `TieResult.deviation_um`. Each configuration is timed on every pair (one
thread, after a warm-up that builds the memoised pupil bases; each pair has its own field angle, so the
ray-traced pupil maps of the offAxis model are computed inside the timing). Reported: median, min, max and
interquartile range of the time per pair, and the median and worst RMS error over Z4-Z11 and Z4-Z22 in nm.
FACTS.md section 5 (ts_wep, same kind of pairs): TIE offAxis 3.7 nm at 0.60 s per pair, onAxis 3.7 nm at
0.42 s.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import time

import numpy as np

from _common import stats, table, write_result
from lsst.ts.auxtelwep.estimation.tie import solve_tie
from lsst.ts.auxtelwep.estimation.tie_geometry import TieGeometry
from lsst.ts.auxtelwep.instrument import AuxTel, HexapodState
from lsst.ts.auxtelwep.sim.optics import StampPair, render_stamp_pair

CONFIGS = (("exp", "offAxis"), ("exp", "onAxis"), ("fft", "onAxis"))


def _pairs(n: int, flux: float, seed: int) -> list[StampPair]:
    rng = np.random.default_rng(seed)
    pairs = []
    for k in range(n):
        x, y = rng.uniform(-0.3, 0.3, 2)
        z = rng.uniform(-0.1, 0.1)
        fx, fy = rng.uniform(-0.03, 0.03, 2)
        telescope = AuxTel().with_hexapod(HexapodState(x=float(x), y=float(y), z=float(z)))
        pairs.append(
            render_stamp_pair(telescope, fx, fy, seeing_arcsec=1.0, flux=flux, sky=200.0, seed=seed + k)
        )
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6, help="number of donut pairs (default 6)")
    parser.add_argument("--flux", type=float, default=2e6, help="electrons per donut (default 2e6)")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()

    t0 = time.perf_counter()
    geometry = TieGeometry.auxtel()
    geometry_s = time.perf_counter() - t0
    pairs = _pairs(args.pairs, args.flux, args.seed)
    stamps = [(p.intra - p.truth.sky_e, p.extra - p.truth.sky_e, p.truth) for p in pairs]

    results: dict[str, dict] = {}
    for solver, model in CONFIGS:
        intra, extra, truth = stamps[0]
        t0 = time.perf_counter()
        solve_tie(intra, extra, geometry=geometry, field_intra_deg=(0.05, 0.05), field_extra_deg=(0.05, 0.05),
                  solver=solver, model=model)  # fmt: skip
        warmup = time.perf_counter() - t0
        times, rms_4_11, rms_4_22, iterations, converged = [], [], [], [], 0
        for intra, extra, truth in stamps:
            t0 = time.perf_counter()
            result = solve_tie(
                intra,
                extra,
                geometry=geometry,
                field_intra_deg=truth.field_deg,
                field_extra_deg=truth.field_deg,
                solver=solver,
                model=model,
            )
            times.append(time.perf_counter() - t0)
            err_nm = (result.deviation_um - np.asarray(truth.zernikes_ta_um)) * 1e3
            rms_4_11.append(float(np.sqrt(np.mean(err_nm[:8] ** 2))))
            rms_4_22.append(float(np.sqrt(np.mean(err_nm**2))))
            iterations.append(result.iterations)
            converged += int(result.converged)
        results[f"{solver}/{model}"] = {
            "time_per_pair_s": stats(times, digits=4),
            "warmup_s": round(warmup, 3),
            "rms_error_z4_z11_nm": stats(rms_4_11, digits=2),
            "rms_error_z4_z22_nm": stats(rms_4_22, digits=2),
            "iterations": stats(iterations, digits=1),
            "converged": f"{converged}/{len(stamps)}",
        }
        print(f"{solver}/{model}: {results[f'{solver}/{model}']}")

    rows = [
        (
            config,
            r["time_per_pair_s"]["median"],
            r["rms_error_z4_z11_nm"]["median"],
            r["rms_error_z4_z22_nm"]["median"],
            r["iterations"]["median"],
            r["converged"],
        )
        for config, r in results.items()
    ]
    summary = table(
        rows, ("solver/model", "s per pair", "RMS Z4-Z11 nm", "RMS Z4-Z22 nm", "iterations", "converged")
    )
    path = write_result(
        "tie",
        {
            "pairs": args.pairs,
            "flux_e": args.flux,
            "sky_e": 200.0,
            "seeing_arcsec": 1.0,
            "stamp_px": 255,
            "threads": 1,
            "geometry_build_s": round(geometry_s, 3),
            "reference_ts_wep": {"offAxis": {"rms_nm": 3.7, "s": 0.60}, "onAxis": {"rms_nm": 3.7, "s": 0.42}},
            "target_s_per_pair": 0.5,
            "results": results,
            "table": summary,
        },
    )
    print(summary)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
