"""The optical-model cache on disk: read back bit for bit, damaged files replaced, unwritable places fine."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lsst.ts.auxtelwep import instrument, model_cache
from lsst.ts.auxtelwep.estimation import forward_optics, tie_geometry
from lsst.ts.auxtelwep.instrument import DEFAULT_NOLL, DEFAULT_WAVELENGTH_M, AuxTel, Role

# What `AuxTel().sensitivity_map()` asks for.
FIT_ARGS = (AuxTel().optic_key, DEFAULT_WAVELENGTH_M, DEFAULT_NOLL, "ta")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty cache directory, and no fit kept in memory before or after."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(model_cache.CACHE_DIR_ENV, str(directory))
    instrument._sensitivity_fit.cache_clear()
    yield directory
    instrument._sensitivity_fit.cache_clear()


@pytest.fixture(scope="module")
def computed() -> tuple[np.ndarray, ...]:
    """The sensitivity fit as computed, without any cache."""
    return instrument._fit_sensitivity(*FIT_ARGS)


def _refuse(*args: object) -> None:
    raise AssertionError("computed again instead of read from the cache")


def _assert_same(got: tuple[np.ndarray, ...], expected: tuple[np.ndarray, ...]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b, strict=True)
        assert not a.flags.writeable


def test_a_stored_fit_is_read_back_equal(
    cache: Path, computed: tuple[np.ndarray, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = instrument._sensitivity_fit(*FIT_ARGS)
    _assert_same(first, computed)
    assert len(list(cache.glob("sensitivity_fit-*.npz"))) == 1
    assert not list(cache.glob(".*.tmp"))  # written whole, then renamed
    # A fresh process: nothing in memory, the fit read from disk.
    instrument._sensitivity_fit.cache_clear()
    monkeypatch.setattr(instrument, "_fit_sensitivity", _refuse)
    _assert_same(instrument._sensitivity_fit(*FIT_ARGS), computed)


def _garbage(path: Path) -> None:
    path.write_bytes(b"not an npz file")


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:3000])


def _stored_key(path: Path) -> np.ndarray:
    with np.load(path) as stored:
        return stored["key"]


def _wrong_shape(path: Path) -> None:
    key = _stored_key(path)
    with path.open("wb") as out:
        np.savez(out, key=key, a0=np.zeros((6, 3, 5)), a1=np.zeros((6, 3, 5)))


def _wrong_type(path: Path) -> None:
    key = _stored_key(path)
    shape = (6, len(DEFAULT_NOLL), 5)
    with path.open("wb") as out:
        np.savez(out, key=key, a0=np.zeros(shape, np.float32), a1=np.zeros(shape, np.float32))


def _other_key(path: Path) -> None:
    with np.load(path) as stored:
        arrays = {name: stored[name] + 1.0 for name in ("a0", "a1")}
    with path.open("wb") as out:
        np.savez(out, key=np.array('{"another": "key"}'), **arrays)


@pytest.mark.parametrize("damage", [_garbage, _truncated, _wrong_shape, _wrong_type, _other_key])
def test_a_damaged_file_is_computed_again_and_replaced(
    cache: Path, computed: tuple[np.ndarray, ...], damage: object
) -> None:
    instrument._sensitivity_fit(*FIT_ARGS)
    (path,) = cache.glob("sensitivity_fit-*.npz")
    damage(path)  # type: ignore[operator]
    instrument._sensitivity_fit.cache_clear()
    _assert_same(instrument._sensitivity_fit(*FIT_ARGS), computed)
    # Replaced by a good copy, which the next process reads.
    with np.load(path) as stored:
        np.testing.assert_array_equal(stored["a0"], computed[0], strict=True)
        np.testing.assert_array_equal(stored["a1"], computed[1], strict=True)


def test_an_unwritable_cache_directory_only_costs_time(
    tmp_path: Path, computed: tuple[np.ndarray, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A path under a regular file cannot be created, whoever runs the test (root ignores permissions).
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(model_cache.CACHE_DIR_ENV, str(blocker / "cache"))
    instrument._sensitivity_fit.cache_clear()
    try:
        _assert_same(instrument._sensitivity_fit(*FIT_ARGS), computed)
    finally:
        instrument._sensitivity_fit.cache_clear()
    assert list(tmp_path.iterdir()) == [blocker]


def test_the_key_holds_the_wavelength(cache: Path, computed: tuple[np.ndarray, ...]) -> None:
    instrument._sensitivity_fit(*FIT_ARGS)
    other = (FIT_ARGS[0], 600e-9, *FIT_ARGS[2:])
    red = instrument._sensitivity_fit(*other)
    # Its own file and its own numbers, not those stored for 677 nm.
    assert len(list(cache.glob("sensitivity_fit-*.npz"))) == 2
    _assert_same(red, instrument._fit_sensitivity(*other))
    assert not np.array_equal(red[0], computed[0])


def test_design_references_and_tie_offset_are_read_back_equal(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    telescope = AuxTel()
    expected_fit = forward_optics._fit_design(DEFAULT_WAVELENGTH_M, Role.EXTRA)[0]
    expected_offset = float(tie_geometry._detector_offset_m(telescope)[0])
    monkeypatch.setattr(forward_optics, "_DESIGN_FITS", {})
    tie_geometry.auxtel_detector_offset_m.cache_clear()
    forward_optics.design_fits(DEFAULT_WAVELENGTH_M)
    tie_geometry.auxtel_detector_offset_m(telescope)
    assert len(list(cache.glob("design_fit-*.npz"))) == 2  # intra and extra
    assert len(list(cache.glob("detector_offset-*.npz"))) == 1
    # A fresh process: read, not computed; the camera angle turns no part of the aligned design.
    monkeypatch.setattr(forward_optics, "_DESIGN_FITS", {})
    tie_geometry.auxtel_detector_offset_m.cache_clear()
    monkeypatch.setattr(forward_optics, "_fit_design", _refuse)
    monkeypatch.setattr(tie_geometry, "_detector_offset_m", _refuse)
    try:
        fits = forward_optics.design_fits(DEFAULT_WAVELENGTH_M)
        offset = tie_geometry.auxtel_detector_offset_m(telescope.with_camera_angle(-70.0))
    finally:
        tie_geometry.auxtel_detector_offset_m.cache_clear()
    np.testing.assert_array_equal(fits[(DEFAULT_WAVELENGTH_M, "extra")], expected_fit, strict=True)
    assert not fits[(DEFAULT_WAVELENGTH_M, "extra")].flags.writeable
    assert offset == expected_offset


def test_unreadable_code_turns_the_cache_off(cache: Path) -> None:
    # Without the source to hash, nothing tells an old result from a new one: computed, never stored.
    arrays = model_cache.cached_arrays(
        "trial", {}, lambda: (np.arange(3.0),), shapes=((3,),), sources=(str(cache / "missing.py"),)
    )
    np.testing.assert_array_equal(arrays[0], np.arange(3.0))
    assert not cache.exists()


def test_cache_directory_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(model_cache.CACHE_DIR_ENV, str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(model_cache.CACHE_DIR_ENV)
    assert model_cache.cache_dir() == tmp_path / "xdg" / "ts_auxtelwep"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG specification says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert model_cache.cache_dir() == tmp_path / "home" / ".cache" / "ts_auxtelwep"
