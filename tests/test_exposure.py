"""LATISS amplifier geometry and the boresight WCS convention."""

import numpy as np
import pytest
from astropy.io import fits

from lsst.ts.auxtelwep.detection.image import prepare
from lsst.ts.auxtelwep.errors import DetectionError, RawFormatError
from lsst.ts.auxtelwep.exposure import (
    AMP_NAMES,
    Exposure,
    amp_geometry,
    assemble,
    boresight_wcs,
    disassemble,
    read_exposure,
    wcs_from_header,
    write_exposure,
)


def test_hdu_order_and_geometry() -> None:
    assert AMP_NAMES[:2] == ("C10", "C11") and AMP_NAMES[8] == "C07" and AMP_NAMES[-1] == "C00"
    geoms = {g.name: g for g in amp_geometry()}
    assert geoms["C10"].hdu == 1 and geoms["C00"].hdu == 16
    assert geoms["C13"].rows == slice(2000, 4000) and geoms["C13"].flip_y and geoms["C13"].flip_x
    assert geoms["C03"].rows == slice(0, 2000) and not geoms["C03"].flip_y and geoms["C03"].flip_x
    assert geoms["C05"].cols == slice(2545, 3054)


def test_assemble_round_trip_and_corners() -> None:
    image = np.arange(4000 * 4072, dtype=np.float32).reshape(4000, 4072)
    amps = disassemble(image)
    np.testing.assert_array_equal(assemble(amps), image)
    # First pixel read by C00 (bottom half, flipped in x) is the right end of its block's bottom row.
    assert amps["C00"][0, 0] == image[0, 508]
    # C10 (top half, flipped in x and y) starts at the top-right corner of its block.
    assert amps["C10"][0, 0] == image[3999, 508]
    with pytest.raises(RawFormatError, match="4072"):
        disassemble(image[:, :100])


def test_boresight_wcs_convention() -> None:
    wcs = boresight_wcs(150.0, -30.0, 0.0, scale_arcsec_per_px=0.1)
    ra0, dec0 = wcs.pixel_to_world_values(2035.5, 1999.5)
    assert (float(ra0), float(dec0)) == pytest.approx((150.0, -30.0))
    # ROTPA = 0: +row is north, +col is west (RA decreases).
    _, dec_up = wcs.pixel_to_world_values(2035.5, 2099.5)
    ra_right, _ = wcs.pixel_to_world_values(2135.5, 1999.5)
    assert float(dec_up) - dec0 == pytest.approx(100 * 0.1 / 3600, rel=1e-3)
    assert float(ra_right) < ra0


@pytest.mark.parametrize("name", ["isr.fits", "isr.fits.fz"])
def test_an_exposure_is_written_and_read_back_unchanged(tmp_path, name) -> None:
    rng = np.random.default_rng(3)
    image = rng.normal(100.0, 5.0, (60, 50)).astype(np.float32)
    image[5, 5] = np.nan
    mask = np.zeros(image.shape, np.uint16)
    mask[3, 4] = 5
    header = fits.Header({"OBSID": "AT_O_20240624_000001", "DAYOBS": "20240624"})
    exposure = Exposure(image=image, mask=mask, header=header, wcs=None, variance=image / 2, units="electron")
    path = tmp_path / name
    write_exposure(exposure, path)
    back = read_exposure(path)
    np.testing.assert_array_equal(back.image, image)  # lossless, NaN included
    np.testing.assert_array_equal(back.mask, mask)
    np.testing.assert_array_equal(back.variance, image / 2)
    assert (back.header["OBSID"], back.units) == ("AT_O_20240624_000001", "electron")
    with fits.open(path) as hdul:
        compressed = [isinstance(hdu, fits.CompImageHDU) for hdu in hdul[1:]]
    assert compressed == [name.endswith(".fz")] * len(compressed)


def test_a_mask_or_variance_plane_of_another_shape_is_named(tmp_path) -> None:
    # An ISR'd file whose MASK was 100 x 100 passed `detect` and failed `process --no-isr` on "no variance
    # plane"; planes are used pixel for pixel against the image.
    image = np.zeros((200, 300), np.float32)
    with pytest.raises(RawFormatError, match=r"AT_X: its variance plane has shape \(200, 200\), the image"):
        Exposure(
            image=image,
            mask=np.zeros(image.shape, np.uint16),
            header=fits.Header({"OBSID": "AT_X"}),
            variance=np.zeros((200, 200), np.float32),
        )
    path = tmp_path / "isrd.fits"
    hdus = [fits.PrimaryHDU(image), fits.ImageHDU(np.zeros((100, 100), np.uint16), name="MASK")]
    fits.HDUList(hdus).writeto(path)
    with pytest.raises(RawFormatError, match=r"isrd.fits: .*its mask plane has shape \(100, 100\)"):
        read_exposure(path)


def test_an_image_with_nothing_usable_is_named_by_detection() -> None:
    image = np.full((400, 400), np.nan, np.float32)
    with pytest.raises(DetectionError, match=r"every pixel of AT_O_20240624_000001 is masked"):
        prepare(image, None, binning=4, name="AT_O_20240624_000001")


def test_wcs_keys_without_values_are_no_wcs() -> None:
    # LATISS raws since 2023 (e.g. AT_O_20240624_000106): the header service writes the TAN keys empty;
    # astropy then failed on None.strip() and every current raw was unreadable.
    header = fits.Header({"OBSID": "AT_O_20240624_000106", "RA": 150.0})
    for key in ("WCSAXES", "CTYPE1", "CTYPE2", "CUNIT1", "CRVAL1", "CRPIX1", "CD1_1", "EQUINOX"):
        header[key] = None
    assert wcs_from_header(header) is None
