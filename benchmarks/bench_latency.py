"""Latency: raw triplet files to the hexapod correction, per stage, over simulated triplets.

Run: ``.venv/bin/python benchmarks/bench_latency.py [--triplets 10]``. Simulates a night of triplets (random
M2 misalignment per triplet, 1" seeing, 10 catalog stars), then runs `pipeline.process` on each, the way the
CSC's worker does, with two configurations: the default (every usable donut) and the brightest donut only
(``detection.max_donuts = 1``), which is the configuration of the 1.5 s target. Writes
``benchmarks/results/latency.json`` (median and spread per stage) and prints a table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import stats, table, write_result
from lsst.ts.auxtelwep.instrument import HexapodState
from lsst.ts.auxtelwep.pipeline import PipelineConfig, Triplet, process
from lsst.ts.auxtelwep.sim.night import NightPlan, simulate_night

STAGES = ("isr", "detection", "estimation", "correction", "total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triplets", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="auxtelwep-latency-") as tmp:
        out = Path(tmp)
        triplets = []
        truths = []
        t0 = time.perf_counter()
        for i in range(args.triplets):
            state = HexapodState(*rng.uniform(-0.3, 0.3, 2), rng.uniform(-0.1, 0.1))
            manifest = simulate_night(
                out / f"t{i}", NightPlan(n_triplets=1, seed=args.seed + i, hexapod=state)
            )
            paths = {e.role: out / f"t{i}" / e.raw for e in manifest.triplets[0].exposures}
            triplets.append((Triplet(paths["intra"], paths["extra"], paths["infocus"]), out / f"t{i}"))
            truths.append(state)
        simulate_s = time.perf_counter() - t0
        configs = {"all donuts": {}, "brightest donut": {"detection": {"max_donuts": 1}}}
        results = {}
        rows = []
        for label, extra in configs.items():
            timings: dict[str, list[float]] = {stage: [] for stage in STAGES}
            errors = []
            donuts = []
            for (triplet, night), truth in zip(triplets, truths, strict=True):
                config = PipelineConfig.model_validate(
                    {"calibs_dir": night / "calibs", "refcat": night / "refcat.ecsv", **extra}
                )
                result = process(triplet, config=config)
                for stage in STAGES:
                    timings[stage].append(result.timings_s[stage])
                offset = result.correction.offset
                errors.append([offset.x + truth.x, offset.y + truth.y, offset.z + truth.z])
                donuts.append(result.estimate.n_used)
            err = np.abs(np.array(errors))
            results[label] = {
                "timing_s": {stage: stats(v) for stage, v in timings.items()},
                "donuts_used": stats(donuts),
                "abs_error_mm": {"x": stats(err[:, 0]), "y": stats(err[:, 1]), "z": stats(err[:, 2])},
            }
            rows.append(
                [
                    label,
                    *(np.median(timings[s]) for s in STAGES),
                    np.max(timings["total"]),
                    np.median(donuts),
                    np.median(np.hypot(err[:, 0], err[:, 1])),
                    np.median(err[:, 2]),
                ]
            )
    header = [
        "config",
        *[f"{s} s" for s in STAGES],
        "max total s",
        "donuts",
        "decenter err mm",
        "focus err mm",
    ]
    print(table(rows, header))
    path = write_result(
        "latency",
        {
            "n_triplets": args.triplets,
            "simulate_s": round(simulate_s, 1),
            "configs": results,
            "table": table(rows, header),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
