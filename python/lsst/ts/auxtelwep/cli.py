"""The ``auxtelwep`` command.

Each subcommand lives in its own module under `lsst.ts.auxtelwep.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (``args -> exit code``). Errors of the
package's own family end the command with one line naming the problem and exit status 2.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import logging
import os
import pkgutil
import re
import sys
from collections.abc import Sequence

from . import __version__, commands
from .errors import AuxTelWepError

__all__ = ["main"]

_UNSIGNED = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NEGATIVE_LIST = re.compile(rf"-{_UNSIGNED}(?:,[-+]?{_UNSIGNED})+")  # "-0.3,0.2,1e-3"


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every subcommand found in `lsst.ts.auxtelwep.commands`."""
    parser = argparse.ArgumentParser(
        prog="auxtelwep", description="AuxTel wavefront estimation: simulate, calibrate, process, demo."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--loglevel", default="WARNING", help="logging level (DEBUG, INFO, WARNING...)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def _attach_negative_lists(argv: Sequence[str]) -> list[str]:
    """Write ``--hexapod -0.3,0.2,0.1`` as ``--hexapod=-0.3,0.2,0.1``.

    argparse reads a value that starts with ``-`` as an option unless it is one negative number, so an
    offset list whose first axis is negative was refused ("expected one argument").
    """
    out: list[str] = []
    for token in argv:
        previous = out[-1] if out else ""
        if previous.startswith("--") and "=" not in previous and _NEGATIVE_LIST.fullmatch(token):
            out[-1] = f"{previous}={token}"
        else:
            out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``auxtelwep`` command line; return the exit status.

    Parameters
    ----------
    argv : sequence of `str`, optional
        Arguments; default ``sys.argv[1:]``.

    Returns
    -------
    status : `int`
        The subcommand's status; 2 for an `AuxTelWepError` or a system error on a file, 141 when stdout's
        reader went away.
    """
    # batoid's small least-squares fits run ~20x slower with a multithreaded BLAS on a busy 2-core
    # machine; the pipeline parallelises over donuts instead. Set before numpy is first imported.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # Python's shutdown runs the cyclic garbage collector over the ~200 000 objects of the ~1600 modules
    # that `auxtelwep process` imports: 0.25 s of its 4 s. Frozen at exit, they are left to the end of the
    # process: the command has closed what it wrote by then, objects made later are still collected, and
    # Python never promised to finalize objects still alive at exit (`object.__del__`). Registered once,
    # however often `main` runs in a process.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    args = build_parser().parse_args(_attach_negative_lists(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # here rather than at exit, so that a reader gone away is handled below
        return status
    except AuxTelWepError as exc:
        # One line, even when the message quotes a library's multi-line one.
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"auxtelwep {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`auxtelwep process ... | head`): stop quietly, as other commands do. Python
        # would otherwise complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        # A file the system refused (permissions, a full disk...): name it in one line.
        print(f"auxtelwep {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
