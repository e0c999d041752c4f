"""Donut stamps: cut intra/extra pairs out of two exposures, clean them and describe them.

Conventions
-----------
- A stamp is a square odd-sized array ``stamp[row=y, col=x]`` (batoid detector frame, as danish expects)
  whose centre pixel ``size // 2`` is the donut's centre after recentring. ``centre`` is the full-frame
  ``(col, row)`` (0-based) of that centre pixel, so full-frame pixel ``(c, r)`` is stamp pixel
  ``(r - row0, c - col0)`` with ``(col0, row0) = centre - size // 2``.
- Pixel values are background-subtracted, in the exposure's units (``adu`` or ``electron``). ``variance`` is
  the variance of the background (sky, read noise) only; the source's own Poisson variance is
  ``model / gain`` with ``gain`` in electrons per unit, added by the estimators from their model. Giving the
  source term separately is what lets a forward model weight its pixels correctly.
- ``mask`` is True where a pixel must not be used (bad pixel, saturation, a cosmic ray, a neighbour, off the
  detector).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import enum
import functools
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray
from scipy import ndimage

from .cadence import check_roles
from .errors import InputError, check_type
from .exposure import Exposure, MaskBit, check_exposure
from .instrument import OBSCURATION, AuxTel, Role

__all__ = [
    "DEFAULT_STAMP_SIZE_PX",
    "CataloguedDonut",
    "CutOptions",
    "DonutPair",
    "PairFlag",
    "Stamp",
    "cut_pairs",
    "stamp_size_px",
]

_log = logging.getLogger(__name__)

DEFAULT_STAMP_SIZE_PX = 255
"""Stamp side for AuxTel donuts: a focus error of 0.1 mm grows the donut to 111 px radius (FACTS.md 1)."""

_FOCUS_ERROR_MM = 0.1  # largest focus error the stamps must hold (FACTS.md section 1)
_SEEING_MARGIN_PX = 16  # about 1.5 FWHM of 1" seeing beyond the geometric edge
_UNUSABLE = MaskBit.BAD | MaskBit.SAT | MaskBit.CR | MaskBit.EDGE | MaskBit.NO_DATA | MaskBit.INTRP
_MAD_TO_SIGMA = 1.4826
_MIN_BACKGROUND_PX = 2000  # enough background pixels for its level to 1 % of its noise
# Cosmic rays: a pixel stands out of its four neighbours by this many sigmas of the difference, and by this
# fraction of their level. A donut blurred by the seeing never does: even at 0.45" seeing the curvature of
# its edge gives at most a quarter of the level, and noise a 6-sigma pixel once in 10 000 stamps (5 sigma
# was once in a few tens: too often, with a background scatter measured a few per cent low).
_CR_SIGMAS = 6.0
_CR_CONTRAST = 0.3


class PairFlag(enum.IntFlag):
    """Quality flags of a `DonutPair` (a pair with any flag is not used by default)."""

    NONE = 0
    BLEND = 1
    """The catalog flags the donut as blended, or another donut overlaps the stamp's donut."""
    CLIPPED = 2
    """The stamp, or the donut inside it, runs off the detector."""
    MASKED = 4
    """More than the allowed fraction of the donut's pixels is masked."""
    RECENTER = 8
    """Recentring moved the stamp by more than the allowed distance (kept at the catalog position)."""
    LOW_FLUX = 16
    """The donut's flux after background subtraction is not positive or below the requested minimum."""


@dataclasses.dataclass(frozen=True)
class Stamp:
    """One donut stamp.

    Attributes
    ----------
    image : `numpy.ndarray`, shape (n, n), float32
        Background-subtracted pixels, ``[row, col]``, exposure units.
    variance : `numpy.ndarray`, shape (n, n), float32
        Background-only variance (units squared), see module docstring.
    mask : `numpy.ndarray`, shape (n, n), bool
        True for pixels not to use.
    centre : `tuple` of `float`
        Full-frame ``(col, row)`` of the centre pixel, 0-based.
    field_deg : `tuple` of `float`
        Field angle ``(x, y)`` of the donut, degrees, batoid frame (`cut_pairs`: of the mean of the pair's
        two centre pixels).
    background : `float`
        Background level subtracted, exposure units per pixel.
    snr : `float`
        Signal-to-noise ratio of the donut, as ts_wep's ``SN``: the signal summed over the design donut's
        annulus (unmasked pixels) over the square root of the variance summed there (background plus the
        source's Poisson noise). NaN when not measured (`DonutPair.from_arrays`).
    """

    image: NDArray[np.float32]
    variance: NDArray[np.float32]
    mask: NDArray[np.bool_]
    centre: tuple[float, float]
    field_deg: tuple[float, float]
    background: float = 0.0
    snr: float = float("nan")

    def __repr__(self) -> str:
        """A one-line summary: arrays as their shape and dtype (`reprs.summary_repr`)."""
        from .reprs import summary_repr

        return summary_repr(self)

    @property
    def size(self) -> int:
        """Side of the stamp, pixels."""
        return int(self.image.shape[0])


@dataclasses.dataclass(frozen=True)
class DonutPair:
    """An intra-focal and an extra-focal stamp of the same star.

    Attributes
    ----------
    intra, extra : `Stamp`
        The two stamps (same size).
    gain : `float`
        Electrons per image unit (1 for electron images), for the source's Poisson variance.
    index : `int`
        Index of the donut in the catalog.
    flags : `PairFlag`
        Quality flags.
    notes : `tuple` of `str`
        Human-readable reasons behind the flags.
    """

    intra: Stamp
    extra: Stamp
    gain: float = 1.0
    index: int = 0
    flags: PairFlag = PairFlag.NONE
    notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        """Index, flags and each stamp's summary (`reprs.summary_repr`)."""
        from .reprs import summary_repr

        return summary_repr(
            self, ("index", "flags", "gain", "notes"), {"intra": repr(self.intra), "extra": repr(self.extra)}
        )

    def __post_init__(self) -> None:
        if self.intra.image.shape != self.extra.image.shape:
            raise InputError(
                f"intra stamp {self.intra.image.shape} and extra stamp {self.extra.image.shape} differ "
                "in shape",
                value=(self.intra.image.shape, self.extra.image.shape),
            )
        for stamp in (self.intra, self.extra):
            n = stamp.image.shape
            if len(n) != 2 or n[0] != n[1] or n[0] % 2 != 1:
                raise InputError(f"stamps must be square with an odd side, got {n}", value=n)
            if stamp.variance.shape != n or stamp.mask.shape != n:
                raise InputError(
                    f"variance {stamp.variance.shape} and mask {stamp.mask.shape} must match the image {n}",
                    value=(stamp.variance.shape, stamp.mask.shape),
                )
        if not self.gain > 0:
            raise InputError(f"gain must be positive (electrons per unit), got {self.gain}", value=self.gain)

    @property
    def size(self) -> int:
        """Side of the stamps, pixels."""
        return self.intra.size

    def stamp(self, role: Role) -> Stamp:
        """The stamp of ``role`` (`Role.INTRA` or `Role.EXTRA`).

        Parameters
        ----------
        role : `Role`
            ``Role.INTRA`` or ``Role.EXTRA``.

        Raises
        ------
        InputError
            For any other role.
        """
        if role is Role.INTRA:
            return self.intra
        if role is Role.EXTRA:
            return self.extra
        raise InputError(f"a donut pair has intra and extra stamps, not {role}", value=role)

    @classmethod
    def from_arrays(
        cls,
        intra: NDArray,
        extra: NDArray,
        *,
        variance_intra: float | NDArray,
        variance_extra: float | NDArray,
        field_deg: tuple[float, float] = (0.0, 0.0),
        gain: float = 1.0,
        mask_intra: NDArray | None = None,
        mask_extra: NDArray | None = None,
        index: int = 0,
    ) -> DonutPair:
        """Build a pair from background-subtracted, centred stamps (simulations, published test data).

        Parameters
        ----------
        intra, extra : `numpy.ndarray`, shape (n, n), n odd
            Background-subtracted stamps, ``[row, col]``.
        variance_intra, variance_extra : `float` or `numpy.ndarray`
            Background-only variance, scalar or per pixel, units squared.
        field_deg : `tuple` of `float`
            Field angle of the star, degrees, batoid frame.
        gain : `float`
            Electrons per image unit.
        mask_intra, mask_extra : `numpy.ndarray` of bool, optional
            True for pixels not to use.
        index : `int`
            Identifier of the pair.
        """
        stamps = []
        for image, var, mask in ((intra, variance_intra, mask_intra), (extra, variance_extra, mask_extra)):
            image = np.asarray(image, dtype=np.float32)
            varr = np.broadcast_to(np.asarray(var, dtype=np.float32), image.shape).copy()
            m = np.zeros(image.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
            n = image.shape[0]
            stamps.append(
                Stamp(
                    image=image,
                    variance=varr,
                    mask=m,
                    centre=(float(n // 2), float(n // 2)),
                    field_deg=(float(field_deg[0]), float(field_deg[1])),
                )
            )
        return cls(intra=stamps[0], extra=stamps[1], gain=float(gain), index=index)


@runtime_checkable
class CataloguedDonut(Protocol):
    """What `cut_pairs` needs from a catalogued donut (`detection.Donut` provides it)."""

    intra_x: float
    intra_y: float
    extra_x: float
    extra_y: float
    field_x_deg: float
    field_y_deg: float
    blended: bool


@functools.lru_cache(maxsize=8)
def _donut_radii_px(telescope: AuxTel, extra_focus_mm: float) -> tuple[float, float, float]:
    """Outer and inner radius of the nominal donut, and outer radius of the largest expected one, pixels."""
    nominal = telescope.with_role(Role.INTRA)
    outer, inner = nominal.donut_radii_px()
    largest = nominal.with_hexapod_offset(z=extra_focus_mm).donut_radii_px()[0]
    return outer, inner, largest


def stamp_size_px(telescope: AuxTel | None = None, *, focus_error_mm: float = _FOCUS_ERROR_MM) -> int:
    """Odd stamp side holding a donut with a focus error of ``focus_error_mm`` plus a seeing margin.

    Parameters
    ----------
    telescope : `AuxTel`, optional
        Optical model (default: the aligned design).
    focus_error_mm : `float`
        Largest hexapod focus error to hold, mm (0.1 mm grows the donut from 97 to 111 px radius).

    Returns
    -------
    size : `int`
        Stamp side, pixels (255 for the defaults).
    """
    telescope = AuxTel() if telescope is None else telescope.with_hexapod(type(telescope.hexapod)())
    *_, largest = _donut_radii_px(telescope, float(focus_error_mm))
    half = int(np.ceil(largest + _SEEING_MARGIN_PX))
    return 2 * half + 1


@dataclasses.dataclass(frozen=True)
class CutOptions:
    """Options of `cut_pairs`.

    Attributes
    ----------
    size_px : `int` or `None`
        Stamp side (odd); `None` for `stamp_size_px` of the telescope.
    recentre : `bool`
        Recentre each stamp on the donut by correlation with an annulus template.
    max_recentre_px : `int`
        Largest recentring shift accepted, pixels (ts_wep: 20).
    max_masked_fraction : `float`
        Largest fraction of the donut's pixels that may be masked before the pair is flagged `MASKED`.
    neighbour_margin_px : `float`
        Margin added to the donut radius when masking a neighbouring donut, pixels.
    mask_cosmic_rays : `bool`
        Mask pixels far sharper than a seeing-blurred donut (cosmic-ray tracks; ISR does not look for them).
    gain : `float` or `None`
        Electrons per image unit; `None`: 1 for electron images, otherwise from the exposure's variance
        plane (slope of variance against signal), else the nominal LATISS gain.
    read_noise : `float` or `None`
        Read noise in image units, used only when the exposure has no variance plane and the background
        scatter cannot be measured.
    """

    size_px: int | None = None
    recentre: bool = True
    max_recentre_px: int = 20
    max_masked_fraction: float = 0.05
    neighbour_margin_px: float = 10.0
    mask_cosmic_rays: bool = True
    gain: float | None = None
    read_noise: float | None = None


NOMINAL_GAIN = 1.07
"""Typical LATISS amplifier gain, electrons per adu (FACTS.md section 3: 1.047-1.105)."""


def cut_pairs(
    intra: Exposure,
    extra: Exposure,
    catalog: Iterable[CataloguedDonut] | object,
    *,
    size_px: int | None = None,
    telescope: AuxTel | None = None,
    options: CutOptions | None = None,
) -> list[DonutPair]:
    """Cut, clean and recentre an intra/extra stamp pair around each catalogued donut.

    Parameters
    ----------
    intra, extra : `Exposure`
        The defocused exposures (same units).
    catalog : iterable of `CataloguedDonut`, or an object with a ``donuts`` sequence (`DonutCatalog`)
        Donut positions (0-based, x = column, y = row, on each image), field angles and blend flags.
    size_px : `int`, optional
        Stamp side (odd), overriding ``options.size_px``; default `stamp_size_px` of the telescope.
    telescope : `AuxTel`, optional
        Optical model for the donut size (default: the aligned design).
    options : `CutOptions`, optional
        Size, recentring, masking, gain.

    Returns
    -------
    pairs : `list` of `DonutPair`
        One pair per donut, in catalog order, ``index`` = position in the catalog; problems are flagged
        (`PairFlag`), not dropped.

    Raises
    ------
    InputError
        If an image is not an `Exposure` or a donut not a `CataloguedDonut`, the exposures' headers
        contradict the roles they are given for (`cadence.check_roles`), they differ in shape or units, or
        the stamp size is even or too small.
    """
    options = options or CutOptions()
    if size_px is not None:
        options = dataclasses.replace(options, size_px=int(size_px))
    telescope = AuxTel() if telescope is None else telescope
    check_exposure("intra", intra)
    check_exposure("extra", extra)
    donuts = list(getattr(catalog, "donuts", catalog))
    check_roles({Role.INTRA: intra, Role.EXTRA: extra})
    for donut in donuts:
        check_type(
            "a donut of the catalog",
            donut,
            CataloguedDonut,
            hint="pass the DonutCatalog of detection.detect_donuts (or items with intra_x, intra_y, extra_x, "
            "extra_y, field_x_deg, field_y_deg and blended)",
        )
    if intra.image.shape != extra.image.shape or intra.units != extra.units:
        raise InputError(
            f"intra ({intra.obsid}: {intra.image.shape}, {intra.units}) and extra ({extra.obsid}: "
            f"{extra.image.shape}, {extra.units}) exposures must match in shape and units",
            value=(intra.image.shape, extra.image.shape),
        )
    size = options.size_px if options.size_px is not None else stamp_size_px(telescope)
    if size % 2 != 1 or size < 33:
        raise InputError(f"stamp size must be odd and >= 33 px, got {size}", value=size)
    aligned = telescope.with_hexapod(type(telescope.hexapod)())
    outer, inner, largest = _donut_radii_px(aligned, _FOCUS_ERROR_MM)
    gain = _gain(intra, options)

    def cut(index: int, role: Role) -> tuple[Stamp, PairFlag, list[str]]:
        exposure = intra if role is Role.INTRA else extra
        others = [_position(o, role) for j, o in enumerate(donuts) if j != index]
        return _cut(
            exposure,
            _position(donuts[index], role),
            telescope,
            others,
            size=size,
            radii=(outer, inner, largest),
            gain=gain,
            options=options,
            role=role,
        )

    # Two threads: a stamp's cleaning is numpy work on 90 000 pixels at a time, which releases the GIL.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as threads:
        cuts = [
            [threads.submit(cut, index, role) for role in (Role.INTRA, Role.EXTRA)]
            for index in range(len(donuts))
        ]
        pairs = []
        for index, donut in enumerate(donuts):
            stamps, flags, notes = [], PairFlag.NONE, []
            if bool(getattr(donut, "blended", False)):
                flags |= PairFlag.BLEND
                partners = ", ".join(str(k) for k in getattr(donut, "blend_with", ()))
                notes.append("detection flags a blend" + (f" with donut {partners}" if partners else ""))
            for job in cuts[index]:
                stamp, f, n = job.result()
                stamps.append(stamp)
                flags |= f
                notes.extend(n)
            # The field angle of the pair is that of its stamps' centre pixels, not of the catalog position,
            # so a pair cut from any detection mode is the same pair (the fitted offsets hold the sub-pixel
            # position; the design wavefront changes by < 1e-6 um over half a pixel).
            field = _field(telescope, *np.mean([s.centre for s in stamps], axis=0))
            stamps = [dataclasses.replace(s, field_deg=field) for s in stamps]
            pairs.append(
                DonutPair(
                    intra=stamps[0], extra=stamps[1], gain=gain, index=index, flags=flags, notes=tuple(notes)
                )
            )
    return pairs


def _field(telescope: AuxTel, col: float, row: float) -> tuple[float, float]:
    fx, fy = telescope.pixel_to_field(float(col), float(row))
    return float(fx), float(fy)


def _position(donut: CataloguedDonut, role: Role) -> tuple[float, float]:
    if role is Role.INTRA:
        return float(donut.intra_x), float(donut.intra_y)
    return float(donut.extra_x), float(donut.extra_y)


def _gain(exposure: Exposure, options: CutOptions) -> float:
    if options.gain is not None:
        if not options.gain > 0:
            raise InputError(f"gain must be positive, got {options.gain}", value=options.gain)
        return float(options.gain)
    if exposure.units == "electron":
        return 1.0
    if exposure.variance is not None:
        # Variance = signal / gain + read variance: the slope over bright pixels gives the gain.
        img = exposure.image[::7, ::7].ravel()
        var = exposure.variance[::7, ::7].ravel()
        ok = np.isfinite(img) & np.isfinite(var) & (img > 0)
        if ok.sum() > 100 and np.ptp(img[ok]) > 0:
            slope = np.polyfit(img[ok], var[ok], 1)[0]
            if slope > 0:
                return float(1.0 / slope)
    return NOMINAL_GAIN


def _extract(array: NDArray, centre: tuple[int, int], half: int, fill: float) -> NDArray:
    """Square cut of side 2 * half + 1 around integer (col, row), padded with ``fill`` off the array."""
    col, row = centre
    out = np.full((2 * half + 1, 2 * half + 1), fill, dtype=array.dtype)
    r0, c0 = row - half, col - half
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(row + half + 1, array.shape[0]), min(col + half + 1, array.shape[1])
    if rs < re and cs < ce:
        out[rs - r0 : re - r0, cs - c0 : ce - c0] = array[rs:re, cs:ce]
    return out


@functools.lru_cache(maxsize=8)
def _annulus_template_fft(size: int, radius: float, shape: int) -> NDArray:
    """Conjugate FFT, on a ``shape`` grid, of an annulus of ``radius`` centred in a ``size`` square."""
    y, x = np.mgrid[:size, :size] - size // 2
    r = np.hypot(x, y)
    template = ((r <= radius) & (r >= radius * OBSCURATION)).astype(np.float64)
    spectrum = np.conj(sfft.rfft2(template, (shape, shape)))
    spectrum.setflags(write=False)
    return spectrum


def _difference_scatter(image: NDArray, region: NDArray) -> float:
    """Pixel noise of the background, from the differences of horizontal neighbours within ``region``.

    Smooth light in the background region (the donut's own seeing wings at 2", a neighbour's) adds to a
    plain scatter, and did: 1.8 times the variance on one simulated stamp, which then fitted at a reduced
    chi-square of 0.5-0.8. Differences of neighbouring pixels are blind to it.
    """
    both = region[:, 1:] & region[:, :-1]
    diffs = (image[:, 1:] - image[:, :-1])[both]
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size < 20:
        return float("nan")
    return _MAD_TO_SIGMA * float(np.median(np.abs(diffs - np.median(diffs)))) / np.sqrt(2.0)


def _robust_background(values: NDArray) -> float:
    """Mean of background pixels after 3-sigma clipping about the median (their noise: `_difference_scatter`).

    The clipped mean, not the median, is returned: the median of Poisson counts is biased low by about 1/3,
    which over a 255 px stamp would add 2 % to a 1e6 e- donut.
    """
    values = values[np.isfinite(values)]
    if values.size < 20:
        return 0.0
    centre = float(np.median(values))
    sig = _MAD_TO_SIGMA * float(np.median(np.abs(values - centre)))
    keep = np.ones(values.size, dtype=bool)
    for _ in range(3):
        new = np.abs(values - centre) < 3 * max(sig, 1e-12)
        if new.sum() < 20:
            break
        keep = new
        centre = float(np.median(values[keep]))
        sig = float(np.std(values[keep]))
    return float(np.mean(values[keep]))


def _cut(
    exposure: Exposure,
    position: tuple[float, float],
    telescope: AuxTel,
    others: Sequence[tuple[float, float]],
    *,
    size: int,
    radii: tuple[float, float, float],
    gain: float,
    options: CutOptions,
    role: Role,
) -> tuple[Stamp, PairFlag, list[str]]:
    """Cut one stamp (the loop body of `cut_pairs`; inputs are trusted). ``radii``: the nominal donut's
    outer and inner radius and the largest expected outer radius, pixels."""
    flags, notes = PairFlag.NONE, []
    radius = radii[0]
    half = size // 2
    pad = options.max_recentre_px if options.recentre else 0
    col, row = (int(np.floor(v + 0.5)) for v in position)
    big = _extract(exposure.image, (col, row), half + pad, np.nan).astype(np.float64)
    big_mask = _extract(exposure.mask, (col, row), half + pad, np.uint16(MaskBit.NO_DATA))
    unusable = ((big_mask & int(_UNUSABLE)) != 0) | ~np.isfinite(big)
    yy, xx = np.mgrid[: big.shape[0], : big.shape[1]] - (half + pad)
    rr = np.hypot(xx, yy)
    # Background beyond the largest donut expected: a donut out of focus reaches past the nominal radius,
    # and its light there was taken for background noise (a 0.14 mm focus error: variance 25 % high).
    bkg_region = (rr > radii[2] + _SEEING_MARGIN_PX) & ~unusable
    if bkg_region.sum() < _MIN_BACKGROUND_PX:  # small stamps: what there is beyond the nominal donut
        bkg_region = (rr > radius + _SEEING_MARGIN_PX) & ~unusable
    background = _robust_background(big[bkg_region])
    scatter = _difference_scatter(big, bkg_region)
    clean = np.where(unusable, 0.0, big - background)
    if options.recentre:
        shift = _recentre_shift(clean, radius, pad)
        if shift is None:
            flags |= PairFlag.RECENTER
            notes.append(f"{role.value}: recentring found no peak within {pad} px; kept the catalog position")
            shift = (0, 0)
        col, row = col + shift[0], row + shift[1]
    r0 = pad + row - int(np.floor(position[1] + 0.5))
    c0 = pad + col - int(np.floor(position[0] + 0.5))
    image = clean[r0 : r0 + size, c0 : c0 + size]
    mask = unusable[r0 : r0 + size, c0 : c0 + size].copy()
    cosmic = _cosmic_ray_pixels(image, mask, scatter, gain) if options.mask_cosmic_rays else None
    if cosmic is not None and cosmic.any():
        mask |= cosmic
        notes.append(f"{role.value}: {int(cosmic.sum())} cosmic-ray pixels masked")
    # Neighbouring donuts: mask their discs; flag a blend when they reach into this donut.
    yy, xx = np.mgrid[:size, :size] - half
    for ox, oy in others:
        dx, dy = ox - col, oy - row
        distance = float(np.hypot(dx, dy))
        if distance > half + radius + options.neighbour_margin_px:
            continue
        mask |= np.hypot(xx - dx, yy - dy) <= radius + options.neighbour_margin_px
        if distance < 2 * radius + options.neighbour_margin_px:
            flags |= PairFlag.BLEND
            notes.append(f"{role.value}: a neighbouring donut {distance:.0f} px away overlaps this one")
    # Clipping: the donut disc runs off the detector.
    nrow, ncol = exposure.image.shape
    if col - radius < 0 or row - radius < 0 or col + radius > ncol - 1 or row + radius > nrow - 1:
        flags |= PairFlag.CLIPPED
        notes.append(f"{role.value}: the donut at ({col}, {row}) runs off the detector")
    rr = np.hypot(xx, yy)
    disc = rr <= radius
    masked_fraction = float(mask[disc].mean())
    if masked_fraction > options.max_masked_fraction:
        flags |= PairFlag.MASKED
        notes.append(
            f"{role.value}: {masked_fraction:.1%} of the donut is masked (allowed "
            f"{options.max_masked_fraction:.1%})"
        )
    flux = float(image[disc & ~mask].sum())
    if not flux > 0:
        flags |= PairFlag.LOW_FLUX
        notes.append(f"{role.value}: no positive flux after background subtraction ({flux:.3g})")
    variance = _background_variance(exposure, image, mask, (col, row), half, scatter, gain, options)
    annulus = disc & (rr >= radii[1]) & ~mask
    signal = float(image[annulus].sum())
    noise = np.sqrt(max(signal, 0.0) / gain + float(variance[annulus].sum()))
    stamp = Stamp(
        image=np.where(mask, 0.0, image).astype(np.float32),
        variance=variance.astype(np.float32),
        mask=mask,
        centre=(float(col), float(row)),
        field_deg=_field(telescope, col, row),
        background=background,
        snr=signal / noise if noise > 0 else float("nan"),
    )
    return stamp, flags, notes


def _cosmic_ray_pixels(image: NDArray, unusable: NDArray, scatter: float, gain: float) -> NDArray[np.bool_]:
    """Pixels far sharper than a seeing-blurred donut (cosmic-ray tracks), grown by one pixel.

    ISR does not look for cosmic rays, and one track on a donut drags the whole fit (reduced chi-square 9-90
    on a simulated night). The test is a discrete Laplacian (as L.A.Cosmic's): a pixel above the mean of its
    four neighbours by `_CR_SIGMAS` sigmas of that difference (sky and photon noise) and by `_CR_CONTRAST` of
    their level. Pixels next to unusable ones are not judged (a masked neighbour reads 0).
    """
    if not (np.isfinite(scatter) and scatter > 0):
        return np.zeros(image.shape, dtype=bool)
    padded = np.pad(image, 1, mode="edge")
    neighbours = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]) / 4.0
    excess = image - neighbours
    # The difference of a pixel and the mean of four: variance (1 + 1/4) x the pixel's.
    sigma = np.sqrt(1.25 * (scatter**2 + np.maximum(neighbours, 0.0) / gain))
    near_unusable = ndimage.binary_dilation(unusable)
    sharp = (excess > _CR_SIGMAS * sigma) & (excess > _CR_CONTRAST * np.maximum(neighbours, 0.0))
    sharp &= ~near_unusable
    if not sharp.any():
        return sharp
    return ndimage.binary_dilation(sharp, structure=np.ones((3, 3), dtype=bool)) & ~unusable


def _recentre_shift(clean: NDArray, radius: float, pad: int) -> tuple[int, int] | None:
    """Integer (dx, dy) that centres the annulus template on the donut, or None if the peak is off-limits."""
    n = clean.shape[0]
    # Only shifts up to pad are wanted: while the template shifted that far stays inside the cut (radius + pad
    # <= n / 2), a circular correlation on an n-sized grid gives them exactly, at a quarter of the cost of a
    # zero-padded one.
    shape = sfft.next_fast_len(n if radius + pad <= n / 2 else 2 * n - 1, real=True)
    spectrum = sfft.rfft2(clean, (shape, shape)) * _annulus_template_fft(n, radius, shape)
    corr = sfft.irfft2(spectrum, (shape, shape))
    # corr[k] peaks where the template, shifted by k, matches: shifts wrap around the FFT size.
    shifts = np.concatenate([np.arange(0, pad + 1), np.arange(-pad, 0)])
    window = corr[np.ix_(shifts % shape, shifts % shape)]
    iy, ix = np.unravel_index(int(np.argmax(window)), window.shape)
    dy, dx = int(shifts[iy]), int(shifts[ix])
    if abs(dx) >= pad or abs(dy) >= pad:
        return None
    return dx, dy


def _background_variance(
    exposure: Exposure,
    image: NDArray,
    mask: NDArray,
    centre: tuple[int, int],
    half: int,
    scatter: float,
    gain: float,
    options: CutOptions,
) -> NDArray:
    """Background-only variance per pixel (see module docstring)."""
    if exposure.variance is not None:
        var = _extract(exposure.variance, centre, half, np.nan).astype(np.float64)
        # The variance plane includes the source's Poisson term: remove it (the fitter adds its own).
        var = var - np.maximum(image, 0.0) / gain
        floor = np.nanmedian(var[~mask]) if np.any(~mask) else np.nan
        if np.isfinite(floor):
            var = np.maximum(np.where(np.isfinite(var), var, floor), 0.5 * floor)
            return var
    if np.isfinite(scatter) and scatter > 0:
        return np.full(image.shape, scatter**2)
    if options.read_noise is not None:
        return np.full(image.shape, options.read_noise**2)
    raise InputError(
        f"{exposure.obsid}: cannot estimate the background variance at {centre}: no variance plane, no "
        "background pixels and no read noise given",
        value=centre,
    )
