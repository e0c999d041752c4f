"""Subcommands of ``auxtelwep``: one module each, with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def _checked_output(value: str, *, parent_may_be_missing: bool) -> Path:
    """The path of a file a command writes, refused when it is a directory or its directory cannot hold it."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a directory, not a file")
    # The nearest ancestor that exists decides: a file there can never become a directory.
    ancestor = next(p for p in path.parents if p.exists() or p == p.parent)
    if ancestor.exists() and not ancestor.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {value}: {ancestor} is not a directory")
    if not parent_may_be_missing and not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {value}: directory {path.parent} does not exist")
    return path


def output_file(value: str) -> Path:
    """argparse type of a result file a command writes: its directory must exist.

    Checked before any work is done: a result computed for seconds and then lost to a typo in the path helps
    nobody, and creating directories from a typo would hide it.

    Parameters
    ----------
    value : `str`
        The path given on the command line (``~`` is expanded).

    Returns
    -------
    path : `pathlib.Path`
        The path to write.

    Raises
    ------
    argparse.ArgumentTypeError
        If the path is a directory, or its directory does not exist or is a file.
    """
    return _checked_output(value, parent_may_be_missing=False)


def new_output_file(value: str) -> Path:
    """argparse type of a file a generating command writes with its directory, made when missing.

    For outputs that are made rather than measured (``simulate exposure``, like ``simulate night``'s data
    root): the command creates the directory, so only a path that can never be written is refused.

    Parameters
    ----------
    value : `str`
        The path given on the command line (``~`` is expanded).

    Returns
    -------
    path : `pathlib.Path`
        The path to write; its directory may not exist yet.

    Raises
    ------
    argparse.ArgumentTypeError
        If the path is a directory, or a file stands where one of its directories should be.
    """
    return _checked_output(value, parent_may_be_missing=True)


def day_obs(value: str) -> str:
    """argparse type of a DAYOBS: ``YYYYMMDD`` (``2024-06-24`` is read as that).

    Parameters
    ----------
    value : `str`
        The command-line value.

    Raises
    ------
    argparse.ArgumentTypeError
        If it is not eight digits once dashes are removed.
    """
    digits = value.replace("-", "")
    if not re.fullmatch(r"\d{8}", digits):
        raise argparse.ArgumentTypeError(f"DAYOBS {value!r} is not a date YYYYMMDD")
    return digits


def count_of(n: int, noun: str) -> str:
    """``"1 triplet"``, ``"2 triplets"``.

    Parameters
    ----------
    n : `int`
        The count.
    noun : `str`
        Singular noun; ``s`` is appended unless ``n`` is 1.
    """
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
