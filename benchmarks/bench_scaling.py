"""Scaling: estimation time against the number of donuts per image and the worker processes used.

Run: ``.venv/bin/python benchmarks/bench_scaling.py [--repeat 3]``. Renders 8 batoid-traced donut pairs
(1" seeing, spread over the LATISS field, M2 decentered 0.2 mm), then times `estimate_wavefront` on the first
1, 2, 4 and 8 of them with 1 and 2 worker processes (the process pool is started before timing, as in the
CSC, where it lives for the whole night). Writes ``benchmarks/results/scaling.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time

import numpy as np

from _common import stats, table, write_result
from lsst.ts.auxtelwep.estimation import EstimationConfig, estimate_wavefront, forget_estimates, shutdown_pool
from lsst.ts.auxtelwep.instrument import AuxTel, HexapodState
from lsst.ts.auxtelwep.sim.optics import render_stamp_pair
from lsst.ts.auxtelwep.stamps import DonutPair

SKY = 100.0


def make_pairs(n: int) -> list[DonutPair]:
    """``n`` donut pairs on a ring of field positions, from a decentered telescope."""
    telescope = AuxTel().with_hexapod(HexapodState(x=0.2, z=0.03))
    pairs = []
    for i in range(n):
        angle = 2 * np.pi * i / n
        fx, fy = 0.03 * np.cos(angle), 0.03 * np.sin(angle)
        r = render_stamp_pair(telescope, fx, fy, seeing_arcsec=1.0, flux=2e6, sky=SKY, seed=100 + i)
        pairs.append(r.donut_pair(index=i))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pairs = make_pairs(8)
    telescope = AuxTel()
    results = {}
    rows = []
    for workers in (1, 2):
        config = EstimationConfig(max_workers=workers, min_pairs_for_pool=2)
        estimate_wavefront(pairs[:2], config=config, telescope=telescope)  # start the pool, warm caches
        for n in (1, 2, 4, 8):
            times = []
            for _ in range(args.repeat):
                forget_estimates()  # time the fits, not the reuse of the previous repeat's estimates
                t0 = time.perf_counter()
                estimate = estimate_wavefront(pairs[:n], config=config, telescope=telescope)
                times.append(time.perf_counter() - t0)
            results[f"{n} donuts, {workers} workers"] = {"time_s": stats(times), "used": estimate.n_used}
            rows.append([n, workers, np.median(times), np.median(times) / n, estimate.n_used])
        shutdown_pool()
    header = ["donuts", "workers", "time s", "s per donut", "used"]
    print(table(rows, header))
    path = write_result("scaling", {"cases": results, "table": table(rows, header)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
