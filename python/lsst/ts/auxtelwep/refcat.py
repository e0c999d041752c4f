"""Reference catalogs for donut detection and astrometry.

A reference catalog is any table astropy can read (ECSV, FITS, Parquet; Parquet needs ``pyarrow``) with
positions in ICRS right ascension and declination and one magnitude column:

- position columns: ``ra``/``dec`` (or ``ra_deg``/``dec_deg``, ``coord_ra``/``coord_dec``), matched without
  regard to case. Degrees are assumed unless the column carries an angle unit (``rad`` is converted).
- magnitude column: ``mag``, else ``phot_g_mean_mag`` (Gaia G), unless the caller names one.

Rows with a non-finite position or magnitude are dropped (and counted in the log); a catalog with no row
left is refused. The result, `RefCatalog`, is an immutable value with read-only arrays.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import Table
from numpy.typing import ArrayLike, NDArray

from .errors import CatalogError

__all__ = ["DEC_COLUMNS", "MAG_COLUMNS", "RA_COLUMNS", "RefCatalog", "load_refcat"]

_log = logging.getLogger(__name__)

RA_COLUMNS = ("ra", "ra_deg", "coord_ra")
"""Accepted names of the right-ascension column, in order of preference (case-insensitive)."""
DEC_COLUMNS = ("dec", "dec_deg", "coord_dec")
"""Accepted names of the declination column, in order of preference (case-insensitive)."""
MAG_COLUMNS = ("mag", "phot_g_mean_mag")
"""Accepted names of the magnitude column when none is given, in order of preference (case-insensitive)."""

_FORMATS = {
    ".ecsv": "ascii.ecsv",
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def _readonly(values: ArrayLike) -> NDArray[np.float64]:
    arr = np.array(values, dtype=float).reshape(-1)
    arr.setflags(write=False)
    return arr


@dataclasses.dataclass(frozen=True, eq=False)
class RefCatalog:
    """Stars of a reference catalog: positions and magnitudes.

    Attributes
    ----------
    ra_deg, dec_deg : `numpy.ndarray`, shape (n,)
        ICRS position, degrees (read-only).
    mag : `numpy.ndarray`, shape (n,)
        Magnitude in the catalog's band (read-only).
    source : `str`
        Where the catalog came from (a path, or ``"arrays"``), for messages.
    mag_column : `str`
        Name of the magnitude column that was used.
    """

    ra_deg: NDArray[np.float64]
    dec_deg: NDArray[np.float64]
    mag: NDArray[np.float64]
    source: str = "arrays"
    mag_column: str = "mag"

    def __post_init__(self) -> None:
        for name in ("ra_deg", "dec_deg", "mag"):
            object.__setattr__(self, name, _readonly(getattr(self, name)))
        sizes = {self.ra_deg.size, self.dec_deg.size, self.mag.size}
        if len(sizes) != 1:
            raise CatalogError(
                f"{self.source}: ra, dec and mag have different lengths "
                f"({self.ra_deg.size}, {self.dec_deg.size}, {self.mag.size})",
                value=(self.ra_deg.size, self.dec_deg.size, self.mag.size),
            )

    @classmethod
    def from_arrays(
        cls, ra_deg: ArrayLike, dec_deg: ArrayLike, mag: ArrayLike, *, source: str = "arrays"
    ) -> RefCatalog:
        """Build a catalog from arrays (degrees, degrees, magnitudes).

        Parameters
        ----------
        ra_deg, dec_deg : array-like
            ICRS positions, degrees.
        mag : array-like
            Magnitudes.
        source : `str`, optional
            Name of the catalog, for messages.

        Raises
        ------
        CatalogError
            If the arrays have different lengths.
        """
        return cls(ra_deg=ra_deg, dec_deg=dec_deg, mag=mag, source=source)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self.ra_deg.size)

    def __repr__(self) -> str:
        return f"RefCatalog(source={self.source!r}, n={len(self)}, mag_column={self.mag_column!r})"

    def subset(self, index: ArrayLike) -> RefCatalog:
        """Return the rows selected by ``index`` (boolean mask or integer indices).

        Parameters
        ----------
        index : array-like
            Boolean mask or integer indices of the rows to keep.
        """
        idx = np.asarray(index)
        return dataclasses.replace(
            self, ra_deg=self.ra_deg[idx], dec_deg=self.dec_deg[idx], mag=self.mag[idx]
        )

    def to_table(self) -> Table:
        """Return the catalog as an astropy table with columns ``ra``, ``dec`` (deg) and ``mag``."""
        table = Table(
            {"ra": self.ra_deg * u.deg, "dec": self.dec_deg * u.deg, "mag": self.mag},
            meta={"SOURCE": self.source, "MAGCOL": self.mag_column},
        )
        return table

    def write(self, path: str | Path, *, overwrite: bool = True) -> None:
        """Write the catalog in the format named by the file extension (ECSV, FITS, Parquet).

        Parameters
        ----------
        path : `str` or `pathlib.Path`
            Output file (``.ecsv``, ``.fits`` or ``.parquet``...).
        overwrite : `bool`, optional
            Replace an existing file.

        Raises
        ------
        CatalogError
            If the extension names no known format.
        ImportError
            If the format needs an optional package that is missing.
        """
        fmt = _format_of(Path(path))
        try:
            self.to_table().write(path, format=fmt, overwrite=overwrite)
        except ImportError as exc:
            raise ImportError(f"writing {path} as {fmt} needs an optional package: {exc}") from exc


def _read_parquet(path: Path) -> Table:
    # astropy's Parquet reader needs pandas too; pyarrow alone is enough for a flat catalog.
    import pyarrow.parquet

    return Table(pyarrow.parquet.read_table(path).to_pydict())


def _format_of(path: Path) -> str:
    name = path.name.lower()
    for ext, fmt in sorted(_FORMATS.items(), key=lambda item: -len(item[0])):
        if name.endswith(ext):
            return fmt
    raise CatalogError(
        f"{path}: unknown reference-catalog format (extension {path.suffix!r})",
        value=path.suffix,
        allowed=tuple(_FORMATS),
    )


def _find_column(table: Table, candidates: Sequence[str]) -> str | None:
    by_lower = {name.lower(): name for name in table.colnames}
    for name in candidates:
        if name.lower() in by_lower:
            return by_lower[name.lower()]
    return None


def _degrees(table: Table, name: str, path: Path) -> NDArray[np.float64]:
    column = table[name]
    unit = getattr(column, "unit", None)
    try:
        values = np.ma.filled(np.ma.asarray(column, dtype=float), np.nan)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"{path}: column {name!r} is not numeric ({exc})", value=name) from exc
    if unit is None:
        return values
    try:
        return (values * u.Unit(unit)).to_value(u.deg)
    except (u.UnitConversionError, ValueError) as exc:
        raise CatalogError(
            f"{path}: column {name!r} has unit {unit}, expected an angle (deg or rad)", value=str(unit)
        ) from exc


def load_refcat(path: str | Path, *, mag_column: str | None = None) -> RefCatalog:
    """Read a reference catalog.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        ECSV (``.ecsv``), FITS (``.fits``, ``.fit``, ``.fits.gz``) or Parquet (``.parquet``, ``.pq``) table.
    mag_column : `str`, optional
        Magnitude column to use; by default the first of `MAG_COLUMNS` present.

    Returns
    -------
    catalog : `RefCatalog`
        Stars with finite position and magnitude, in file order.

    Raises
    ------
    CatalogError
        If the file is missing, unreadable, of an unknown format, lacks a position or magnitude column,
        or has no usable row.
    ImportError
        If a Parquet file is given and ``pyarrow`` is not installed.
    """
    path = Path(path)
    if path.is_dir():
        raise CatalogError(f"{path}: is a directory, not a reference catalog file", value=str(path))
    fmt = _format_of(path)
    if not path.is_file():
        raise CatalogError(f"{path}: no such reference catalog", value=str(path))
    try:
        table = _read_parquet(path) if fmt == "parquet" else Table.read(path, format=fmt)
    except ImportError as exc:
        raise ImportError(f"reading {path} as {fmt} needs an optional package (pyarrow): {exc}") from exc
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CatalogError(f"{path}: not a readable {fmt} table ({exc})", value=str(path)) from exc

    ra_name = _find_column(table, RA_COLUMNS)
    dec_name = _find_column(table, DEC_COLUMNS)
    mag_name = _find_column(table, [mag_column] if mag_column else MAG_COLUMNS)
    missing = [
        f"{what} (one of {', '.join(names)})"
        for what, found, names in (
            ("right ascension", ra_name, RA_COLUMNS),
            ("declination", dec_name, DEC_COLUMNS),
            ("magnitude", mag_name, [mag_column] if mag_column else MAG_COLUMNS),
        )
        if found is None
    ]
    if missing:
        raise CatalogError(
            f"{path}: missing column(s) {'; '.join(missing)}; columns present: {table.colnames}",
            value=table.colnames,
        )
    ra_name, dec_name, mag_name = str(ra_name), str(dec_name), str(mag_name)
    ra = _degrees(table, ra_name, path)
    dec = _degrees(table, dec_name, path)
    mag = np.ma.filled(np.ma.asarray(table[mag_name], dtype=float), np.nan)
    good = np.isfinite(ra) & np.isfinite(dec) & np.isfinite(mag)
    if not good.all():
        _log.info("%s: dropped %d of %d rows with non-finite ra/dec/mag", path, (~good).sum(), good.size)
    if not good.any():
        raise CatalogError(
            f"{path}: no row with finite {ra_name}, {dec_name} and {mag_name}", value=len(table)
        )
    if np.any(np.abs(dec[good]) > 90.0):
        raise CatalogError(
            f"{path}: column {dec_name!r} has values beyond +-90 deg; give degrees or an angle unit",
            value=float(np.abs(dec[good]).max()),
        )
    return RefCatalog(
        ra_deg=np.mod(ra[good], 360.0),
        dec_deg=dec[good],
        mag=mag[good],
        source=str(path),
        mag_column=mag_name,
    )
