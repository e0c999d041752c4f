"""The detector half of the simulator: what the LATISS CCD and its electronics add to the incident electrons.

The chain, per pixel, in the order `electrons_to_amps` applies it::

    incident photo-electrons (assembled 4000 x 4072 frame)
      x pixel response (flat pattern, mean 1)          -> detected photo-electrons
      + dark current x DARKTIME, + hot columns          -> electrons in the well
      shot noise (Poisson; Gaussian above a threshold)  + cosmic-ray tracks
      / gain (per amplifier, e-/adu)                    -> signal in adu
      split into 16 amplifiers in readout order (`exposure.disassemble`)
      + bias: level per amp, row-dependent drift (data AND overscan columns), column pattern (data AND
        parallel overscan rows), static 2-D structure (data section only: only a bias frame removes it)
      + read noise (e- / gain)                          -> clip at saturation, round to integer adu

Units: electrons (e-) before the gain, adu after; dark current e-/s/px; times s. Assembled arrays are
``[row, col]`` in the frame of `lsst.ts.auxtelwep.exposure`; amplifier arrays are
``(2048, 3 + 509 + n_overscan)`` in readout order. Noise is drawn with the caller's
`numpy.random.Generator`, in float32.

The FITS layout written by `write_raw` is that of FACTS.md section 3 (see `lsst.ts.auxtelwep.exposure`).
The header DETSEC keys reproduce the real files' quirk (x flip only, DM-36115); readers use the cameraGeom
geometry, never DETSEC.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np
from astropy.io import fits
from astropy.table import Table
from numpy.typing import NDArray

from ..errors import InputError
from ..exposure import AMP_NAMES, DATA_COLS, DATA_ROWS, amp_geometry, disassemble
from ..instrument import DETECTOR_SHAPE

__all__ = [
    "DEFAULT_SATURATION_ADU",
    "DetectorSignature",
    "default_header",
    "electrons_to_amps",
    "write_calibrations",
    "write_raw",
]

_log = logging.getLogger(__name__)

DEFAULT_SATURATION_ADU = 120000.0
"""LATISS saturation level, adu (obs_lsst)."""
_PRESCAN = 3
_N_ROWS = 2048
_GEOMETRY = amp_geometry()


def _frozen_mapping(values: Mapping[str, float], what: str) -> Mapping[str, float]:
    missing = sorted(set(AMP_NAMES) - set(values))
    if missing:
        raise InputError(
            f"DetectorSignature.{what} lacks amplifiers {missing}", value=missing, allowed=AMP_NAMES
        )
    return MappingProxyType({name: float(values[name]) for name in AMP_NAMES})


def _readonly(array: NDArray, what: str, shape: tuple[int, ...]) -> NDArray[np.float32]:
    array = np.array(array, dtype=np.float32, copy=True)
    if array.shape != shape:
        raise InputError(
            f"DetectorSignature.{what} has shape {array.shape}, expected {shape}", value=array.shape
        )
    array.setflags(write=False)
    return array


@dataclasses.dataclass(frozen=True, eq=False)
class DetectorSignature:
    """Everything the detector adds to the incident electrons.

    Per-amp gain (e-/adu), read noise (e-), bias level (adu) and its row-dependent drift, dark current
    (e-/s/px), the pixel response (flat pattern, mean 1, 4000 x 4072), saturation (adu, 120000), serial
    overscan width (64; 32 before Nov 2022). Equality is identity (the object holds large arrays).

    Attributes
    ----------
    gain : mapping of `str` to `float`
        Gain of each amplifier ``C00``..``C17``, e-/adu.
    read_noise : mapping of `str` to `float`
        Read noise of each amplifier, e- rms.
    bias_level : mapping of `str` to `float`
        Mean bias level of each amplifier, adu.
    bias_drift : mapping of `str` to `float`
        Amplitude of the row-dependent bias drift, adu: the bias of readout row ``r`` (0-2047) is
        ``level + drift * (exp(-r / 150) + 0.5 * r / 2048)``, in every column of that row (data and serial
        overscan alike), so a serial overscan correction per row removes it.
    bias_columns : `numpy.ndarray`, shape (16, n_cols)
        Column pattern of each amplifier (HDU order, readout columns), adu, present in every row (data and
        parallel overscan), so a parallel overscan correction per column removes it.
    bias_structure : `numpy.ndarray`, shape (4000, 4072)
        Static 2-D bias structure in the imaging section (assembled frame), adu, left after overscan
        correction; only a bias frame removes it.
    dark_current : `numpy.ndarray`, shape (4000, 4072)
        Dark current per pixel, e-/s (assembled frame).
    flat : `numpy.ndarray`, shape (4000, 4072)
        Pixel response (quantum efficiency relative to the mean, vignetting, dust), mean 1, unitless.
    saturation : `float`
        Raw value at which pixels clip, adu (including the bias).
    serial_overscan : `int`
        Serial overscan width, columns (64; 32 before November 2022).
    """

    gain: Mapping[str, float]
    read_noise: Mapping[str, float]
    bias_level: Mapping[str, float]
    bias_drift: Mapping[str, float]
    bias_columns: NDArray[np.float32]
    bias_structure: NDArray[np.float32]
    dark_current: NDArray[np.float32]
    flat: NDArray[np.float32]
    saturation: float = DEFAULT_SATURATION_ADU
    serial_overscan: int = 64

    def __post_init__(self) -> None:
        if self.serial_overscan not in (32, 64):
            raise InputError(
                f"DetectorSignature.serial_overscan is {self.serial_overscan}, expected 32 or 64",
                value=self.serial_overscan,
                allowed=(32, 64),
            )
        for what in ("gain", "read_noise", "bias_level", "bias_drift"):
            object.__setattr__(self, what, _frozen_mapping(getattr(self, what), what))
        bad = {k: v for k, v in self.gain.items() if not v > 0}
        if bad:
            raise InputError(f"DetectorSignature.gain must be > 0 e-/adu, got {bad}", value=bad)
        cols_shape = (len(AMP_NAMES), self.n_cols)
        object.__setattr__(self, "bias_columns", _readonly(self.bias_columns, "bias_columns", cols_shape))
        for what in ("bias_structure", "dark_current", "flat"):
            object.__setattr__(self, what, _readonly(getattr(self, what), what, DETECTOR_SHAPE))

    @property
    def n_cols(self) -> int:
        """Width of an amplifier array, columns (prescan + data + serial overscan)."""
        return _PRESCAN + (DATA_COLS.stop - DATA_COLS.start) + self.serial_overscan

    def amp_table(self) -> Table:
        """Per-amp values in ``amps.ecsv`` format: amp, gain (e-/adu), read_noise (e-), saturation (adu)."""
        table = Table()
        names = sorted(AMP_NAMES)
        table["amp"] = names
        table["gain"] = [self.gain[n] for n in names]
        table["read_noise"] = [self.read_noise[n] for n in names]
        table["saturation"] = [self.saturation] * len(names)
        table["gain"].unit = "electron/adu"
        table["read_noise"].unit = "electron"
        table["saturation"].unit = "adu"
        return table

    def bias_rows(self, name: str) -> NDArray[np.float32]:
        """Bias of each readout row of amplifier ``name`` (level + drift), adu, shape (2048,).

        Parameters
        ----------
        name : `str`
            Amplifier name (one of `AMP_NAMES`, e.g. ``"C10"``).
        """
        rows = np.arange(_N_ROWS, dtype=np.float32)
        shape = np.exp(-rows / 150.0) + 0.5 * rows / _N_ROWS
        return (self.bias_level[name] + self.bias_drift[name] * shape).astype(np.float32)

    @classmethod
    def typical(cls, *, seed: int = 0, serial_overscan: int = 64) -> DetectorSignature:
        """A LATISS-like detector: gains 1.047-1.105 e-/adu, read noise 8.0-10.3 e- (FACTS.md section 3).

        Bias levels 14000-25000 adu with 5-30 adu of drift, a column pattern of about 1 adu, a 2 adu static
        structure; dark current 0.004 e-/s/px with a few warm pixels; a flat pattern with a 3 % radial
        fall-off, 1 % pixel-to-pixel response and a few dust shadows.

        Parameters
        ----------
        seed : `int`, optional
            Seed of the random draws.
        serial_overscan : `int`, optional
            Serial overscan columns per amplifier (32 or 64).
        """
        rng = np.random.default_rng(seed)
        n_amp = len(AMP_NAMES)
        gains = rng.uniform(1.047, 1.105, n_amp)
        noise = rng.uniform(8.0, 10.3, n_amp)
        levels = rng.uniform(14000.0, 25000.0, n_amp).round()
        drifts = rng.uniform(5.0, 30.0, n_amp)
        n_cols = _PRESCAN + 509 + serial_overscan
        columns = rng.normal(0.0, 1.0, (n_amp, n_cols)).astype(np.float32)

        rows, cols = DETECTOR_SHAPE
        yy = (np.arange(rows, dtype=np.float32)[:, None] - rows / 2) / np.float32(rows / 2)
        xx = (np.arange(cols, dtype=np.float32)[None, :] - cols / 2) / np.float32(cols / 2)
        # Static structure: a glow along the bottom rows, a 0.5 adu gradient in x, 0.5 adu of pixel noise.
        structure = rng.standard_normal(DETECTOR_SHAPE, dtype=np.float32)
        structure *= np.float32(0.5)
        structure += np.float32(2.0) * np.exp(-(yy + 1.0) * 40.0) + np.float32(0.5) * xx

        dark = np.full(DETECTOR_SHAPE, 0.004, dtype=np.float32)
        warm = rng.integers(0, rows * cols, 200)
        dark.ravel()[warm] = rng.uniform(0.1, 2.0, warm.size).astype(np.float32)

        flat = rng.standard_normal(DETECTOR_SHAPE, dtype=np.float32)
        flat *= np.float32(0.01)
        flat += np.float32(1.0)
        flat *= np.float32(1.0) - np.float32(0.03) * (yy * yy + xx * xx)
        for _ in range(6):  # dust shadows: shallow discs tens of pixels across
            cy, cx = rng.uniform(200, rows - 200), rng.uniform(200, cols - 200)
            radius, depth = rng.uniform(15, 60), rng.uniform(0.02, 0.08)
            sl = (
                slice(int(cy - radius), int(cy + radius) + 1),
                slice(int(cx - radius), int(cx + radius) + 1),
            )
            y = np.arange(sl[0].start, sl[0].stop)[:, None] - cy
            x = np.arange(sl[1].start, sl[1].stop)[None, :] - cx
            flat[sl] *= np.where(y * y + x * x < radius * radius, 1.0 - depth, 1.0).astype(np.float32)
        flat /= flat.mean(dtype=np.float64)

        return cls(
            gain=dict(zip(AMP_NAMES, gains, strict=True)),
            read_noise=dict(zip(AMP_NAMES, noise, strict=True)),
            bias_level=dict(zip(AMP_NAMES, levels, strict=True)),
            bias_drift=dict(zip(AMP_NAMES, drifts, strict=True)),
            bias_columns=columns,
            bias_structure=structure,
            dark_current=dark,
            flat=flat,
            serial_overscan=serial_overscan,
        )


def _cosmic_rays(shape: tuple[int, int], n: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """Straight tracks 1-40 px long depositing 800-8000 e- per pixel, all drawn at once."""
    image = np.zeros(shape, dtype=np.float32)
    if n <= 0:
        return image
    length = rng.integers(1, 41, n)
    y0, x0 = rng.uniform(0, shape[0], n), rng.uniform(0, shape[1], n)
    angle = rng.uniform(0, np.pi, n)
    step = np.arange(length.max())
    ys = y0[:, None] + np.sin(angle)[:, None] * step[None, :]
    xs = x0[:, None] + np.cos(angle)[:, None] * step[None, :]
    keep = (step[None, :] < length[:, None]) & (ys < shape[0]) & (xs < shape[1])
    deposit = rng.uniform(800.0, 8000.0, n)[:, None] * np.ones_like(ys)
    np.add.at(image, (ys[keep].astype(int), xs[keep].astype(int)), deposit[keep].astype(np.float32))
    return image


def electrons_to_amps(
    electrons: NDArray,
    signature: DetectorSignature,
    *,
    exptime_s: float,
    darktime_s: float,
    rng: np.random.Generator,
    n_cosmic_rays: int = 0,
    hot_columns: Sequence[int] = (),
    shot_noise: bool = True,
    hot_column_e_per_s: float = 50.0,
    bias_offset_sigma_adu: float = 3.0,
    poisson_threshold_e: float = 100.0,
) -> dict[str, NDArray[np.float32]]:
    """Turn incident photo-electrons into the 16 raw amplifier arrays of a LATISS exposure.

    Parameters
    ----------
    electrons : `numpy.ndarray`, shape (4000, 4072)
        Incident photo-electrons per pixel over the exposure, assembled frame ``[row, col]``, before the
        pixel response. By default the **noiseless expectation**: shot noise is drawn here. Pass an image
        that is already Poisson-sampled with ``shot_noise=False`` (the dark current is then added without
        noise).
    signature : `DetectorSignature`
    exptime_s, darktime_s : `float`
        Exposure and dark time, s (``exptime_s`` is only checked: the electrons already integrate it).
    rng : `numpy.random.Generator`
        Source of every random draw.
    n_cosmic_rays : `int`
        Number of cosmic-ray tracks to add.
    hot_columns : sequence of `int`
        Assembled column indices whose whole imaging section collects ``hot_column_e_per_s`` extra dark
        current, e-/s.
    shot_noise : `bool`
        Draw shot noise on the detected electrons (Poisson below ``poisson_threshold_e`` e-, Gaussian with
        the same variance above it, which is indistinguishable there and 7x faster).
    bias_offset_sigma_adu : `float`
        Exposure-to-exposure jitter of each amplifier's bias level, adu rms.

    Returns
    -------
    amps : `dict` of `str` to `numpy.ndarray`
        Raw amplifier arrays ``(2048, signature.n_cols)``, float32 holding integer adu, keyed by amplifier
        name in HDU order, readout orientation (as `lsst.ts.auxtelwep.exposure.read_raw` returns them).
        Saturated pixels hold exactly ``signature.saturation``.
    """
    electrons = np.asarray(electrons)
    if electrons.shape != DETECTOR_SHAPE:
        raise InputError(
            f"electrons image has shape {electrons.shape}, expected {DETECTOR_SHAPE} (assembled frame)",
            value=electrons.shape,
            allowed=DETECTOR_SHAPE,
        )
    if not (exptime_s >= 0 and darktime_s >= exptime_s):
        raise InputError(
            f"need 0 <= exptime_s <= darktime_s, got exptime_s={exptime_s}, darktime_s={darktime_s}",
            value=(exptime_s, darktime_s),
        )
    bad_cols = [c for c in hot_columns if not 0 <= c < DETECTOR_SHAPE[1]]
    if bad_cols:
        raise InputError(f"hot_columns {bad_cols} outside 0..{DETECTOR_SHAPE[1] - 1}", value=bad_cols)

    detected = electrons.astype(np.float32) * signature.flat
    dark = signature.dark_current * np.float32(darktime_s)
    if len(hot_columns):
        dark = dark.copy()
        dark[:, list(hot_columns)] += np.float32(hot_column_e_per_s * darktime_s)
    well = detected + dark
    if shot_noise:
        np.maximum(well, 0.0, out=well)
        low = well < poisson_threshold_e
        noise = rng.standard_normal(well.shape, dtype=np.float32)
        noise *= np.sqrt(well)
        noisy = well + noise
        noisy[low] = rng.poisson(well[low]).astype(np.float32)
        well = noisy
    if n_cosmic_rays:
        well += _cosmic_rays(DETECTOR_SHAPE, n_cosmic_rays, rng)

    data = disassemble(well)
    n_cols = signature.n_cols
    amps: dict[str, NDArray[np.float32]] = {}
    for index, geom in enumerate(_GEOMETRY):
        name = geom.name
        gain = np.float32(signature.gain[name])
        amp = np.empty((_N_ROWS, n_cols), dtype=np.float32)
        amp[:] = signature.bias_columns[index][None, :]
        amp += signature.bias_rows(name)[:, None]
        amp += np.float32(rng.normal(0.0, bias_offset_sigma_adu))
        amp[DATA_ROWS, DATA_COLS] += data[name] / gain
        amp[DATA_ROWS, DATA_COLS] += geom.to_assembled(signature.bias_structure[geom.rows, geom.cols])
        noise = rng.standard_normal(amp.shape, dtype=np.float32)
        noise *= np.float32(signature.read_noise[name]) / gain
        amp += noise
        np.rint(amp, out=amp)
        np.clip(amp, 0.0, signature.saturation, out=amp)
        amps[name] = amp
    return amps


def default_header(**overrides: object) -> fits.Header:
    """A LATISS primary header with every key of FACTS.md section 3, plausible values, and ``overrides``.

    Keys: OBSID, IMGTYPE, REASON, PROGRAM, GROUPID, DAYOBS (string), SEQNUM, RA, DEC, ROTPA (deg), ELSTART,
    AZSTART (deg), FOCUSZ (mm), EXPTIME, DARKTIME (s), FILTER, GRATING, CCDTEMP (C), BUNIT, plus TELESCOP,
    INSTRUME, DETSIZE. Keyword names in ``overrides`` are upper-cased.

    Parameters
    ----------
    **overrides
        Header values by keyword (any case); they replace or add to the defaults.
    """
    header = fits.Header()
    values: dict[str, object] = {
        "TELESCOP": "LSST AuxTelescope",
        "INSTRUME": "LATISS",
        "OBSID": "AT_O_20240624_000106",
        "IMGTYPE": "CWFS",
        "REASON": "INTRA",
        "PROGRAM": "CWFS",
        "GROUPID": "2024-06-24T23:00:00.000",
        "DAYOBS": "20240624",
        "SEQNUM": 106,
        "RA": 150.0,
        "DEC": -30.0,
        "ROTPA": 0.0,
        "ELSTART": 60.0,
        "AZSTART": 180.0,
        "FOCUSZ": 0.0,
        "EXPTIME": 20.0,
        "DARKTIME": 20.3,
        "FILTER": "SDSSr_65mm",
        "GRATING": "empty_1",
        "CCDTEMP": -94.0,
        "DETSIZE": "[1:4072,1:4000]",
        "BUNIT": "adu",
    }
    values.update({key.upper(): value for key, value in overrides.items()})
    for key, value in values.items():
        header[key] = value
    return header


def _amp_header(geom_index: int, n_cols: int) -> fits.Header:
    geom = _GEOMETRY[geom_index]
    x0, x1 = geom.cols.start + 1, geom.cols.stop
    y0, y1 = geom.rows.start + 1, geom.rows.stop
    header = fits.Header()
    header["EXTNAME"] = f"Segment{geom.name[1:]}"
    header["DATASEC"] = f"[{DATA_COLS.start + 1}:{DATA_COLS.stop},{DATA_ROWS.start + 1}:{DATA_ROWS.stop}]"
    # Real files flip only x in DETSEC (DM-36115); kept as they are, readers use the cameraGeom geometry.
    header["DETSEC"] = f"[{x1}:{x0},{y0}:{y1}]"
    header["BIASSEC"] = f"[{DATA_COLS.stop + 1}:{n_cols},{DATA_ROWS.start + 1}:{DATA_ROWS.stop}]"
    header["BUNIT"] = "adu"
    return header


def write_raw(
    path: str | Path, amps: Mapping[str, NDArray], header: fits.Header, *, compress: bool = False
) -> None:
    """Write a LATISS raw: primary HDU with ``header`` and 16 amplifier HDUs (FACTS.md section 3).

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        Output file (overwritten).
    amps : mapping of `str` to `numpy.ndarray`
        Amplifier arrays ``(2048, 576)`` (or 544 columns for a 32-column overscan), integer adu, by name
        ``C00``..``C17``. Written as 32-bit integers, as the camera does.
    header : `astropy.io.fits.Header`
        Primary header (see `default_header`); BUNIT is set to ``adu``.
    compress : `bool`
        Write RICE-compressed image HDUs, like 2024 files (lossless for integers).
    """
    missing = [name for name in AMP_NAMES if name not in amps]
    if missing:
        raise InputError(f"write_raw {path}: amplifiers {missing} missing", value=missing, allowed=AMP_NAMES)
    primary = header.copy()
    primary["BUNIT"] = "adu"
    hdus: list[fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU] = [fits.PrimaryHDU(header=primary)]
    for index, geom in enumerate(_GEOMETRY):
        data = np.asarray(amps[geom.name])
        if data.ndim != 2 or data.shape[0] != _N_ROWS or data.shape[1] not in (576, 544):
            raise InputError(
                f"write_raw {path}: amplifier {geom.name} has shape {data.shape}, expected (2048, 576) or "
                "(2048, 544)",
                value=data.shape,
            )
        ints = np.rint(data).astype(np.int32)
        amp_header = _amp_header(index, data.shape[1])
        if compress:
            hdus.append(fits.CompImageHDU(data=ints, header=amp_header, compression_type="RICE_1"))
        else:
            hdus.append(fits.ImageHDU(data=ints, header=amp_header))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    _log.debug("wrote raw %s (%d amplifier HDUs, compress=%s)", path, len(hdus) - 1, compress)


def write_calibrations(
    signature: DetectorSignature,
    directory: str | Path,
    *,
    rng: np.random.Generator | None = None,
    n_frames: int = 20,
    defects: Sequence[tuple[int, int, int, int]] = (),
) -> Path:
    """Write the calibration products a calibration pipeline would make for ``signature``.

    Products (format of `lsst.ts.auxtelwep.calibs`): ``bias.fits`` (adu, the post-overscan static
    structure), ``dark.fits`` (adu/s, dark current over the gain), ``flat.fits`` (unitless, mean 1, built
    from adu frames so it carries the gain ratios), ``amps.ecsv``, and ``defects.ecsv`` when ``defects``
    (x0, y0, width, height, assembled pixels) are given. Each image gets the noise of a combination of
    ``n_frames`` exposures (read noise for bias and dark, shot noise of 50000 e- flats).

    Parameters
    ----------
    signature : `DetectorSignature`
        The detector to calibrate.
    directory : `str` or `pathlib.Path`
        Output directory (created if missing; files are overwritten).
    rng : `numpy.random.Generator`, optional
        Random generator of the noise; default an unseeded one.
    n_frames : `int`, optional
        Number of exposures each product is taken to combine.
    defects : sequence of `tuple` [`int`, `int`, `int`, `int`], optional
        Defect boxes ``(x0, y0, width, height)``, assembled pixels.

    Returns
    -------
    directory : `pathlib.Path`
    """
    rng = np.random.default_rng() if rng is None else rng
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    gain_image = np.empty(DETECTOR_SHAPE, dtype=np.float32)
    noise_adu = np.empty(DETECTOR_SHAPE, dtype=np.float32)
    for geom in _GEOMETRY:
        gain_image[geom.rows, geom.cols] = signature.gain[geom.name]
        noise_adu[geom.rows, geom.cols] = signature.read_noise[geom.name] / signature.gain[geom.name]
    root_n = np.float32(np.sqrt(n_frames))

    def noisy(values: NDArray, sigma: NDArray) -> NDArray[np.float32]:
        return (values + sigma * rng.standard_normal(DETECTOR_SHAPE, dtype=np.float32)).astype(np.float32)

    bias = noisy(signature.bias_structure, noise_adu / root_n)
    dark_time = np.float32(600.0)  # s per dark frame
    dark = noisy(signature.dark_current / gain_image, noise_adu / (root_n * dark_time))
    flat_level = np.float32(50000.0)  # e- per flat frame
    flat_e = signature.flat * flat_level
    flat = noisy(flat_e / gain_image, np.sqrt(flat_e) / (gain_image * root_n))
    flat /= flat.mean(dtype=np.float64)

    def image_hdu(data: NDArray, unit: str, **keys: object) -> fits.PrimaryHDU:
        hdu = fits.PrimaryHDU(data=data.astype(np.float32))
        hdu.header["BUNIT"] = unit
        hdu.header["INSTRUME"] = "LATISS"
        hdu.header["NCOMBINE"] = n_frames
        for key, value in keys.items():
            hdu.header[key] = value
        return hdu

    image_hdu(bias, "adu").writeto(directory / "bias.fits", overwrite=True)
    image_hdu(dark, "adu/s").writeto(directory / "dark.fits", overwrite=True)
    image_hdu(flat, "").writeto(directory / "flat.fits", overwrite=True)
    signature.amp_table().write(directory / "amps.ecsv", format="ascii.ecsv", overwrite=True)
    if defects:
        table = Table(
            rows=[tuple(int(v) for v in box) for box in defects], names=("x0", "y0", "width", "height")
        )
        table.write(directory / "defects.ecsv", format="ascii.ecsv", overwrite=True)
    _log.info("wrote calibrations to %s", directory)
    return directory
