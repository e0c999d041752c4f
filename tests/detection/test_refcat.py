"""Reference catalogs: formats, column names, units, and the errors for unusable files."""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

from lsst.ts.auxtelwep.errors import CatalogError
from lsst.ts.auxtelwep.refcat import RefCatalog, load_refcat


def _table(rng: np.random.Generator, n: int = 20) -> Table:
    return Table(
        {
            "ra": rng.uniform(149.9, 150.1, n),
            "dec": rng.uniform(-30.1, -29.9, n),
            "mag": rng.uniform(9, 14, n),
        }
    )


def test_ecsv_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(1)
    table = _table(rng)
    path = tmp_path / "cat.ecsv"
    table.write(path, format="ascii.ecsv")
    cat = load_refcat(path)
    assert len(cat) == 20 and cat.mag_column == "mag" and cat.source == str(path)
    np.testing.assert_array_equal(cat.ra_deg, table["ra"])
    np.testing.assert_array_equal(cat.mag, table["mag"])
    with pytest.raises(ValueError, match="read-only"):
        cat.ra_deg[0] = 0.0
    again = tmp_path / "again.fits"
    cat.write(again)
    np.testing.assert_array_equal(load_refcat(again).dec_deg, cat.dec_deg)


def test_gaia_columns_units_and_bad_rows(tmp_path) -> None:
    rng = np.random.default_rng(2)
    table = _table(rng, 10)
    gaia = Table(
        {
            "RA": np.deg2rad(table["ra"]) * u.rad,  # an angle unit is honoured
            "Dec": table["dec"] * u.deg,
            "phot_g_mean_mag": table["mag"],
        }
    )
    gaia["phot_g_mean_mag"][3] = np.nan  # dropped
    path = tmp_path / "gaia.fits"
    gaia.write(path)
    cat = load_refcat(path)
    assert cat.mag_column == "phot_g_mean_mag" and len(cat) == 9
    np.testing.assert_allclose(cat.ra_deg, np.delete(np.asarray(table["ra"]), 3), rtol=0, atol=1e-9)


def test_missing_columns_are_named(tmp_path) -> None:
    path = tmp_path / "nomag.ecsv"
    Table({"ra": [1.0], "dec": [2.0], "flux": [3.0]}).write(path, format="ascii.ecsv")
    with pytest.raises(CatalogError, match=r"magnitude \(one of mag, phot_g_mean_mag\).*flux"):
        load_refcat(path)
    with pytest.raises(CatalogError, match="rmag"):
        load_refcat(path, mag_column="rmag")


def test_unusable_files(tmp_path) -> None:
    with pytest.raises(CatalogError, match="is a directory, not a reference catalog file"):
        load_refcat(tmp_path)
    with pytest.raises(CatalogError, match="no such reference catalog"):
        load_refcat(tmp_path / "absent.ecsv")
    with pytest.raises(CatalogError, match="unknown reference-catalog format"):
        load_refcat(tmp_path / "cat.txt")
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"not a fits file at all")
    with pytest.raises(CatalogError, match="not a readable fits table"):
        load_refcat(broken)
    empty = tmp_path / "nan.ecsv"
    Table({"ra": [np.nan], "dec": [1.0], "mag": [10.0]}).write(empty, format="ascii.ecsv")
    with pytest.raises(CatalogError, match="no row with finite"):
        load_refcat(empty)
    radians = tmp_path / "radians.ecsv"
    Table({"ra": [1.0], "dec": [95.0], "mag": [10.0]}).write(radians, format="ascii.ecsv")
    with pytest.raises(CatalogError, match=r"beyond \+-90"):
        load_refcat(radians)


def test_parquet(tmp_path) -> None:
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(3)
    path = tmp_path / "cat.parquet"
    _table(rng).write(path)
    assert len(load_refcat(path)) == 20


def test_from_arrays_checks_lengths() -> None:
    with pytest.raises(CatalogError, match="different lengths"):
        RefCatalog.from_arrays([1.0, 2.0], [3.0], [4.0])
    cat = RefCatalog.from_arrays([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [12.0, 10.0, 11.0])
    assert list(cat.subset(cat.mag < 11.5).ra_deg) == [2.0, 3.0]
