"""Short ``repr`` of the package's data classes: arrays summarised as ``array(shape, dtype)``.

A dataclass's generated ``repr`` prints every array in full: a `~lsst.ts.auxtelwep.pipeline.WavefrontResult`
came to 23 kB, an `~lsst.ts.auxtelwep.exposure.Exposure` to the whole header. The classes that hold arrays
define ``__repr__`` as `summary_repr` of themselves, so the rule is written once: each field as
``name=value`` with arrays, headers, WCSs and long sequences summarised, and fields at their default left out.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["short", "summary_repr", "zernikes_nm"]

_WIDTH = 100
"""Longest nested ``repr`` shown as it is; a longer one is replaced by the type's name."""

_ITEMS = 6
"""Most items of a sequence of scalars shown; a longer one is summarised by its length."""


def short(value: Any) -> str:
    """A one-line, bounded text for one value in a summary ``repr``.

    Parameters
    ----------
    value : `object`
        Any value: arrays become ``array((4000, 4072), float32)``, FITS headers ``Header(312 cards)``,
        sequences of more than a few items (or of objects) their length and item type, floats 6 significant
        digits; another object its own ``repr`` when that is one line of at most 100 characters, else
        ``<TypeName>``.

    Returns
    -------
    text : `str`
        The text, on one line.
    """
    if isinstance(value, enum.Enum):  # before int: flags are ints too
        return f"{type(value).__name__}.{value.name}"
    if value is None or isinstance(value, bool | int | np.integer):
        return repr(value)
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}" if math.isfinite(value) else repr(float(value))
    if isinstance(value, str):
        return repr(value) if len(value) <= _WIDTH else repr(value[:_WIDTH]) + "..."
    if isinstance(value, np.ndarray):
        return f"array({tuple(value.shape)}, {value.dtype})"
    if type(value).__name__ == "Header" and hasattr(value, "cards"):  # astropy.io.fits, not imported here
        return f"Header({len(value)} cards)"
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return _short_sequence(value)
    text = repr(value)
    return text if "\n" not in text and len(text) <= _WIDTH else f"<{type(value).__name__}>"


def _short_sequence(value: Sequence[Any]) -> str:
    """``(1, 2.5)`` for a few scalars, ``(4..22)`` for a run of integers, ``(4 PairEstimate)`` for more."""
    brackets = "[]" if isinstance(value, list) else "()"
    if len(value) > 2 and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value):
        if all(b - a == 1 for a, b in itertools.pairwise(value)):  # Noll indices, mostly
            return f"{brackets[0]}{value[0]}..{value[-1]}{brackets[1]}"
    scalar = all(
        isinstance(v, bool | int | float | str | np.integer | np.floating) or v is None for v in value
    )
    if scalar and len(value) <= _ITEMS:
        inner = ", ".join(short(v) for v in value)
        return f"{brackets[0]}{inner}{',' if len(value) == 1 and brackets == '()' else ''}{brackets[1]}"
    names = sorted({type(v).__name__ for v in value})
    return f"{brackets[0]}{len(value)} {'|'.join(names)}{brackets[1]}"


def summary_repr(obj: Any, names: Sequence[str] | None = None, extra: Mapping[str, str] | None = None) -> str:
    """``ClassName(field=value, ...)`` with every value shortened by `short`.

    Parameters
    ----------
    obj : `object`
        A dataclass instance (or any object, when ``names`` lists its attributes).
    names : sequence of `str`, optional
        Attributes to show, in order; default every dataclass field whose value is not its default.
    extra : mapping of `str` to `str`, optional
        Further ``name=text`` items, already formatted, shown after the fields (for derived summaries such
        as a result's Zernikes in nm).

    Returns
    -------
    text : `str`
        The summary, on one line.
    """
    if names is None:
        names = [
            f.name for f in dataclasses.fields(obj) if f.repr and not _at_default(f, getattr(obj, f.name))
        ]
    items = [f"{name}={short(getattr(obj, name))}" for name in names]
    items += [f"{name}={text}" for name, text in (extra or {}).items()]
    return f"{type(obj).__name__}({', '.join(items)})"


def _at_default(field: dataclasses.Field, value: Any) -> bool:
    """Whether a field holds its default (compared only for plain values: arrays are always shown)."""
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        return False
    if value is default:
        return True
    plain = (bool, int, float, str, tuple, enum.Enum, type(None))
    if not isinstance(value, plain) or not isinstance(default, plain):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError):  # a tuple holding arrays
        return False


def zernikes_nm(noll: Sequence[int], um: Sequence[float] | np.ndarray, low: int = 4, high: int = 11) -> str:
    """``{4: -213.5, 5: -3.0, ...}``: the terms from Noll ``low`` to ``high`` of an estimate, in nm.

    Parameters
    ----------
    noll : sequence of `int`
        Noll indices of ``um``.
    um : sequence of `float`
        Coefficients, micrometres.
    low, high : `int`
        Noll range shown (inclusive); the terms not estimated are left out.

    Returns
    -------
    text : `str`
        The terms with one decimal, in nm.
    """
    terms = [f"{int(j)}: {1000 * float(v):.1f}" for j, v in zip(noll, um, strict=True) if low <= j <= high]
    return "{" + ", ".join(terms) + "}"
