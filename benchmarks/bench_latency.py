"""Latency: raw triplet files to the hexapod correction, per stage, over simulated triplets.

Run: ``.venv/bin/python benchmarks/bench_latency.py [--triplets 10]``. Simulates two nights of triplets
(1" seeing, 10 catalog stars, one calibration set per night, as at the telescope) and runs
`pipeline.process` on each triplet, the way the CSC's worker does:

- ``closed loop``: M2 within ~0.05 mm of aligned, as after the first correction;
- ``misaligned``: M2 decentered by ~0.3 mm, so the donuts are ~150 px from the WCS prediction.

In both, detection solves astrometry on the in-focus image (mode ``refit``: one more ISR): M2 decenter moves
the image by ~538 px per mm, so even 0.02 mm puts the donuts beyond the ``wcs`` mode's 10 px.

Each night is processed with four configurations: every usable donut (the default), the brightest donut
only (``detection.max_donuts = 1``), and every donut with the TIE alone and with the forward fit started from
its Z4 grid instead of the TIE (``estimation.algorithm``), in a process warmed up as the CSC's worker is
(`pipeline.warm_up`: calibrations, design references, sensitivity map, estimation worker processes), so pairs
are estimated on both cores. Nothing is done ahead of the in-focus image here (the CSC does that:
bench_csc_latency.py).
The first triplet of each run is reported apart. A second table times the command a person runs,
``auxtelwep process`` with ``--json``, in a fresh process per triplet (``--cold`` triplets of the misaligned
night): its wall time includes starting Python, the imports, reading the calibrations and building the design
references and the sensitivity map, which the service does once. Writes ``benchmarks/results/latency.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import stats, table, write_result
from lsst.ts.auxtelwep.estimation import forget_estimates
from lsst.ts.auxtelwep.instrument import HexapodState
from lsst.ts.auxtelwep.pipeline import PipelineConfig, Triplet, process, warm_up
from lsst.ts.auxtelwep.sim.night import NightManifest, NightPlan, simulate_night

STAGES = ("isr", "detection", "estimation", "correction", "total")


SCENARIOS = {
    "closed loop": (HexapodState(x=0.02, y=-0.03, z=0.01), HexapodState(x=0.004, y=0.003, z=-0.002)),
    "misaligned": (HexapodState(x=0.25, y=-0.15, z=0.08), HexapodState(x=-0.01, y=0.01, z=-0.01)),
}
CONFIGS = {
    "all donuts": {},
    "brightest donut": {"detection": {"max_donuts": 1}},
    # Side by side, as issue 7 asks: the TIE alone, and the forward fit without its TIE seed.
    "all donuts, TIE alone": {"estimation": {"algorithm": "tie"}},
    "all donuts, forward fit from the Z4 grid": {"estimation": {"algorithm": "danish"}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triplets", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cold", type=int, default=4, help="triplets through a fresh `auxtelwep process`")
    args = parser.parse_args()
    results = {}
    rows = []
    cold: dict = {}
    with tempfile.TemporaryDirectory(prefix="auxtelwep-latency-") as tmp:
        for k, (scenario, (start, step)) in enumerate(SCENARIOS.items()):
            night = Path(tmp) / f"night{k}"
            plan = NightPlan(n_triplets=args.triplets, seed=args.seed + k, hexapod=start, hexapod_step=step)
            manifest = simulate_night(night, plan)
            for label, extra in CONFIGS.items():
                config = PipelineConfig.model_validate(
                    {"calibs_dir": night / manifest.calibs, "refcat": night / manifest.refcat, **extra}
                )
                warm_up(config)
                timings: dict[str, list[float]] = {stage: [] for stage in STAGES}
                first_total = 0.0
                errors, donuts, modes = [], [], []
                for i, record in enumerate(manifest.triplets):
                    paths = {e.role: night / e.raw for e in record.exposures}
                    forget_estimates()  # each configuration estimates its own pairs (no reuse across runs)
                    result = process(Triplet(paths["intra"], paths["extra"], paths["infocus"]), config=config)
                    if i == 0 and label == next(iter(CONFIGS)):
                        first_total = result.timings_s["total"]
                    else:
                        for stage in STAGES:
                            timings[stage].append(result.timings_s[stage])
                    truth = record.hexapod
                    offset = result.correction.offset
                    errors.append([offset.x + truth.x, offset.y + truth.y, offset.z + truth.z])
                    donuts.append(result.estimate.n_used)
                    modes.append(result.catalog.mode)
                err = np.abs(np.array(errors))
                key = f"{scenario}, {label}"
                results[key] = {
                    "timing_s": {stage: stats(v) for stage, v in timings.items()},
                    "first_triplet_total_s": round(first_total, 3) if first_total else None,
                    "donuts_used": stats(donuts),
                    "detection_modes": sorted(set(modes)),
                    "abs_error_mm": {"x": stats(err[:, 0]), "y": stats(err[:, 1]), "z": stats(err[:, 2])},
                }
                rows.append(
                    [
                        scenario,
                        label,
                        "/".join(sorted(set(modes))),
                        *(np.median(timings[s]) for s in STAGES),
                        np.max(timings["total"]),
                        np.median(donuts),
                        np.median(np.hypot(err[:, 0], err[:, 1])),
                        np.median(err[:, 2]),
                    ]
                )
                print(rows[-1], flush=True)
            if scenario == "misaligned":
                cold = cold_cli(night, manifest, args.cold, Path(tmp))
    header = [
        "M2",
        "config",
        "mode",
        *[f"{s} s" for s in STAGES],
        "max total s",
        "donuts",
        "decenter err mm",
        "focus err mm",
    ]
    text = table(rows, header)
    if cold:
        caption = "A fresh `auxtelwep process --json` per triplet (misaligned night, every donut):"
        cold_row = [cold["wall_s"]["median"], cold["wall_s"]["max"], cold["pipeline_total_s"]["median"]]
        header_cold = ["wall s (median)", "wall max s", "pipeline total s (median)"]
        text += f"\n\n{caption}\n\n" + table([cold_row], header_cold)
    print(text)
    path = write_result(
        "latency", {"n_triplets": args.triplets, "configs": results, "cold_cli": cold, "table": text}
    )
    print(f"wrote {path}")


def cold_cli(night: Path, manifest: NightManifest, n_triplets: int, tmp: Path) -> dict:
    """Wall time of ``auxtelwep process`` in a new process, and the pipeline's own total, per triplet."""
    command = Path(sys.executable).with_name("auxtelwep")
    walls, totals = [], []
    for record in manifest.triplets[:n_triplets]:
        paths = {e.role: str(night / e.raw) for e in record.exposures}
        out = tmp / "cold.json"
        argv = [str(command), "process", paths["intra"], paths["extra"], "--infocus", paths["infocus"]]
        argv += ["--calibs", str(night / manifest.calibs), "--refcat", str(night / manifest.refcat)]
        start = time.perf_counter()
        subprocess.run([*argv, "--json", str(out)], check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
        totals.append(json.loads(out.read_text())["timing_s"]["total"])
    return {"wall_s": stats(walls), "pipeline_total_s": stats(totals)} if walls else {}


if __name__ == "__main__":
    main()
