"""The ``auxtelwep`` command line: subcommands are found, and building the parser stays light."""

from __future__ import annotations

import json
import subprocess
import sys

from lsst.ts.auxtelwep.cli import build_parser

COMMANDS = {"calibs", "demo", "detect", "isr", "process", "reprocess", "schema", "simulate"}


def test_every_command_is_registered() -> None:
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(subparsers.choices) == COMMANDS


def test_parser_does_not_import_the_heavy_stack() -> None:
    # `auxtelwep --help` and the argument errors must answer at once: each command imports its
    # implementation (optics, SAL, simulator, plotting) only when it runs.
    code = (
        "import json, sys; from lsst.ts.auxtelwep.cli import build_parser; build_parser(); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('batoid', 'galsim', 'danish', 'scipy', 'matplotlib', 'cyclonedds', 'astropy', 'pydantic'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_demo_option_defaults_are_the_library_defaults() -> None:
    # commands/demo.py writes the defaults again so that --help shows them without importing the demo.
    from lsst.ts.auxtelwep.demo import DemoOptions

    args = build_parser().parse_args(["demo"])
    library = DemoOptions()
    for name in ("n_triplets", "seeing_arcsec", "seed", "initial", "draw", "out", "n_stars", "keep_data"):
        assert getattr(args, name) == getattr(library, name), name
    assert (not args.no_stamps) == library.stamps
