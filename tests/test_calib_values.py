"""Calibration products and reference catalogs with values that are not numbers, or nonsense, are refused at
load with a message naming the file (they gave a ValueError traceback, or were used silently)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from lsst.ts.auxtelwep.calibs import load_calibrations, write_image
from lsst.ts.auxtelwep.errors import CalibrationError, CatalogError
from lsst.ts.auxtelwep.exposure import AMP_NAMES
from lsst.ts.auxtelwep.instrument import DETECTOR_SHAPE
from lsst.ts.auxtelwep.isr import IsrConfig
from lsst.ts.auxtelwep.refcat import load_refcat

NO_IMAGES = IsrConfig(doBias=False, doDark=False, doFlat=False)


def _amps(directory: Path, **columns: list) -> Path:
    table = Table({"amp": sorted(AMP_NAMES), "gain": [1.1] * 16, "read_noise": [9.0] * 16})
    table["saturation"] = [120000.0] * 16
    for name, values in columns.items():
        table[name] = values
    table.write(directory / "amps.ecsv", format="ascii.ecsv")
    return directory / "amps.ecsv"


@pytest.mark.parametrize(
    ("column", "values", "problem"),
    [
        ("gain", ["abc"] * 16, "column gain is not numeric"),
        ("read_noise", [-1.0] * 16, "read_noise must be finite and >= 0 e-"),
        ("saturation", [np.nan] * 16, "saturation must be finite and >= 1000 adu"),
        ("saturation", [-5.0] * 16, "saturation must be finite and >= 1000 adu"),
        ("saturation", [10.0] * 16, "saturation must be finite and >= 1000 adu"),
    ],
)
def test_an_amps_table_with_nonsense_is_refused(
    tmp_path: Path, column: str, values: list, problem: str
) -> None:
    path = _amps(tmp_path, **{column: values})
    with pytest.raises(CalibrationError, match=rf"amps table {path}: {problem}"):
        load_calibrations(tmp_path, NO_IMAGES)


def test_a_dark_whose_darktime_is_not_a_number_is_refused(tmp_path: Path) -> None:
    _amps(tmp_path)
    write_image(tmp_path / "dark.fits", np.zeros(DETECTOR_SHAPE), "adu", DARKTIME="abc")
    config = IsrConfig(doBias=False, doDark=True, doFlat=False)
    with pytest.raises(CalibrationError, match=r"dark .*dark.fits: header DARKTIME='abc' is not a number"):
        load_calibrations(tmp_path, config)


def test_a_refcat_with_a_text_coordinate_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ref.ecsv"
    Table({"ra": ["abc", "def"], "dec": [-30.0, -30.1], "mag": [10.0, 11.0]}).write(path, format="ascii.ecsv")
    with pytest.raises(CatalogError, match=rf"{path}: column 'ra' is not numeric"):
        load_refcat(path)
