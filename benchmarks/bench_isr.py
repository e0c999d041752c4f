"""Benchmark of ISR on a full LATISS frame: 16 amplifiers (2048 x 576) in, 4000 x 4072 out.

Run: ``.venv/bin/python benchmarks/bench_isr.py [--repeat N]``. Writes ``benchmarks/results/isr.json`` with
the median and spread (min, max, interquartile range) of each timing in seconds, and the peak memory that
`run_isr` allocates on top of its inputs (``tracemalloc``, which numpy reports to) in MB.

Cases: the seed's configuration (overscan, bias, dark, flat; output adu), the electron output
(doApplyGains, no flat) with the variance plane, reading the raw, and loading the calibrations.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from _common import table, write_result
from _timing import peak_mb, time_calls
from lsst.ts.auxtelwep.calibs import load_calibrations
from lsst.ts.auxtelwep.exposure import read_raw
from lsst.ts.auxtelwep.instrument import DETECTOR_SHAPE
from lsst.ts.auxtelwep.isr import IsrConfig, run_isr
from lsst.ts.auxtelwep.sim.signature import (
    DetectorSignature,
    default_header,
    electrons_to_amps,
    write_calibrations,
    write_raw,
)


def _scene(rng: np.random.Generator) -> np.ndarray:
    """Sky of 600 e- and six donuts (outer 96 px, inner 34 px) of 400 e- per pixel, two of them saturating."""
    electrons = np.full(DETECTOR_SHAPE, 600.0, dtype=np.float32)
    rows = np.arange(-100, 101)[:, None]
    cols = np.arange(-100, 101)[None, :]
    r2 = rows * rows + cols * cols
    annulus = ((r2 <= 96**2) & (r2 >= 34**2)).astype(np.float32)
    for i, (row, col) in enumerate(rng.uniform(200, 3800, (6, 2))):
        level = 4.0e5 if i < 2 else 400.0
        r0, c0 = int(row) - 100, int(min(col, 3870)) - 100
        electrons[r0 : r0 + 201, c0 : c0 + 201] += level * annulus
    return electrons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed repetitions per case (default 7)")
    args = parser.parse_args()

    rng = np.random.default_rng(1)
    signature = DetectorSignature.typical(seed=0)
    amps = electrons_to_amps(
        _scene(rng), signature, exptime_s=30.0, darktime_s=30.3, rng=rng, n_cosmic_rays=50, hot_columns=[1500]
    )
    seed_config = IsrConfig()
    electron_config = IsrConfig(doFlat=False, doApplyGains=True, doVariance=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = Path(tmp) / "raw.fits"
        write_raw(raw_path, amps, default_header(EXPTIME=30.0, DARKTIME=30.3))
        calib_dir = write_calibrations(signature, Path(tmp) / "calibs", rng=rng)
        raw = read_raw(raw_path)
        calibs = load_calibrations(calib_dir, seed_config)
        calibs_e = load_calibrations(calib_dir, electron_config)
        results = {
            "run_isr_seed_config_adu": time_calls(lambda _: run_isr(raw, calibs, seed_config), args.repeat),
            "run_isr_electron_variance": time_calls(
                lambda _: run_isr(raw, calibs_e, electron_config), args.repeat
            ),
            "read_raw_uncompressed": time_calls(lambda _: read_raw(raw_path), args.repeat),
            "load_calibrations_seed_config": time_calls(
                lambda _: load_calibrations(calib_dir, seed_config), max(3, args.repeat // 2)
            ),
        }
        memory = {
            "run_isr_seed_config_adu_peak_mb": peak_mb(lambda: run_isr(raw, calibs, seed_config)),
            "run_isr_electron_variance_peak_mb": peak_mb(lambda: run_isr(raw, calibs_e, electron_config)),
        }
    rows = [
        (case, r["median_s"], r["iqr_s"], r["n"], memory.get(f"{case}_peak_mb", ""))
        for case, r in results.items()
    ]
    summary = table(rows, ("case", "median s", "IQR s", "n", "peak MB"))
    write_result(
        "isr",
        {
            "name": "isr",
            "description": "full-frame ISR (16 amps 2048x576 -> 4000x4072 float32): sky 600 e-, 6 donuts (2 "
            "saturating), 50 cosmic rays; times in s, peak memory allocated by run_isr in MB (the output "
            "image, mask and variance alone are 65 + 33 + 65 MB)",
            "results": results,
            "memory": memory,
            "table": summary,
        },
    )
    print(json.dumps({**results, **memory}, indent=1))
    print(summary)


if __name__ == "__main__":
    main()
