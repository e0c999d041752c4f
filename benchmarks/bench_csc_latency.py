"""Latency through the CSC on DDS: the last camera event of a triplet to the published hexapodCorrection.

Run: ``.venv/bin/python benchmarks/bench_csc_latency.py [--triplets 10] [--interval 2.5]``. Simulates a
night (M2 near aligned, as in closed loop), starts AuxTelWEP (real pipeline in its worker process) and
simulated ATCamera and ATOODS controllers on an isolated Cyclone DDS domain, then announces each triplet's
three raws as the camera would (``endReadout`` then ``imageInOODS``, ``--interval`` seconds apart: an
exposure cannot end sooner than its readout after the previous one, and the CSC calibrates the defocal
images meanwhile) and times, from the in-focus image's ``imageInOODS``, the arrival of ``wavefrontError``
and ``hexapodCorrection`` at a remote. The first triplet is reported apart (it shows what the worker's
warm-up did not cover). Two pipeline configurations: every usable donut (the default) and the brightest
donut. Writes ``benchmarks/results/csc_latency.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from _common import stats, table, write_result
from lsst.ts.auxtelwep.instrument import HexapodState
from lsst.ts.auxtelwep.sim.night import NightManifest, NightPlan, simulate_night

CONFIGS: dict[str, dict[str, Any]] = {"all donuts": {}, "brightest donut": {"detection": {"max_donuts": 1}}}
TIMEOUT_S = 120.0


async def run_config(
    night: Path, manifest: NightManifest, pipeline: dict[str, Any], work: Path, interval_s: float
) -> dict[str, Any]:
    """Play the night to a fresh CSC configured with ``pipeline``; return the latencies."""
    from lsst.ts.auxtelwep.csc import AuxTelWepCsc
    from lsst.ts.auxtelwep.sal import Controller, Domain, Remote, State

    config_dir = work / "config"
    config_dir.mkdir(parents=True)
    settings = {
        "data_root": str(night),
        "state_dir": str(work / "state"),
        "refcat_path": str(night / manifest.refcat),
        "calibs_dir": str(night / manifest.calibs),
        "pipeline": pipeline,
    }
    (config_dir / "_init.yaml").write_text(yaml.safe_dump(settings))
    camera = Controller("ATCamera", do_callbacks=False)
    oods = Controller("ATOODS", do_callbacks=False)
    csc = AuxTelWepCsc(config_dir=config_dir, initial_state=State.ENABLED)
    await asyncio.gather(camera.start_task, oods.start_task, csc.start_task)
    latencies_wfe, latencies_hex, calc = [], [], []
    try:
        async with Domain() as domain, Remote(domain, "AuxTelWEP") as remote:
            for triplet in manifest.triplets:
                for k, exposure in enumerate(triplet.exposures):
                    if k:  # the next exposure cannot end sooner (integration plus 2 s of readout)
                        await asyncio.sleep(interval_s)
                    reason = exposure.role.upper()
                    image_type = "ACQ" if reason == "INFOCUS" else "CWFS"
                    camera.evt_endReadout.set_write(
                        imageName=exposure.obsid,
                        additionalKeys="groupId:imageType:reason",
                        additionalValues=f"{triplet.groupid}:{image_type}:{reason}",
                        force_output=True,
                    )
                    t0 = time.perf_counter()
                    oods.evt_imageInOODS.set_write(
                        camera="LATISS",
                        obsid=exposure.obsid,
                        raft="R00",
                        sensor="S00",
                        statusCode=0,
                        description="OK",
                        force_output=True,
                    )
                wfe = await remote.evt_wavefrontError.next(flush=False, timeout=TIMEOUT_S)
                latencies_wfe.append(time.perf_counter() - t0)
                await remote.evt_hexapodCorrection.next(flush=False, timeout=TIMEOUT_S)
                latencies_hex.append(time.perf_counter() - t0)
                duration = await remote.evt_wepDuration.next(flush=False, timeout=TIMEOUT_S)
                calc.append(duration.calcTime)
                print(
                    f"  {wfe.intraObsid}: {latencies_hex[-1]:.2f} s to hexapodCorrection "
                    f"(pipeline {duration.calcTime:.2f} s)",
                    flush=True,
                )
    finally:
        await asyncio.gather(csc.close(), camera.close(), oods.close())
    return {
        "first_triplet_s": round(latencies_hex[0], 3),
        "to_wavefrontError_s": stats(latencies_wfe[1:]),
        "to_hexapodCorrection_s": stats(latencies_hex[1:]),
        "pipeline_calc_s": stats(calc[1:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triplets", type=int, default=10)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--interval", type=float, default=2.5, help="seconds between the images of a triplet (>= readout)"
    )
    args = parser.parse_args()
    os.environ["LSST_DDS_DOMAIN_ID"] = str(random.SystemRandom().randint(100, 229))
    os.environ["LSST_DDS_PARTITION_PREFIX"] = f"auxtelwep-bench-{uuid.uuid4().hex[:8]}"
    results = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="auxtelwep-csc-latency-") as tmp:
        night = Path(tmp) / "night"
        plan = NightPlan(
            n_triplets=args.triplets,
            seed=args.seed,
            hexapod=HexapodState(x=0.02, y=-0.03, z=0.01),
            hexapod_step=HexapodState(x=0.003, y=0.002, z=-0.001),
        )
        manifest = simulate_night(night, plan)
        for k, (label, pipeline) in enumerate(CONFIGS.items()):
            print(f"{label}:", flush=True)
            result = asyncio.run(run_config(night, manifest, pipeline, Path(tmp) / f"run{k}", args.interval))
            results[label] = result
            rows.append(
                [
                    label,
                    result["to_hexapodCorrection_s"]["median"],
                    result["to_hexapodCorrection_s"]["max"],
                    result["pipeline_calc_s"]["median"],
                    result["first_triplet_s"],
                ]
            )
    header = ["config", "to hexapodCorrection s (median)", "max s", "pipeline s (median)", "first triplet s"]
    text = table(rows, header)
    print(text)
    path = write_result(
        "csc_latency",
        {"n_triplets": args.triplets, "interval_s": args.interval, "configs": results, "table": text},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
