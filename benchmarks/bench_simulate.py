"""Benchmark of the donut simulator: a stamp pair, a full-frame scene, and a full raw written to disk.

Run: ``.venv/bin/python benchmarks/bench_simulate.py [--repeat N]``. Writes
``benchmarks/results/simulate.json`` with the median and spread (min, max, interquartile range) of each
timing, in seconds.

BLAS runs on one thread here (``OPENBLAS_NUM_THREADS=1``, set before numpy loads): the truth Zernikes call
``numpy.linalg.lstsq`` on small matrices, which on a shared 2-core machine runs ~20x slower multithreaded.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import tempfile
from pathlib import Path

from _common import table, write_result
from _timing import time_calls
from lsst.ts.auxtelwep.instrument import AuxTel, HexapodState, Role
from lsst.ts.auxtelwep.sim.night import make_catalog
from lsst.ts.auxtelwep.sim.optics import render_stamp_pair
from lsst.ts.auxtelwep.sim.scene import Pointing, render_scene, simulate_exposure
from lsst.ts.auxtelwep.sim.signature import DetectorSignature

STATE = HexapodState(x=0.15, y=-0.1, z=0.03)
POINTING = Pointing(ra_deg=150.0, dec_deg=-30.0, rotpa_deg=20.0, camera_angle_deg=10.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions per case (default 5)")
    args = parser.parse_args()

    telescope = AuxTel().with_hexapod(STATE)
    catalog = make_catalog(POINTING, seed=1, n_stars=12, mag_range=(8.0, 11.0), blend_pair=False)
    signature = DetectorSignature.typical(seed=0)
    on_chip: list[int] = []

    def stamp_pair(i: int) -> None:
        render_stamp_pair(telescope, 0.02, -0.01, seeing_arcsec=1.0, flux=5e6, sky=100.0, seed=i + 10)

    def scene(i: int) -> None:
        _, stars = render_scene(
            telescope,
            Role.INTRA,
            POINTING,
            catalog,
            seeing_arcsec=1.0,
            exptime_s=20.0,
            sky_e_per_px_per_s=5.0,
        )
        on_chip.append(sum(s.on_chip for s in stars))

    with tempfile.TemporaryDirectory() as tmp:

        def raw(i: int) -> None:
            simulate_exposure(
                Path(tmp) / f"raw{i}.fits",
                telescope_state=STATE,
                role=Role.EXTRA,
                pointing=POINTING,
                catalog=catalog,
                seeing_arcsec=1.0,
                exptime_s=20.0,
                sky_e_per_px_per_s=5.0,
                seed=i + 100,
                signature=signature,
                n_cosmic_rays=5,
            )

        results = {
            "render_stamp_pair_255px": time_calls(stamp_pair, args.repeat),
            "render_scene_full_frame": time_calls(scene, args.repeat),
            "simulate_exposure_full_raw": time_calls(raw, args.repeat),
        }
    summary = table([(case, r["median_s"], r["iqr_s"], r["n"]) for case, r in results.items()],
                    ("case", "median s", "IQR s", "n"))  # fmt: skip
    write_result(
        "simulate",
        {
            "name": "simulate",
            "description": "stamp pair (255 px, intra+extra, expected-image renderer); full-frame electrons "
            f"of {max(on_chip)} stars on the chip (12-star catalog, mag 8-11); full raw = scene + detector "
            "signature + 16-HDU FITS write + truth JSON",
            "results": results,
            "table": summary,
        },
    )
    print(json.dumps(results, indent=1))
    print(summary)


if __name__ == "__main__":
    main()
