"""Run every benchmark (``bench_*.py`` here) one after the other and collect their tables.

Run: ``make bench`` or ``.venv/bin/python benchmarks/run_all.py [--only NAME ...] [--quick]``. Each benchmark
writes ``results/<name>.json``; this script then writes ``results/SUMMARY.md`` with every table, which the
README shows. ``--quick`` passes each benchmark its small-run options (for a smoke test, not for figures).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
QUICK_ARGS = {
    "latency": ["--triplets", "2", "--cold", "1"],
    "csc_latency": ["--triplets", "3"],
    "convergence": ["--cases", "2"],
    "scaling": ["--repeat", "1"],
    "accuracy": ["--quick"],
    "estimation": ["--quick"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="benchmark names (e.g. latency isr); default all")
    parser.add_argument("--quick", action="store_true", help="small runs, for a smoke test")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    names = [s.stem.removeprefix("bench_") for s in scripts]
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            parser.error(f"unknown benchmarks {sorted(unknown)}; known: {names}")
        scripts = [s for s, n in zip(scripts, names, strict=True) if n in args.only]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    failed = []
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        extra = QUICK_ARGS.get(name, []) if args.quick else []
        print(f"== {name} ==", flush=True)
        t0 = time.perf_counter()
        status = subprocess.run(
            [sys.executable, str(script), *extra], cwd=HERE, env=env, check=False
        ).returncode
        print(f"== {name}: exit {status} in {time.perf_counter() - t0:.0f} s ==", flush=True)
        if status:
            failed.append(name)
    write_summary()
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


def write_summary() -> Path:
    """Collect the ``table`` of every result JSON into ``results/SUMMARY.md``."""
    parts = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/run_all.py`; one section per `results/*.json`.",
        "",
    ]
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        machine = data.get("machine", {})
        parts.append(f"## {path.stem}")
        parts.append("")
        load = machine.get("load_avg_1min", "?")
        parts.append(f"{data.get('date', '?')}, {machine.get('cores', '?')} cores, load average {load}")
        parts.append("")
        parts.append(data.get("table") or "```\n" + json.dumps(data, indent=1)[:2000] + "\n```")
        parts.append("")
    out = RESULTS / "SUMMARY.md"
    out.write_text("\n".join(parts))
    return out


if __name__ == "__main__":
    sys.exit(main())
