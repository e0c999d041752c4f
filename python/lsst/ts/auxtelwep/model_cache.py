"""A cache on disk of pure optical-model products, so that a fresh process does not trace them again.

The optical model's one-time products (the correction's sensitivity map, 0.6 s of batoid ray tracing, and
the smaller ones listed in doc/architecture.md) are kept in memory for the life of a process; a new
``auxtelwep process`` per triplet would pay for them every time. They are also stored as ``.npz`` files in
the cache directory:

1. ``$AUXTELWEP_CACHE_DIR`` when set (the tests point it to a temporary directory);
2. else ``$XDG_CACHE_HOME/ts_auxtelwep``;
3. else ``~/.cache/ts_auxtelwep``.

A file's name is a hash of everything its arrays depend on: the caller's arguments, the versions of this
package and of the libraries named by the caller, and the contents of the source files that compute them,
so that a new release or an edited checkout never reads an old result. The full key is also stored in the
file and compared on reading. A file that cannot be read, holds another key or arrays of another shape or
type is ignored, and the arrays are computed and written again. Files are written whole (a temporary file
renamed into place), so a reader never sees half of one, and processes writing the same key at once leave
one valid file. A directory that cannot be created or written only costs the time: the arrays are computed
in memory as before. Arrays come back read-only, equal to the computed ones bit for bit (``.npz`` stores
float64 exactly). Removing the directory is always safe.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from . import __version__

__all__ = ["CACHE_DIR_ENV", "cache_dir", "cached_arrays"]

CACHE_DIR_ENV = "AUXTELWEP_CACHE_DIR"
"""Environment variable naming the cache directory."""

# Bumped when the layout of the files changes.
_FORMAT = 1
_KEY_ENTRY = "key"

_log = logging.getLogger(__name__)


def cache_dir() -> Path | None:
    """The directory the optical-model products are cached in (see the module docstring).

    Returns
    -------
    directory : `pathlib.Path` or None
        Read from the environment at each call, so that a change of ``AUXTELWEP_CACHE_DIR`` takes effect at
        once; the directory may not exist yet. None when there is none to use (no variable set and no home
        directory).
    """
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    # The XDG specification: an empty or relative value is to be ignored.
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "ts_auxtelwep"
    try:
        return Path.home() / ".cache" / "ts_auxtelwep"
    except RuntimeError:  # a user without a home directory (no HOME, no password entry)
        return None


@functools.cache
def _source_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cached_arrays(
    name: str,
    key: Mapping[str, object],
    compute: Callable[[], Sequence[NDArray[np.float64]]],
    *,
    shapes: Sequence[tuple[int, ...]],
    sources: Sequence[str],
) -> tuple[NDArray[np.float64], ...]:
    """Float64 arrays read from the cache directory, or computed by ``compute`` and stored there.

    Parameters
    ----------
    name : `str`
        What the arrays are (a file name prefix, e.g. ``"sensitivity_fit"``).
    key : mapping of `str` to JSON-serialisable values
        Everything the arrays depend on besides ``sources`` and this package's version: the arguments of
        the computation and the versions of the libraries it uses. Floats are compared by their exact
        representation.
    compute : callable
        Returns the arrays, float64 of ``shapes``; called only when the cache has no valid copy.
    shapes : sequence of `tuple` of `int`
        Shape of each array: a stored file with others is not used.
    sources : sequence of `str`
        Paths of the source files whose code computes the arrays (typically the caller's ``__file__``).

    Returns
    -------
    arrays : `tuple` of `numpy.ndarray`
        Read-only float64 arrays, identical whether read or computed.
    """
    where = _location(name, key, sources)
    arrays = None if where is None else _read(*where, shapes)
    if arrays is None:
        arrays = tuple(np.asarray(a, dtype=np.float64) for a in compute())
        if where is not None:
            _write(*where, arrays)
    for array in arrays:
        array.setflags(write=False)
    return arrays


def _location(name: str, key: Mapping[str, object], sources: Sequence[str]) -> tuple[Path, str] | None:
    """The file for ``key`` and the full key it must hold; None when there is no cache to use."""
    directory = cache_dir()
    if directory is None:
        return None
    try:
        digests = {Path(s).name: _source_digest(s) for s in sources}
    except OSError as exc:  # code that cannot be read (a zipped install): nothing tells its versions apart
        _log.debug("optical-model cache not used for %s (%s)", name, exc)
        return None
    full_key = json.dumps(
        {"name": name, "format": _FORMAT, "package": __version__, "sources": digests, **key}, sort_keys=True
    )
    return directory / f"{name}-{hashlib.sha256(full_key.encode()).hexdigest()[:32]}.npz", full_key


def _read(path: Path, full_key: str, shapes: Sequence[tuple[int, ...]]) -> tuple[NDArray, ...] | None:
    """The arrays of ``path`` if it holds ``full_key`` and arrays of ``shapes``, else None."""
    names = [f"a{i}" for i in range(len(shapes))]
    try:
        with np.load(path, allow_pickle=False) as stored:
            if sorted(stored.files) != sorted([_KEY_ENTRY, *names]) or str(stored[_KEY_ENTRY]) != full_key:
                raise ValueError("another key or other arrays")
            arrays = tuple(stored[n] for n in names)
    except FileNotFoundError:
        return None
    # A damaged file fails in many ways (zipfile, zlib, numpy's format parser, OSError...): all mean the
    # same here, that it is computed again and replaced.
    except Exception as exc:
        _log.debug("cached %s not used (%s): computing it again", path, exc)
        return None
    for array, shape in zip(arrays, shapes, strict=True):
        if array.dtype != np.float64 or array.shape != tuple(shape):
            _log.debug("cached %s not used (%s %s): computing it again", path, array.dtype, array.shape)
            return None
    return arrays


def _write(path: Path, full_key: str, arrays: Sequence[NDArray]) -> None:
    """Store ``arrays`` under ``path`` whole, or not at all when the directory cannot be written."""
    # Unique to this writer; opened as a plain file (not mkstemp's 0600) so the umask decides who may read
    # a shared cache directory.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as out:
            np.savez(out, **{_KEY_ENTRY: np.array(full_key)}, **{f"a{i}": a for i, a in enumerate(arrays)})
        os.replace(tmp, path)
    except OSError as exc:
        _log.debug("optical-model cache %s not written (%s)", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
