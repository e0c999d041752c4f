"""A damaged raw is refused with one message naming the file and what is wrong with it (not a library's
KeyError, nor "missing amplifier HDU" for a file cut short or an HDU of another kind)."""

from __future__ import annotations

import gc
import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from lsst.ts.auxtelwep.errors import RawFormatError
from lsst.ts.auxtelwep.exposure import AMP_NAMES, read_header, read_raw, wcs_from_header
from lsst.ts.auxtelwep.intake import read_image_info
from lsst.ts.auxtelwep.sim.signature import default_header, write_raw


@pytest.fixture(scope="module")
def small_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    amps = {name: np.full((2048, 576), 1000.0, dtype=np.float32) for name in AMP_NAMES}
    path = tmp_path_factory.mktemp("raws") / "good.fits"
    write_raw(path, amps, default_header())
    return path


def _refused(path: Path, expected: str) -> str:
    with pytest.raises(RawFormatError) as info:
        read_raw(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message, message
    return message


def test_an_overwritten_extension_header_card_is_named(small_raw: Path, tmp_path: Path) -> None:
    data = bytearray(small_raw.read_bytes())
    first_extension = len(fits.getheader(small_raw, 0).tostring())
    data[first_extension + 80 * 3 : first_extension + 80 * 4] = b"X" * 80  # NAXIS1's card
    path = tmp_path / "badcard.fits"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _refused(path, "header card 'NAXIS1' missing or damaged")
        gc.collect()  # a file left open by the failed read is closed, with a ResourceWarning, here
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_damaged_primary_card_it_can_do_without_is_named_once_with_its_file(
    small_raw: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    data = bytearray(small_raw.read_bytes())
    keys = list(fits.getheader(small_raw, 0).keys())
    index = keys.index("PROGRAM")
    data[80 * index : 80 * (index + 1)] = b"X" * 80
    path = tmp_path / "badprimary.fits"
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        read_image_info(path)
        raw = read_raw(path)
        read_header(path)
        wcs_from_header(raw.header)
    named = [r.getMessage() for r in caplog.records if "keyword is invalid" in r.getMessage()]
    # Once, with the file's name: not astropy's anonymous warning at every read of the header.
    assert len(named) == 1 and named[0].startswith(f"{path}: ")
    assert "keyword is invalid" not in capfd.readouterr().err
    assert "PROGRAM" not in raw.header


@pytest.mark.parametrize("extra", [1, 2240])
def test_a_raw_cut_inside_an_extension_header_is_truncated(
    small_raw: Path, tmp_path: Path, extra: int
) -> None:
    primary = len(fits.getheader(small_raw, 0).tostring())
    path = tmp_path / "cut.fits"
    path.write_bytes(small_raw.read_bytes()[: primary + extra])
    _refused(path, f"the file is truncated or corrupt: {extra} bytes after its 1 complete HDU(s)")


def test_a_raw_cut_after_its_primary_header_is_not_called_isrd(small_raw: Path, tmp_path: Path) -> None:
    primary = len(fits.getheader(small_raw, 0).tostring())
    path = tmp_path / "cut.fits"
    path.write_bytes(small_raw.read_bytes()[:primary])
    message = _refused(path, "only a primary HDU: a raw cut short after its primary header, or not a raw")
    assert "ISR'd" not in message


def test_a_truncated_gzip_raw_says_so(small_raw: Path, tmp_path: Path) -> None:
    whole = gzip.compress(small_raw.read_bytes(), compresslevel=1)
    path = tmp_path / "cut.fits.gz"
    path.write_bytes(whole[: len(whole) // 2])
    _refused(path, "the gzip stream is damaged or truncated")


def test_a_garbled_rice_hdu_is_named(small_raw: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    compressed = tmp_path / "rice.fits.fz"
    with fits.open(small_raw) as hdul:
        hdus = [fits.PrimaryHDU(header=hdul[0].header)]
        for h in hdul[1:]:
            # Noise, so that the tiles are long enough to garble (constant ones compress to a few bytes).
            noisy = rng.integers(900, 1100, size=h.data.shape).astype(np.int32)
            hdus.append(fits.CompImageHDU(noisy, h.header, compression_type="RICE_1"))
        fits.HDUList(hdus).writeto(compressed)
    data = bytearray(compressed.read_bytes())
    with fits.open(compressed) as hdul:
        info = hdul.fileinfo(16)
    start = info["datLoc"] + info["datSpan"] // 2  # the middle of the last HDU's compressed tiles
    data[start : start + 2000] = rng.integers(0, 256, size=2000).astype(np.uint8).tobytes()
    path = tmp_path / "garbled.fits.fz"
    path.write_bytes(bytes(data))
    _refused(path, "HDU Segment00 is unreadable or truncated (")


def test_what_stands_where_an_amplifier_should_be_is_named(small_raw: Path, tmp_path: Path) -> None:
    cube, table = tmp_path / "cube.fits", tmp_path / "table.fits"
    with fits.open(small_raw) as hdul:
        hdul["Segment12"].data = np.stack([hdul["Segment12"].data] * 2)
        hdul.writeto(cube)
    with fits.open(small_raw) as hdul:
        column = fits.Column(name="a", format="E", array=np.zeros(3))
        hdul[3] = fits.BinTableHDU.from_columns([column], name="Segment12")
        hdul.writeto(table)
    _refused(cube, "HDU Segment12 is a 3-D image of shape (2, 2048, 576), not a 2-D amplifier image")
    _refused(table, "HDU Segment12 is a BinTableHDU, not an image")


def test_a_directory_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "dir.fits").mkdir()
    _refused(tmp_path / "dir.fits", "is a directory, not a FITS file")


def test_warnings_of_other_code_while_a_header_is_read_are_not_named_after_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The record of warnings is process-wide: another thread's warning lands in it too.
    from lsst.ts.auxtelwep.intake import header_warnings_named

    path = tmp_path / "some.fits"
    with caplog.at_level("WARNING"), pytest.warns(RuntimeWarning, match="invalid value"):
        with header_warnings_named(path):
            warnings.warn("invalid value encountered in divide", RuntimeWarning, stacklevel=1)
    assert not [r for r in caplog.records if str(path) in r.getMessage()]
