"""``auxtelwep detect`` on exposure files: output table, JSON catalog, and one-line errors."""

import json

import detsynth as ds
import numpy as np

from lsst.ts.auxtelwep.cli import main
from lsst.ts.auxtelwep.detection import DonutCatalog
from lsst.ts.auxtelwep.exposure import write_exposure


def _write_pair(tmp_path):
    rng = np.random.default_rng(40)
    field = ds.make_field(rng, shape=(1024, 1100), positions=np.array([[400.0, 500.0], [760.0, 420.0]]))
    field.flux = np.array([2e6, 1e6])
    paths = []
    for name, offset in (("intra", (0.0, 0.0)), ("extra", (3.0, 2.0))):
        exposure = ds.render(field, rng, offset_px=offset)
        path = tmp_path / f"{name}.fits"
        write_exposure(exposure, path)
        paths.append(path)
    return paths


def test_detect_writes_json_and_prints_a_table(tmp_path, capsys) -> None:
    intra, extra = _write_pair(tmp_path)
    out = tmp_path / "donuts.json"
    status = main(["detect", str(intra), str(extra), "--json", str(out), "--max-donuts", "5"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "mode: template (requested auto)" in printed and "no reference catalog" in printed
    # The column is detection's aperture SNR, not the stamp SNR `process` prints as "SNR" (1217 vs 1597
    # for one donut): it was labelled "SNR" alone.
    header, first = printed.splitlines()[:2]
    end = header.index("aperture SNR") + len("aperture SNR")
    assert first[:end].split()[-1].isdigit()  # the values stand under the label
    cat = DonutCatalog.read(out)
    assert len(cat) == 2
    np.testing.assert_allclose(sorted(cat.positions("intra")[:, 0]), [400.0, 760.0], atol=1.0)
    assert json.loads(out.read_text())["mode"] == "template"


def test_detect_errors_are_one_line(tmp_path, capsys) -> None:
    intra, extra = _write_pair(tmp_path)
    status = main(["detect", str(intra), str(extra), "--mode", "wcs", "--no-fallback"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("auxtelwep detect: error: mode 'wcs' needs a reference catalog")
    status = main(["detect", str(intra), str(tmp_path / "absent.fits")])
    assert status == 2 and "absent.fits: no such file" in capsys.readouterr().err
    status = main(["detect", str(intra), str(extra), "--max-donuts", "0"])
    assert status == 2 and "invalid detection option" in capsys.readouterr().err
