"""Subcommands of ``auxtelwep``: one module each, with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def output_file(value: str) -> Path:
    """argparse type of a file a command writes: its directory must exist, checked before any work is done
    (a result computed for seconds and then lost to a typo in the path helps nobody)."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a directory, not a file")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {value}: {path.parent} is not a directory")
    return path


def day_obs(value: str) -> str:
    """argparse type of a DAYOBS: ``YYYYMMDD`` (``2024-06-24`` is read as that)."""
    digits = value.replace("-", "")
    if not re.fullmatch(r"\d{8}", digits):
        raise argparse.ArgumentTypeError(f"DAYOBS {value!r} is not a date YYYYMMDD")
    return digits


def count_of(n: int, noun: str) -> str:
    """``"1 triplet"``, ``"2 triplets"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
