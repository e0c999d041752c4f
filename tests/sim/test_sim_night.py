"""``auxtelwep simulate``: the night's directory tree, manifest, triplet grouping and truths."""

import json

import pytest
from astropy.io import fits

from lsst.ts.auxtelwep.cli import main
from lsst.ts.auxtelwep.intake import RawLocator
from lsst.ts.auxtelwep.sim import night as night_module
from lsst.ts.auxtelwep.sim.night import NightManifest, NightPlan
from lsst.ts.auxtelwep.sim.scene import Truth


@pytest.mark.slow
def test_simulate_night_cli_writes_the_documented_tree(tmp_path, capsys) -> None:
    out = tmp_path / "night"
    argv = ["simulate", "night", "--triplets", "2", "--out", str(out), "--seed", "4", "--stars", "4"]
    argv += ["--hexapod", "0.1,0,0.02,0,0", "--hexapod-step", "0,0.05,0,0,0", "--cosmic-rays", "0"]
    argv += ["--wcs-error", "30,-20,0.5"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "wrote 6 raws in 2 triplets" in printed and "intra AT_O_" in printed
    # doc/simulator.md: night.json, refcat.ecsv, calibs/, raw/<DAYOBS>/<OBSID>.fits + .truth.json beside.
    for name in ("night.json", "refcat.ecsv", "calibs/bias.fits", "calibs/dark.fits", "calibs/flat.fits"):
        assert (out / name).is_file(), name
    assert (out / "calibs" / "amps.ecsv").is_file()
    manifest = NightManifest.read(out)
    assert len(manifest.triplets) == 2
    locator = RawLocator(str(out))  # the CSC's way of finding raws under a data root
    seqnums = []
    for k, triplet in enumerate(manifest.triplets):
        assert [e.role for e in triplet.exposures] == ["intra", "extra", "infocus"]
        assert triplet.hexapod.y == pytest.approx(0.05 * k)
        focus = []
        for record in triplet.exposures:
            assert locator.find(record.obsid) == out / record.raw
            header = fits.getheader(out / record.raw, 0)
            assert header["GROUPID"] == triplet.groupid and header["OBSID"] == record.obsid
            assert header["REASON"] == record.role.upper()
            focus.append(header["FOCUSZ"])
            truth = Truth.read(out / record.truth)
            assert truth.raw_file == f"{record.obsid}.fits" and truth.groupid == triplet.groupid
            assert truth.hexapod == triplet.hexapod and truth.wcs_error == (30.0, -20.0, 0.5)
            assert any(s.on_chip for s in truth.stars)
            seqnums.append(record.seqnum)
        # FACTS.md section 1: intra +0.8, extra -0.8011, in-focus 0; the smaller FOCUSZ is extra.
        assert focus == pytest.approx([0.8, -0.8011, 0.0])
    assert seqnums == list(range(1, 7))
    assert manifest.triplets[0].groupid != manifest.triplets[1].groupid
    # Triplets are dithered: pointing differs by arcseconds.
    dra = abs(manifest.triplets[0].ra_deg - manifest.triplets[1].ra_deg) * 3600
    assert 0 < dra < 60
    assert json.loads((out / "night.json").read_text())["refcat"] == "refcat.ecsv"


def test_cli_refuses_bad_values_with_a_message(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "night", "--triplets", "1", "--out", str(tmp_path), "--hexapod", "1,2"])
    assert "expected 5 comma-separated numbers" in capsys.readouterr().err
    argv = [
        "simulate",
        "exposure",
        "--out",
        str(tmp_path / "x.fits"),
        "--catalog",
        str(tmp_path / "none.ecsv"),
    ]
    assert main(argv) == 2
    assert "none.ecsv" in capsys.readouterr().err
    assert main(["simulate", "night", "--triplets", "0", "--out", str(tmp_path)]) == 2
    assert "n_triplets=0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="start="):
        NightPlan(n_triplets=1, start="tonight")


def test_group_times_follow_the_dayobs(tmp_path, monkeypatch) -> None:
    # Every night used to get GROUPIDs of 2024-06-25 whatever its DAYOBS, so two simulated nights had the
    # same GROUPIDs. Rendering is replaced: only the names and times are checked.
    written = []
    monkeypatch.setattr(night_module, "write_calibrations", lambda *args, **kwargs: None)
    monkeypatch.setattr(
        night_module, "simulate_exposure", lambda path, **kw: written.append(kw["observation"])
    )
    groups = {}
    for dayobs in ("20240624", "20240625"):
        plan = NightPlan(n_triplets=2, dayobs=dayobs, cadence_s=30.0, n_stars=2, blend_pair=False)
        groups[dayobs] = [t.groupid for t in night_module.simulate_night(tmp_path / dayobs, plan).triplets]
    assert groups == {
        "20240624": ["2024-06-25T02:00:00.000", "2024-06-25T02:01:30.000"],
        "20240625": ["2024-06-26T02:00:00.000", "2024-06-26T02:01:30.000"],
    }
    assert written[3].dayobs == "20240624" and written[3].date_obs == "2024-06-25T02:01:30.000"
    assert written[6].groupid == "2024-06-26T02:00:00.000"
    # An explicit start still wins; a DAYOBS that is not a date is named.
    assert NightPlan(n_triplets=1, start="2024-07-01T23:00:00").first_start().day == 1
    with pytest.raises(ValueError, match="dayobs='2024-6-24'"):
        NightPlan(n_triplets=1, dayobs="2024-6-24")
