"""``auxtelwep schema``: print, write or check the CSC configuration schema (``schema/AuxTelWEP.yaml``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError

__all__ = ["DEFAULT_SCHEMA_PATH", "register", "render_schema"]

#: ``schema/AuxTelWEP.yaml`` of the source tree this module belongs to.
DEFAULT_SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema" / "AuxTelWEP.yaml"

log = logging.getLogger(__name__)


def render_schema() -> str:
    """Return the schema as the YAML text written to ``schema/AuxTelWEP.yaml``."""
    import yaml

    from ..config import config_schema

    return yaml.safe_dump(config_schema(), sort_keys=False, width=110)


def register(subparsers: Any) -> None:
    """Add the ``schema`` subcommand.

    Parameters
    ----------
    subparsers : `argparse._SubParsersAction`
        The subcommands of the ``auxtelwep`` parser (`cli.build_parser`).
    """
    parser = subparsers.add_parser(
        "schema",
        help="print, write or check the CSC configuration schema",
        description="The JSON schema (as YAML) of the AuxTelWEP configuration, generated from the pydantic "
        "models in lsst.ts.auxtelwep.config.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="write it to --path instead of printing it")
    action.add_argument("--check", action="store_true", help="exit 1 if --path differs from the models")
    parser.add_argument(
        "--path", type=Path, default=DEFAULT_SCHEMA_PATH, help="schema file (default: %(default)s)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    text = render_schema()
    path: Path = args.path
    if args.write:
        try:
            path.write_text(text)
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot write the schema ({exc})", value=str(path)) from exc
        log.info("wrote %s", path)
        return 0
    if args.check:
        try:
            current = path.read_text()
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot read the schema ({exc})", value=str(path)) from exc
        if current != text:
            sys.stderr.write(f"{path} is out of date: run `auxtelwep schema --write`\n")
            return 1
        return 0
    sys.stdout.write(text)
    return 0
