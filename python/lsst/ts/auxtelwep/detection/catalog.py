"""The result of detection: `DonutCatalog`, its `Donut` rows and the `Rejection` records.

Pixel positions are 0-based in the assembled frame, ``x`` = column and ``y`` = row (``image[y, x]``), and
refer to the centre of the donut on each defocal image: a star's intra and extra donuts sit at slightly
different places, so each has its own position. Fluxes are in the exposure's units (adu or electron),
field angles in degrees in batoid's frame (`AuxTel.pixel_to_field` of the mean of the two positions).

A catalog serialises to JSON (`DonutCatalog.to_json`, `DonutCatalog.from_json`) and to an ECSV table
(`DonutCatalog.to_table`, `DonutCatalog.write`) whose metadata carry the mode, the reason and the WCS.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from ..errors import InputError
from ..reprs import summary_repr

__all__ = ["Donut", "DonutCatalog", "Rejection"]


@dataclasses.dataclass(frozen=True)
class Donut:
    """One star seen as an intra- and an extra-focal donut.

    Attributes
    ----------
    intra_x, intra_y, extra_x, extra_y : `float`
        Donut centre on the intra- and extra-focal image, 0-based pixels (x = column, y = row).
    intra_flux, extra_flux : `float`
        Background-subtracted aperture flux, image units.
    intra_snr, extra_snr : `float`
        Aperture signal-to-noise ratio.
    field_x_deg, field_y_deg : `float`
        Field angle of the star (batoid frame), degrees.
    blended : `bool`
        Whether another source lies within the isolation distance and is not much fainter.
    blend_with : `tuple` of `int`
        Indices (in the catalog) of the donuts it blends with; empty if the neighbour was not kept.
    ref_index : `int` or `None`
        Row of the matched reference star, if any.
    ref_ra_deg, ref_dec_deg, ref_mag : `float` or `None`
        Position (deg) and magnitude of the matched reference star.
    """

    intra_x: float
    intra_y: float
    extra_x: float
    extra_y: float
    intra_flux: float
    extra_flux: float
    intra_snr: float
    extra_snr: float
    field_x_deg: float
    field_y_deg: float
    blended: bool = False
    blend_with: tuple[int, ...] = ()
    ref_index: int | None = None
    ref_ra_deg: float | None = None
    ref_dec_deg: float | None = None
    ref_mag: float | None = None

    @property
    def intra_xy(self) -> tuple[float, float]:
        """``(x, y)`` on the intra-focal image, pixels."""
        return (self.intra_x, self.intra_y)

    @property
    def extra_xy(self) -> tuple[float, float]:
        """``(x, y)`` on the extra-focal image, pixels."""
        return (self.extra_x, self.extra_y)


@dataclasses.dataclass(frozen=True)
class Rejection:
    """A candidate that was not kept, and why.

    Attributes
    ----------
    x, y : `float`
        Where it was (or was predicted), 0-based pixels on the image named by ``role``.
    reason : `str`
        Why it was rejected (``"saturated"``, ``"edge"``, ``"cosmic ray or defect"``, ...).
    role : `str`
        ``"intra"``, ``"extra"`` or ``"infocus"``.
    ref_index : `int` or `None`
        Reference-catalog row, when the candidate came from the catalog.
    """

    x: float
    y: float
    reason: str
    role: str = "intra"
    ref_index: int | None = None


def _wcs_to_json(wcs: WCS | None) -> dict[str, Any] | None:
    if wcs is None:
        return None
    header = wcs.to_header(relax=True)
    return {key: header[key] for key in header}


def _wcs_from_json(cards: dict[str, Any] | None) -> WCS | None:
    if not cards:
        return None
    return WCS(fits.Header(cards), naxis=2, relax=True)


_REQUIRED_FLOATS = frozenset(f.name for f in dataclasses.fields(Donut) if f.type == "float")


def _restore(name: str, value: Any) -> Any:
    """Undo `_clean` for one `Donut` field."""
    if name == "blend_with":
        return tuple(int(v) for v in value)
    if value is None and name in _REQUIRED_FLOATS:
        return math.nan
    return value


def _clean(value: Any) -> Any:
    """JSON has no NaN: store non-finite floats as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple | list):
        return [_clean(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class DonutCatalog:
    """Donuts found on a pair of defocal images, with how they were found.

    Attributes
    ----------
    donuts : `tuple` of `Donut`
        Kept donuts: unblended first, brightest first.
    mode : `str`
        Mode that produced them: ``"wcs"``, ``"refit"`` or ``"template"``.
    requested_mode : `str`
        Mode asked for in the configuration (``"auto"`` or a mode).
    reason : `str`
        Why this mode was used, including why earlier modes were not (one clause per mode tried).
    wcs : `astropy.wcs.WCS` or `None`
        The WCS the donuts were placed with: the intra image's WCS in mode ``wcs``, the WCS fitted on the
        in-focus image in mode ``refit``, `None` in mode ``template``.
    wcs_scatter_arcsec : `float` or `None`
        RMS residual of the fitted WCS over matched stars (mode ``refit``), arcsec.
    n_astrometry_matches : `int`
        Stars used in the WCS fit (0 unless mode ``refit``).
    offsets_px : `tuple` of `float`
        Common shift ``(dx_intra, dy_intra, dx_extra, dy_extra)`` found between the WCS prediction and the
        donuts on each image (modes ``wcs`` and ``refit``), or the extra-minus-intra offset twice in mode
        ``template``, pixels.
    rejected : `tuple` of `Rejection`
        Candidates that were dropped, with reasons.
    intra_obsid, extra_obsid : `str`
        OBSID of the two images.
    """

    donuts: tuple[Donut, ...]
    mode: str
    requested_mode: str
    reason: str
    wcs: WCS | None = None
    wcs_scatter_arcsec: float | None = None
    n_astrometry_matches: int = 0
    offsets_px: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    rejected: tuple[Rejection, ...] = ()
    intra_obsid: str = "unknown"
    extra_obsid: str = "unknown"

    def __repr__(self) -> str:
        """A one-line summary: the donuts counted, the WCS by name (`reprs.summary_repr`)."""
        return summary_repr(self)

    def __len__(self) -> int:
        return len(self.donuts)

    @property
    def unblended(self) -> tuple[Donut, ...]:
        """The donuts not flagged as blended."""
        return tuple(d for d in self.donuts if not d.blended)

    def positions(self, role: str) -> np.ndarray:
        """Donut centres on the ``"intra"`` or ``"extra"`` image, shape (n, 2), ``[x, y]`` pixels.

        Parameters
        ----------
        role : `str`
            ``"intra"`` or ``"extra"``.

        Raises
        ------
        InputError
            If ``role`` is neither.
        """
        if role not in ("intra", "extra"):
            raise InputError(f"role must be 'intra' or 'extra', got {role!r}", value=role)
        return np.array([[getattr(d, f"{role}_x"), getattr(d, f"{role}_y")] for d in self.donuts]).reshape(
            -1, 2
        )

    # --- serialisation ----------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "requested_mode": self.requested_mode,
            "reason": self.reason,
            "wcs": _wcs_to_json(self.wcs),
            "wcs_scatter_arcsec": _clean(self.wcs_scatter_arcsec),
            "n_astrometry_matches": self.n_astrometry_matches,
            "offsets_px": _clean(list(self.offsets_px)),
            "intra_obsid": self.intra_obsid,
            "extra_obsid": self.extra_obsid,
            "rejected": [_clean(dataclasses.astuple(r)) for r in self.rejected],
        }

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary (non-finite numbers become ``None``)."""
        out = self._meta()
        out["donuts"] = [{k: _clean(v) for k, v in dataclasses.asdict(d).items()} for d in self.donuts]
        return out

    def to_json(self, *, indent: int | None = 2) -> str:
        """Serialise to a JSON string.

        Parameters
        ----------
        indent : `int` or None, optional
            JSON indentation; None for one line.
        """
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DonutCatalog:
        """Inverse of `to_dict`.

        Parameters
        ----------
        data : `dict` [`str`, `object`]
            A dict made by `to_dict` (keys added since, such as ``offsets_px``, may be missing).

        Raises
        ------
        InputError
            If a required key is missing or a donut has unknown fields.
        """
        try:
            donuts = tuple(Donut(**{k: _restore(k, v) for k, v in row.items()}) for row in data["donuts"])
            rejected = tuple(Rejection(*row) for row in data.get("rejected", []))
            scatter = data.get("wcs_scatter_arcsec")
            return cls(
                donuts=donuts,
                mode=data["mode"],
                requested_mode=data["requested_mode"],
                reason=data["reason"],
                wcs=_wcs_from_json(data.get("wcs")),
                wcs_scatter_arcsec=None if scatter is None else float(scatter),
                n_astrometry_matches=int(data.get("n_astrometry_matches", 0)),
                offsets_px=tuple(
                    math.nan if v is None else float(v) for v in data.get("offsets_px", [0] * 4)
                ),
                rejected=rejected,
                intra_obsid=data.get("intra_obsid", "unknown"),
                extra_obsid=data.get("extra_obsid", "unknown"),
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"not a serialised DonutCatalog: {exc}", value=sorted(data)) from exc

    @classmethod
    def from_json(cls, text: str) -> DonutCatalog:
        """Inverse of `to_json`.

        Parameters
        ----------
        text : `str`
            JSON made by `to_json`.

        Raises
        ------
        InputError
            If the text is not JSON, or the JSON does not hold a serialised catalog.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not a donut catalog: the text is not JSON ({exc})") from exc
        return cls.from_dict(data)

    def to_table(self) -> Table:
        """Return the donuts as an astropy table (one row per donut); everything else goes in ``meta``."""
        names = [f.name for f in dataclasses.fields(Donut)]
        rows = [dataclasses.asdict(d) for d in self.donuts]
        columns: dict[str, Any] = {}
        for name in names:
            values = [r[name] for r in rows]
            if name == "blend_with":
                columns[name] = [",".join(str(i) for i in v) for v in values]
            elif name == "ref_index":
                columns[name] = np.array([-1 if v is None else v for v in values], dtype=int)
            elif name == "blended":
                columns[name] = np.array(values, dtype=bool)
            else:
                columns[name] = np.array([math.nan if v is None else v for v in values], dtype=float)
        table = Table(columns, names=names)
        table.meta.update(self._meta())
        table.meta["wcs"] = json.dumps(table.meta["wcs"])
        table.meta["rejected"] = json.dumps(table.meta["rejected"])
        return table

    def write(self, path: str | Path) -> None:
        """Write to ``.json`` or ``.ecsv`` (chosen by the extension).

        Parameters
        ----------
        path : `str` or `pathlib.Path`
            Output file, ending in ``.json`` or ``.ecsv``; overwritten.

        Raises
        ------
        InputError
            If the extension is neither.
        """
        path = Path(path)
        if path.suffix.lower() == ".json":
            path.write_text(self.to_json())
        elif path.suffix.lower() == ".ecsv":
            self.to_table().write(path, format="ascii.ecsv", overwrite=True)
        else:
            raise InputError(
                f"{path}: a donut catalog is written as .json or .ecsv",
                value=path.suffix,
                allowed=(".json", ".ecsv"),
            )

    @classmethod
    def read(cls, path: str | Path) -> DonutCatalog:
        """Read a catalog written by `write`.

        Parameters
        ----------
        path : `str` or `pathlib.Path`
            A ``.json`` or ``.ecsv`` catalog.

        Raises
        ------
        InputError
            If the extension is neither, or the content is not a serialised catalog.
        """
        path = Path(path)
        if path.suffix.lower() == ".json":
            try:
                return cls.from_json(path.read_text())
            except InputError as exc:
                raise InputError(f"{path}: {exc}", value=str(path)) from exc
        if path.suffix.lower() != ".ecsv":
            raise InputError(f"{path}: expected a .json or .ecsv donut catalog", value=path.suffix)
        table = Table.read(path, format="ascii.ecsv")
        meta = dict(table.meta)
        meta["wcs"] = json.loads(meta.get("wcs", "null"))
        meta["rejected"] = json.loads(meta.get("rejected", "[]"))
        donuts = []
        for row in table:
            values: dict[str, Any] = {}
            for name in table.colnames:
                value = row[name]
                if name == "blend_with":
                    values[name] = [int(v) for v in str(value).split(",") if v.strip() not in ("", "--")]
                elif name == "ref_index":
                    values[name] = None if int(value) < 0 else int(value)
                elif name == "blended":
                    values[name] = bool(value)
                else:
                    fv = float(value)
                    values[name] = None if (name.startswith("ref_") and not math.isfinite(fv)) else fv
            donuts.append(values)
        meta["donuts"] = donuts
        return cls.from_dict(meta)
