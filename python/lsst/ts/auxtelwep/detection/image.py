"""A binned, cleaned copy of an exposure: what the correlation stages work on.

`prepare` bins the image by block means, removes a global background and then the median of every binned
column and row (sky gradients, hot or dark columns and rows), replaces masked pixels (``BAD``, ``SAT``,
``NO_DATA``) by the background, and optionally flattens cosmic rays: binned pixels much brighter than the mean
of their 8 neighbours (a donut's light, blurred by the seeing, is never that sharp at the binned scale).

Binned pixel ``(i, j)`` covers full-resolution rows ``i*b .. i*b+b-1`` and columns ``j*b .. j*b+b-1``, so its
centre is at full-resolution ``(j*b + (b-1)/2, i*b + (b-1)/2)`` as ``(x, y)``; see `to_full` and `to_binned`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ..errors import DetectionError
from ..exposure import MaskBit

__all__ = ["UNUSABLE_BITS", "BinnedImage", "bin_image", "local_maxima", "prepare", "to_binned", "to_full"]

UNUSABLE_BITS = int(MaskBit.BAD | MaskBit.SAT | MaskBit.NO_DATA)
"""Mask bits whose pixels carry no usable signal."""

_MAD_TO_SIGMA = 1.4826
# A binned pixel is a cosmic ray when it exceeds the mean of its neighbours by this many sigma and is more
# than twice as bright as they are (above background). Donut light never has such contrast after binning.
_CR_SIGMA = 6.0
_CR_CONTRAST = 2.0
_BIN_BAND_ROWS = 32  # binned rows per band in bin_image: 2 MB of a LATISS frame binned by 4


def to_full(ij: ArrayLike, binning: int) -> NDArray[np.float64]:
    """Binned ``(x, y)`` (or any array of binned coordinates) to full-resolution pixels (0-based).

    Parameters
    ----------
    ij : array-like
        Binned coordinates.
    binning : `int`
        Block size, pixels.
    """
    return np.asarray(ij, dtype=float) * binning + (binning - 1) / 2.0


def to_binned(xy: ArrayLike, binning: int) -> NDArray[np.float64]:
    """Full-resolution pixel coordinates to binned ones (inverse of `to_full`).

    Parameters
    ----------
    xy : array-like
        0-based full-resolution pixel coordinates.
    binning : `int`
        Block size, pixels.
    """
    return (np.asarray(xy, dtype=float) - (binning - 1) / 2.0) / binning


def bin_image(image: NDArray, binning: int) -> NDArray[np.float32]:
    """Block-mean ``image`` by ``binning`` (cropping the last partial block), float32.

    Sums strided views, which is about three times faster than a reshaped mean on a full LATISS frame, band
    by band of rows so that the strided passes find the band in cache (1.7 times faster again).

    Parameters
    ----------
    image : `numpy.ndarray`, shape (ny, nx)
        The image to bin.
    binning : `int`
        Block size, pixels.

    Raises
    ------
    DetectionError
        If the image is smaller than one block.
    """
    b = int(binning)
    ny, nx = image.shape[0] // b, image.shape[1] // b
    if ny == 0 or nx == 0:
        raise DetectionError(f"image of shape {image.shape} is smaller than one {b} x {b} bin")
    if b == 1:
        return np.array(image, dtype=np.float32)
    out = np.empty((ny, nx), dtype=np.float32)
    sums = np.empty((_BIN_BAND_ROWS * b, nx), dtype=np.float32)
    for start in range(0, ny, _BIN_BAND_ROWS):
        band = image[start * b : min(start + _BIN_BAND_ROWS, ny) * b, : nx * b]
        cols = sums[: band.shape[0]]
        cols[...] = band[:, 0::b]
        for j in range(1, b):
            cols += band[:, j::b]
        block = out[start : start + _BIN_BAND_ROWS]
        block[...] = cols[0::b]
        for i in range(1, b):
            block += cols[i::b]
    out *= np.float32(1.0 / (b * b))
    return out


@dataclasses.dataclass(frozen=True)
class BinnedImage:
    """A binned, background-subtracted, cleaned image.

    Attributes
    ----------
    data : `numpy.ndarray`, float32, shape (ny, nx)
        Block means minus background, image units per full-resolution pixel.
    bad : `numpy.ndarray` of `bool`, same shape
        Bins that held an unusable pixel (set to 0 in ``data``).
    binning : `int`
        Block size, pixels.
    background : `float`
        Global background removed before the column/row medians, image units per pixel.
    sigma_binned : `float`
        Robust noise of one bin, image units.
    sigma_pixel : `float`
        The same scaled to one full-resolution pixel (``sigma_binned * binning``).
    n_cosmic_rays : `int`
        Bins flattened as cosmic rays.
    n_bad_columns : `int`
        Binned columns whose median stood out by more than 5 sigma from the others (hot or dark columns).
    """

    data: NDArray[np.float32]
    bad: NDArray[np.bool_]
    binning: int
    background: float
    sigma_binned: float
    sigma_pixel: float
    n_cosmic_rays: int = 0
    n_bad_columns: int = 0


def local_maxima(values: NDArray, threshold: float, *, half: int = 1) -> tuple[NDArray, NDArray]:
    """Pixels at or above ``threshold`` that are the maximum of their ``(2 half + 1)^2`` neighbourhood.

    Only the pixels above the threshold are examined (edges clamped), which is much cheaper than a maximum
    filter over the whole map when the threshold is high.

    Parameters
    ----------
    values : `numpy.ndarray`, shape (ny, nx)
        The map (e.g. an SNR map).
    threshold : `float`
        Smallest value kept.
    half : `int`, optional
        Half-width of the neighbourhood, pixels.

    Returns
    -------
    rows, cols : `numpy.ndarray` of int
        Positions of the maxima (ties between neighbours keep both).
    """
    rows, cols = np.nonzero(values >= threshold)
    if rows.size == 0:
        return rows, cols
    ny, nx = values.shape
    centre = values[rows, cols]
    keep = np.ones(rows.size, dtype=bool)
    for di in range(-half, half + 1):
        for dj in range(-half, half + 1):
            if di == 0 and dj == 0:
                continue
            neighbour = values[np.clip(rows + di, 0, ny - 1), np.clip(cols + dj, 0, nx - 1)]
            keep &= centre >= neighbour
    return rows[keep], cols[keep]


def _or_blocks(mask: NDArray, binning: int) -> NDArray:
    """Bitwise OR of the mask over ``binning x binning`` blocks (strided, like `bin_image`)."""
    b = binning
    ny, nx = mask.shape[0] // b, mask.shape[1] // b
    if b == 4 and mask.dtype == np.uint16 and mask.flags.c_contiguous and mask.shape[1] % 4 == 0:
        # Fast path: four uint16 pixels of a row are one uint64, so a block's row is one word.
        words = mask.view(np.uint64)[: ny * 4]
        rows = words[0::4] | words[1::4] | words[2::4] | words[3::4]
        lanes = rows.view(np.uint16).reshape(ny, nx, 4)
        return lanes[..., 0] | lanes[..., 1] | lanes[..., 2] | lanes[..., 3]
    cropped = mask[: ny * b, : nx * b]
    cols = cropped[:, 0::b].copy()
    for j in range(1, b):
        cols |= cropped[:, j::b]
    out = cols[0::b].copy()
    for i in range(1, b):
        out |= cols[i::b]
    return out


def _local_median(data: NDArray, index: tuple[NDArray, NDArray], *, half: int) -> NDArray:
    """Median of the ``(2 half + 1)^2`` neighbourhood of each ``data[index]`` (edges clamped)."""
    offsets = np.arange(-half, half + 1)
    rows = np.clip(index[0][:, None, None] + offsets[None, :, None], 0, data.shape[0] - 1)
    cols = np.clip(index[1][:, None, None] + offsets[None, None, :], 0, data.shape[1] - 1)
    return np.median(data[rows, cols].reshape(index[0].size, -1), axis=1)


def _grow(index: tuple[NDArray, NDArray], shape: tuple[int, ...]) -> tuple[NDArray, NDArray]:
    """The pixels at ``index`` and their 4-connected neighbours on an image of ``shape``, in row-major order
    (`scipy.ndimage.binary_dilation` of those pixels, without a pass over the whole image)."""
    rows = np.concatenate([index[0], index[0] - 1, index[0] + 1, index[0], index[0]])
    cols = np.concatenate([index[1], index[1], index[1], index[1] - 1, index[1] + 1])
    on = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    return np.unravel_index(np.unique(np.ravel_multi_index((rows[on], cols[on]), shape)), shape)


def _median_along(values: NDArray, axis: int) -> NDArray:
    """``np.median(values, axis=axis)`` of finite values, the same numbers four to six times faster on the
    binned columns and rows of `prepare` and a third faster on its samples: one partition about the upper
    middle element, the lower one being the largest of the lower half (`numpy.median` partitions about both
    and about the last element, to detect NaN, which costs most on short rows)."""
    n = values.shape[axis]
    if n == 0:
        return np.median(values, axis=axis)  # NaN, with numpy's warning
    half = n // 2
    part = np.partition(values, half, axis=axis)
    upper = np.take(part, half, axis=axis)
    if n % 2:
        return upper
    lower = np.take(part, np.arange(half), axis=axis).max(axis=axis)
    return np.mean(np.stack([lower, upper]), axis=0)  # as numpy.median averages them


def _robust_sigma(values: NDArray) -> float:
    med = _median_along(values, axis=0)
    return float(_MAD_TO_SIGMA * _median_along(np.abs(values - med), axis=0))


def prepare(
    image: NDArray,
    mask: NDArray | None,
    *,
    binning: int,
    clean_cosmic_rays: bool = True,
    name: str = "the image",
) -> BinnedImage:
    """Bin and clean an image for correlation.

    Parameters
    ----------
    image : `numpy.ndarray`, shape (rows, cols)
        Full-resolution ISR'd image, ``image[y, x]``.
    mask : `numpy.ndarray` of uint16 or `None`
        `MaskBit` flags, same shape.
    binning : `int`
        Block size, pixels.
    clean_cosmic_rays : `bool`
        Flatten sharp bins (for defocal images; leave off for in-focus images, whose stars are sharp).
    name : `str`
        How an error names the image (e.g. its OBSID).

    Returns
    -------
    binned : `BinnedImage`

    Raises
    ------
    DetectionError
        If the image has no finite pixel.
    """
    b = int(binning)
    data = bin_image(image, b)
    bad = ~np.isfinite(data)  # a NaN or inf anywhere in a block poisons its mean
    if mask is not None and mask.any():
        bad |= (_or_blocks(mask, b) & UNUSABLE_BITS) != 0
    if bad.all():
        raise DetectionError(f"every pixel of {name} is masked (BAD, SAT or NO_DATA) or not finite")
    sample = data[::3, ::3][~bad[::3, ::3]]
    if sample.size < 100:
        sample = data[~bad]
    background = float(_median_along(sample, axis=0))
    data = data - np.float32(background)
    data[bad] = 0.0

    # Column and row medians: sky gradients and hot columns. A second pass leaves out bins more than
    # 5 sigma high (bright donuts and stars), so that a bright source does not carve a stripe.
    col_level = _median_along(data[::4], axis=0)
    col_sigma = _robust_sigma(col_level)
    n_bad_columns = int(
        np.count_nonzero(np.abs(col_level - np.median(col_level)) > 5 * max(col_sigma, 1e-12))
    )
    data -= col_level[np.newaxis, :]
    sigma0 = _robust_sigma(data[::3, ::3][~bad[::3, ::3]])
    clipped = np.where(data > 5.0 * sigma0, np.float32(0.0), data)
    col_level = _median_along(clipped[::4], axis=0)
    data -= col_level[np.newaxis, :]
    clipped -= col_level[np.newaxis, :]
    data -= _median_along(clipped[:, ::4], axis=1)[:, np.newaxis]
    data[bad] = 0.0

    sigma_binned = _robust_sigma(data[::3, ::3][~bad[::3, ::3]])
    if not np.isfinite(sigma_binned) or sigma_binned <= 0:
        sigma_binned = float(np.std(data[~bad])) or 1.0

    n_cr = 0
    if clean_cosmic_rays:
        neighbours = (ndimage.uniform_filter(data, size=3, mode="nearest") * 9.0 - data) / 8.0
        excess = data - neighbours
        sharp = (excess > _CR_SIGMA * sigma_binned) & (data > _CR_CONTRAST * np.maximum(neighbours, 0.0))
        n_cr = int(np.count_nonzero(sharp))
        if n_cr:
            # A cosmic-ray track can span two bins: grow the flagged set by one bin where it still stands
            # out, then replace each flagged bin by the median of its 5 x 5 neighbourhood.
            index = _grow(np.nonzero(sharp), data.shape)
            index = tuple(axis[excess[index] > 3.0 * sigma_binned] for axis in index)
            data[index] = _local_median(data, index, half=2)
    return BinnedImage(
        data=data.astype(np.float32, copy=False),
        bad=bad,
        binning=b,
        background=background,
        sigma_binned=sigma_binned,
        sigma_pixel=sigma_binned * b,
        n_cosmic_rays=n_cr,
        n_bad_columns=n_bad_columns,
    )
