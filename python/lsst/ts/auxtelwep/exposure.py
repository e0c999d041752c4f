"""LATISS raw files and the `Exposure` type that every stage after ISR works on.

Raw format (obs_lsst cameraHeader.yaml / latiss RXX.yaml, FACTS.md section 3): a primary HDU with the
observation header and 16 image HDUs, one per amplifier, each 576 x 2048 (NAXIS1 x NAXIS2). HDUs 1-8 are
``Segment10``..``Segment17`` (amplifiers C10..C17), HDUs 9-16 are ``Segment07``..``Segment00``.
In an amplifier array ``amp[row, col]`` (0-based): serial prescan cols 0-2, data cols 3-511 and rows 0-1999,
serial overscan cols 512-575, parallel overscan rows 2000-2047.

Assembly uses the cameraGeom geometry, not the header's DETSEC (wrong in y, DM-36115): amplifier C1i fills
rows 2000-3999 and cols 509*i .. 509*i+508 of the 4000 x 4072 image, flipped in x and y; C0i fills rows
0-1999 of the same columns, flipped in x only.

The celestial WCS convention (`boresight_wcs`): TAN projection about the boresight pixel, with the sky
position angle ``ROTPA`` measured from north through east to the +row axis, and east toward -col when
``ROTPA`` is 0 (sky parity, as seen looking up).
"""

from __future__ import annotations

import dataclasses
import enum
import gzip
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning
from numpy.typing import NDArray

from .errors import RawFormatError, check_type
from .guarded_warnings import guarded_warnings
from .headers import header_number, parse_header
from .instrument import BORESIGHT_PIXEL, DETECTOR_SHAPE
from .intake import FITS_READ_ERRORS, fits_error_text, header_warnings_named, name_warnings, refuse_non_file
from .reprs import summary_repr

__all__ = [
    "AMP_DATA_SHAPE",
    "AMP_NAMES",
    "AMP_RAW_SHAPE",
    "AMP_RAW_SHAPES",
    "DATA_COLS",
    "DATA_ROWS",
    "PARALLEL_OVERSCAN_ROWS",
    "SERIAL_OVERSCAN_COLS",
    "AmpGeometry",
    "Exposure",
    "MaskBit",
    "RawImage",
    "amp_geometry",
    "assemble",
    "boresight_wcs",
    "camera_angle_from_header",
    "check_exposure",
    "disassemble",
    "read_exposure",
    "read_header",
    "read_raw",
    "wcs_from_header",
    "write_exposure",
]

AMP_RAW_SHAPE = (2048, 576)
"""Shape of one amplifier HDU, ``(rows, cols)``, with the 64-column serial overscan used since Nov 2022."""
AMP_RAW_SHAPES = (AMP_RAW_SHAPE, (2048, 544))
"""Accepted amplifier HDU shapes: 64 or (before Nov 2022) 32 serial overscan columns."""
DATA_ROWS = slice(0, 2000)
DATA_COLS = slice(3, 512)
SERIAL_OVERSCAN_COLS = slice(512, 576)
PARALLEL_OVERSCAN_ROWS = slice(2000, 2048)
AMP_DATA_SHAPE = (2000, 509)
"""Shape of an amplifier's imaging section, ``(rows, cols)``."""

AMP_NAMES = tuple([f"C1{i}" for i in range(8)] + [f"C0{i}" for i in range(7, -1, -1)])
"""Amplifier names in HDU order (HDU 1 is ``AMP_NAMES[0]``)."""


class MaskBit(enum.IntFlag):
    """Bits of `Exposure.mask`."""

    BAD = 1
    """Known defect (from the defects list)."""
    SAT = 2
    """Saturated in the raw."""
    CR = 4
    """Cosmic ray."""
    INTRP = 8
    """Value interpolated over."""
    EDGE = 16
    """Too close to the edge of the detector."""
    NO_DATA = 32
    """No valid data (NaN in input)."""


@dataclasses.dataclass(frozen=True)
class AmpGeometry:
    """Where an amplifier's imaging section lands in the assembled frame.

    Attributes
    ----------
    name : `str`
        Amplifier name, ``C00``..``C17``.
    hdu : `int`
        Index of its HDU in the raw file (1-16).
    rows, cols : `slice`
        Rows and columns it fills in the assembled 4000 x 4072 image.
    flip_x, flip_y : `bool`
        Whether the data section is flipped in x (columns) or y (rows) on assembly.
    """

    name: str
    hdu: int
    rows: slice
    cols: slice
    flip_x: bool
    flip_y: bool

    def to_assembled(self, data: NDArray) -> NDArray:
        """Orient an amplifier's (2000, 509) data section as it sits in the assembled frame.

        Parameters
        ----------
        data : `numpy.ndarray`, shape (2000, 509)
            The data section as read out, ``[row, col]``.
        """
        if self.flip_x:
            data = data[:, ::-1]
        if self.flip_y:
            data = data[::-1, :]
        return data


def amp_geometry() -> tuple[AmpGeometry, ...]:
    """Return the geometry of the 16 amplifiers, in HDU order."""
    geoms = []
    for hdu, name in enumerate(AMP_NAMES, start=1):
        half, index = int(name[1]), int(name[2])
        top = half == 1
        geoms.append(
            AmpGeometry(
                name=name,
                hdu=hdu,
                rows=slice(2000, 4000) if top else slice(0, 2000),
                cols=slice(509 * index, 509 * (index + 1)),
                flip_x=True,
                flip_y=top,
            )
        )
    return tuple(geoms)


_GEOMETRY = amp_geometry()


def assemble(amp_data: Mapping[str, NDArray]) -> NDArray:
    """Assemble 16 amplifier data sections into the 4000 x 4072 image.

    Parameters
    ----------
    amp_data : mapping of `str` to `numpy.ndarray`
        Data section (shape (2000, 509), readout order) of each amplifier by name.

    Returns
    -------
    image : `numpy.ndarray`, shape (4000, 4072)
        Assembled image, same dtype as the inputs.
    """
    first = next(iter(amp_data.values()))
    image = np.empty(DETECTOR_SHAPE, dtype=first.dtype)
    for geom in _GEOMETRY:
        image[geom.rows, geom.cols] = geom.to_assembled(amp_data[geom.name])
    return image


def disassemble(image: NDArray) -> dict[str, NDArray]:
    """Split an assembled image into amplifier data sections in readout order (inverse of `assemble`).

    Parameters
    ----------
    image : `numpy.ndarray`, shape (4000, 4072)
        An assembled LATISS image.

    Returns
    -------
    sections : `dict` of `str` to `numpy.ndarray`
        Each amplifier's data section by name (``C00``..``C17``), in readout order.

    Raises
    ------
    RawFormatError
        If the image is not of the assembled shape.
    """
    if image.shape != DETECTOR_SHAPE:
        raise RawFormatError(
            f"an assembled LATISS image is {DETECTOR_SHAPE}, got {image.shape}",
            value=image.shape,
            allowed=DETECTOR_SHAPE,
        )
    # Flips are their own inverse, so orienting the assembled block again restores readout order.
    return {geom.name: geom.to_assembled(image[geom.rows, geom.cols]) for geom in _GEOMETRY}


@dataclasses.dataclass(frozen=True)
class RawImage:
    """A LATISS raw file as read: the primary header and the 16 amplifier arrays.

    Attributes
    ----------
    path : `str`
        Where it was read from (for messages).
    header : `astropy.io.fits.Header`
        Primary header.
    amps : `dict` of `str` to `numpy.ndarray`
        Full amplifier arrays (2048, 576), float32, by amplifier name.
    """

    path: str
    header: fits.Header
    amps: dict[str, NDArray]

    @property
    def obsid(self) -> str:
        """The OBSID header value (or the file name when absent)."""
        return str(self.header.get("OBSID", Path(self.path).stem))


def _open_fits(path: str | Path) -> fits.HDUList:
    path = Path(path)
    refuse_non_file(path)
    with guarded_warnings(record=True) as caught:
        # Opened here: astropy leaves the file open when a damaged header makes it fail (closed by hdul).
        stream = path.open("rb")
        try:
            hdul = fits.open(stream, memmap=False, lazy_load_hdus=False)
        except FITS_READ_ERRORS as exc:
            stream.close()
            raise RawFormatError(
                f"{path}: not a readable FITS file ({fits_error_text(exc)})", value=str(path)
            ) from exc
    # astropy drops the HDUs of a file cut short with only a warning: make it an error that says so.
    size = path.stat().st_size
    if any("truncated" in str(w.message).lower() for w in caught):
        hdul.close()
        raise RawFormatError(
            f"{path}: the file is truncated ({size} bytes); it was cut short while being written or copied",
            value=str(path),
        )
    # Cut inside an HDU's header, the file reads as its complete HDUs followed by bytes astropy skips
    # with a warning ("extra bytes after the last HDU"): compare the size with what the headers span.
    if not _is_gzip(path):
        last = hdul[-1]  # a non-standard HDU (SIMPLE = F) has no file layout to compare with
        info = last.fileinfo() if hasattr(last, "fileinfo") else None
        end = info["datLoc"] + info["datSpan"] if info else size
        if size > end:
            hdul.close()
            raise RawFormatError(
                f"{path}: the file is truncated or corrupt: {size - end} bytes after its {len(hdul)} "
                f"complete HDU(s) (ending at byte {end}) do not make an HDU",
                value=str(path),
            )
    name_warnings(path, caught)  # a damaged header card, say: astropy's own words omit the file
    return hdul


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as stream:
        return stream.read(2) == b"\x1f\x8b"


def _gzip_problem(path: Path) -> str:
    """Why a gzip file reads short ('' when its stream is whole): astropy stops silently at a cut."""
    if not _is_gzip(path):
        return ""
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass
    except (OSError, EOFError) as exc:
        return f"; the gzip stream is damaged or truncated ({exc})"
    return ""


def _not_an_amplifier(hdul: fits.HDUList, extname: str) -> str:
    """What stands where amplifier HDU ``extname`` should be ('' when nothing of that name)."""
    for hdu in hdul[1:]:
        # astropy writes a table's EXTNAME in upper case.
        if str(hdu.header.get("EXTNAME", "")).strip().upper() == extname.upper():
            if not hdu.is_image:
                return f"{extname} is a {type(hdu).__name__}, not an image"
            naxis = hdu.header.get("NAXIS", 0)
            shape = tuple(hdu.header.get(f"NAXIS{i}", "?") for i in range(naxis, 0, -1))
            return f"{extname} is a {naxis}-D image of shape {shape}, not a 2-D amplifier image"
    return ""


def read_header(path: str | Path) -> fits.Header:
    """Read the primary header of a raw or exposure, checking the file's structure but not its pixels.

    Every HDU's header is read and the file's length compared with what they span, so a file cut short
    is refused as it would be by `read_raw`; the header's values are checked (`headers.parse_header`).

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        FITS file.

    Returns
    -------
    header : `astropy.io.fits.Header`
        A copy of the primary header.

    Raises
    ------
    RawFormatError
        If the file is missing, not FITS, truncated, or its header holds a malformed value.
    """
    hdul = _open_fits(path)
    try:
        with header_warnings_named(path):
            header = hdul[0].header.copy()
            _check_header(header, path)
    finally:
        hdul.close()
    return header


def read_raw(path: str | Path) -> RawImage:
    """Read and check a LATISS raw file.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        Multi-extension FITS file in the format of the module docstring (RICE-compressed HDUs accepted).

    Returns
    -------
    raw : `RawImage`

    Raises
    ------
    RawFormatError
        If the file is missing, corrupt or truncated, lacks an amplifier HDU, or has an HDU of the
        wrong shape.
    """
    hdul = _open_fits(path)
    with header_warnings_named(path):
        try:
            header = hdul[0].header.copy()
            images = [h for h in hdul[1:] if h.is_image and h.header.get("NAXIS", 0) == 2]
            by_name = {str(h.header.get("EXTNAME", "")).strip(): h for h in images}
            amps: dict[str, NDArray] = {}
            for geom in _GEOMETRY:
                extname = f"Segment{geom.name[1:]}"
                hdu = by_name.get(extname)
                if hdu is None and len(images) == len(_GEOMETRY) and not any(by_name):
                    hdu = images[geom.hdu - 1]
                if hdu is None:
                    instead = _not_an_amplifier(hdul, extname)
                    if instead:
                        raise RawFormatError(f"{path}: HDU {instead}", value=extname)
                    segments = sum(name.startswith("Segment") for name in by_name)
                    if len(hdul) == 1:
                        # A primary HDU alone: a raw cut short after it, or a file that is not a raw.
                        hint = "; only a primary HDU: a raw cut short after its primary header, or not a raw"
                    elif not segments:
                        hint = "; no amplifier segment at all: an image ISR'd already?"
                    else:
                        hint = _gzip_problem(Path(path))
                    raise RawFormatError(
                        f"{path}: missing amplifier HDU {extname} ({len(images)} image HDUs found){hint}",
                        value=extname,
                    )
                try:
                    data = hdu.data
                except FITS_READ_ERRORS as exc:
                    raise RawFormatError(
                        f"{path}: HDU {extname} is unreadable or truncated ({fits_error_text(exc)})",
                        value=extname,
                    ) from exc
                if data is None or data.shape not in AMP_RAW_SHAPES:
                    shape = None if data is None else data.shape
                    raise RawFormatError(
                        f"{path}: HDU {extname} has shape {shape}, expected one of {AMP_RAW_SHAPES}",
                        value=shape,
                        allowed=AMP_RAW_SHAPES,
                    )
                amps[geom.name] = np.asarray(data, dtype=np.float32)
            _check_header(header, path)
        finally:
            hdul.close()
    return RawImage(path=str(path), header=header, amps=amps)


@dataclasses.dataclass(frozen=True)
class Exposure:
    """A calibrated LATISS image.

    Attributes
    ----------
    image : `numpy.ndarray`, shape (4000, 4072) for a full frame
        Pixel values, float32, in ``units``; ``image[row, col]``, 0-based.
    mask : `numpy.ndarray` of uint16, same shape
        `MaskBit` flags per pixel.
    variance : `numpy.ndarray` or `None`
        Per-pixel variance in ``units`` squared, when computed.
    header : `astropy.io.fits.Header`
        The raw's primary header (OBSID, FOCUSZ, RA, DEC, ...).
    wcs : `astropy.wcs.WCS` or `None`
        Celestial WCS of the image (0-based pixel origin in `astropy` calls with origin 0), if known.
    units : `str`
        ``"adu"`` or ``"electron"``.
    """

    image: NDArray[np.float32]
    mask: NDArray[np.uint16]
    header: fits.Header
    wcs: WCS | None = None
    variance: NDArray[np.float32] | None = None
    units: str = "adu"

    def __post_init__(self) -> None:
        # A plane of another shape was used pixel for pixel against the image, or failed far from here.
        for name, plane in (("mask", self.mask), ("variance", self.variance)):
            if plane is not None and np.shape(plane) != np.shape(self.image):
                raise RawFormatError(
                    f"{self.obsid}: its {name} plane has shape {np.shape(plane)}, the image "
                    f"{np.shape(self.image)}",
                    value=np.shape(plane),
                )

    def __repr__(self) -> str:
        """OBSID, arrays as their shape and dtype, the WCS and header by name (`reprs.summary_repr`)."""
        return summary_repr(self, ("obsid", "image", "mask", "variance", "units", "wcs", "header"))

    @property
    def obsid(self) -> str:
        """The OBSID header value, or ``"unknown"``."""
        return str(self.header.get("OBSID", "unknown"))

    def with_image(self, image: NDArray) -> Exposure:
        """Return a copy with another pixel array (same shape).

        Parameters
        ----------
        image : `numpy.ndarray`
            New pixels, same shape as ``image``.

        Raises
        ------
        RawFormatError
            If the shape differs.
        """
        if image.shape != self.image.shape:
            raise RawFormatError(f"image shape {image.shape} differs from {self.image.shape}")
        return dataclasses.replace(self, image=image)


def check_exposure(name: str, value: object) -> None:
    """Refuse an image argument that is not an `Exposure` (a raw, an array, a path...).

    Parameters
    ----------
    name : `str`
        Name of the argument, for the message.
    value : `object`
        The argument.

    Raises
    ------
    InputError
        Naming the argument, what it is and how to make an `Exposure`.
    """
    check_type(
        name,
        value,
        Exposure,
        hint="an ISR'd image: isr.run_isr(exposure.read_raw(path), ...) or exposure.read_exposure(path)",
    )


def wcs_from_header(header: fits.Header, *, where: str | None = None) -> WCS | None:
    """Return the celestial WCS described by a header, or `None` if it has none.

    Parameters
    ----------
    header : `astropy.io.fits.Header`
        A header; it describes a WCS when ``CTYPE1`` and ``CTYPE2`` name a celestial projection (keys
        without a value, as in LATISS raws since 2023, are no WCS).
    where : `str`, optional
        The file the header is of, for messages (default: its OBSID).

    Returns
    -------
    wcs : `astropy.wcs.WCS` or `None`
        The two-axis celestial WCS, or `None`.

    Raises
    ------
    RawFormatError
        If the header's WCS keys do not make a WCS (unknown projection, singular matrix, a reference
        point off the sphere...).
    """
    # Since 2023 the header service writes the WCS keys of LATISS raws without values: no WCS.
    if not all(isinstance(header.get(key), str) and header[key].strip() for key in ("CTYPE1", "CTYPE2")):
        return None
    try:
        # astropy re-parses the header's cards here: an unreadable one was named when the file was read.
        with guarded_warnings(ignore=(FITSFixedWarning, AstropyUserWarning)):
            wcs = WCS(header, naxis=2, relax=True)
            # Checks the keys together now (wcslib raises on the first use otherwise, far from the file).
            wcs.wcs.set()
    # wcslib's errors (SingularMatrixError, InvalidTransformError...) derive from ValueError; a key of the
    # wrong type gives TypeError, KeyError or, for a blank one, AttributeError: all mean the same here.
    except Exception as exc:
        where = where or f"OBSID={header.get('OBSID')}"
        # wcslib's messages interleave "ERROR n in f() at line ... of file ..." with the reasons: keep those.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = "; ".join(line for line in lines if not line.startswith("ERROR")) or "; ".join(lines)
        raise RawFormatError(
            f"{where}: the header's WCS (CTYPE1={header.get('CTYPE1')!r}, CRVAL={header.get('CRVAL1')!r}, "
            f"{header.get('CRVAL2')!r}) is not usable: {detail}",
            value=where,
        ) from exc
    return wcs if wcs.has_celestial else None


def _check_header(header: fits.Header, path: str | Path) -> None:
    """Refuse a file whose primary header holds a malformed value or WCS, naming the file and the key.

    Checked when the file is read, so that a bad value is named with its file rather than surfacing later
    as a library's error deep in detection or the correction.
    """
    parse_header(header, where=str(path))
    wcs_from_header(header, where=str(path))


def boresight_wcs(
    ra_deg: float,
    dec_deg: float,
    rotpa_deg: float,
    *,
    scale_arcsec_per_px: float,
    crpix0: tuple[float, float] = BORESIGHT_PIXEL,
) -> WCS:
    """Build the TAN WCS of an exposure from its boresight and rotation.

    Parameters
    ----------
    ra_deg, dec_deg : `float`
        Boresight (field angle 0, 0) position, degrees.
    rotpa_deg : `float`
        Position angle of the +row axis, degrees from north through east.
    scale_arcsec_per_px : `float`
        Plate scale, arcsec per pixel.
    crpix0 : `tuple` of `float`
        0-based ``(col, row)`` of the boresight pixel.

    Returns
    -------
    wcs : `astropy.wcs.WCS`
        Two-axis RA---TAN / DEC--TAN WCS (FITS convention inside, 1-based CRPIX).
    """
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra_deg, dec_deg]
    wcs.wcs.crpix = [crpix0[0] + 1.0, crpix0[1] + 1.0]
    theta = np.deg2rad(rotpa_deg)
    scale = scale_arcsec_per_px / 3600.0
    wcs.wcs.cd = scale * np.array([[-np.cos(theta), np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.set()
    return wcs


_PLANES = ("MASK", "VARIANCE")  # extensions of an ISR'd image besides the image itself


def read_exposure(path: str | Path) -> Exposure:
    """Read an image written by `write_exposure` (or any single-image FITS, for ``--no-isr``).

    The image is the first HDU with 2-D data; optional ``MASK`` and ``VARIANCE`` extensions are used when
    present. The primary header supplies the observation keys and the WCS.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        FITS file (``.fz`` tile-compressed ones too).

    Returns
    -------
    exposure : `Exposure`
        The image (float32), its mask (zeros without ``MASK``), variance (`None` without ``VARIANCE``),
        the primary header, its WCS (`None` without one) and units (``BUNIT`` starting with "electron":
        electrons, else adu).

    Raises
    ------
    RawFormatError
        If the file is missing, unreadable, has no 2-D image, or has several (a raw's amplifiers).
    """
    hdul = _open_fits(path)
    try:
        images = [h for h in hdul if h.is_image and h.header.get("NAXIS", 0) == 2]
        named = {str(h.header.get("EXTNAME", "")).upper(): h for h in images}
        candidates = [h for h in images if str(h.header.get("EXTNAME", "")).upper() not in _PLANES]
        if not candidates:
            raise RawFormatError(f"{path}: no 2-D image HDU", value=str(path))
        if len(candidates) > 1:
            # A raw's amplifier segments: taking the first would read one amplifier as the whole image.
            names = [str(h.header.get("EXTNAME", "?")) for h in candidates]
            raise RawFormatError(
                f"{path}: {len(candidates)} image HDUs ({names[0]} ... {names[-1]}), as in a raw, not one "
                "ISR'd image; give it to the ISR (`auxtelwep process` without --no-isr, or `auxtelwep isr`)",
                value=str(path),
            )
        science = candidates[0]
        try:
            image = np.asarray(science.data, dtype=np.float32)
        except FITS_READ_ERRORS as exc:
            raise RawFormatError(
                f"{path}: image HDU is unreadable or truncated ({fits_error_text(exc)})", value=str(path)
            ) from exc
        header = hdul[0].header.copy()
        if science is not hdul[0]:
            for key in ("BUNIT",):
                if key in science.header and key not in header:
                    header[key] = science.header[key]
        mask = (
            np.asarray(named["MASK"].data, dtype=np.uint16)
            if "MASK" in named
            else np.zeros(image.shape, dtype=np.uint16)
        )
        variance = np.asarray(named["VARIANCE"].data, dtype=np.float32) if "VARIANCE" in named else None
    finally:
        hdul.close()
    units = "electron" if str(header.get("BUNIT", "adu")).lower().startswith("electron") else "adu"
    with header_warnings_named(path):
        _check_header(header, path)
    try:
        return Exposure(
            image=image,
            mask=mask,
            header=header,
            wcs=wcs_from_header(header, where=str(path)),
            variance=variance,
            units=units,
        )
    except RawFormatError as exc:
        raise RawFormatError(f"{path}: {exc}", value=str(path)) from exc


def write_exposure(exposure: Exposure, path: str | Path) -> None:
    """Write an exposure: image in the primary HDU, then ``MASK`` and (if any) ``VARIANCE`` extensions.

    A name ending in ``.fz`` is written tile-compressed, losslessly (GZIP without quantization for the
    float planes, RICE for the mask): the header in an empty primary HDU, then ``IMAGE``, ``MASK`` and
    ``VARIANCE`` (read back by `read_exposure` as they were).

    Parameters
    ----------
    exposure : `Exposure`
        The exposure; its header is written with ``BUNIT`` set to its units and its WCS's keys.
    path : `str` or `pathlib.Path`
        File to write (replaced if it exists).
    """
    header = exposure.header.copy()
    header["BUNIT"] = exposure.units
    if exposure.wcs is not None:
        header.update(exposure.wcs.to_header(relax=True))
    hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU]
    if str(path).endswith(".fz"):

        def compressed(data: NDArray, name: str) -> fits.CompImageHDU:
            if data.dtype.kind == "f":
                return fits.CompImageHDU(data, name=name, compression_type="GZIP_2", quantize_level=0.0)
            return fits.CompImageHDU(data, name=name, compression_type="RICE_1")

        hdus = [fits.PrimaryHDU(header=header), compressed(exposure.image, "IMAGE")]
        hdus.append(compressed(exposure.mask, "MASK"))
        if exposure.variance is not None:
            hdus.append(compressed(exposure.variance, "VARIANCE"))
    else:
        hdus = [
            fits.PrimaryHDU(data=exposure.image, header=header),
            fits.ImageHDU(data=exposure.mask, name="MASK"),
        ]
        if exposure.variance is not None:
            hdus.append(fits.ImageHDU(data=exposure.variance, name="VARIANCE"))
    fits.HDUList(hdus).writeto(path, overwrite=True)


def camera_angle_from_header(header: fits.Header) -> float | None:
    """Camera angle relative to the hexapod frame, degrees, from header ``CAMANGLE``.

    Real LATISS raws do not carry it (the simulator writes it): the angle is the mount's elevation minus its
    Nasmyth-2 rotator angle (FACTS.md section 2), which the CSC records from ATMCS for each image.

    Parameters
    ----------
    header : `astropy.io.fits.Header`
        Primary header of an exposure.

    Returns
    -------
    angle : `float` or `None`
        Degrees, or None when the header has no ``CAMANGLE``.

    Raises
    ------
    RawFormatError
        If ``CAMANGLE`` is there but not a finite number of degrees in [-360, 360]
        (`headers.header_number`).
    """
    return header_number(header, "CAMANGLE", where=f"OBSID={header.get('OBSID')}")
