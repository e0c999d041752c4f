"""Offline reprocessing: every raw of a night is processed in a triplet or rejected with a reason."""

import json
import shutil
from pathlib import Path

import pytest
from astropy.io import fits

from lsst.ts.auxtelwep import reprocess
from lsst.ts.auxtelwep.cli import main
from lsst.ts.auxtelwep.commands.reprocess import _summary_line
from lsst.ts.auxtelwep.errors import InputError
from lsst.ts.auxtelwep.instrument import HexapodState
from lsst.ts.auxtelwep.reprocess import find_triplets
from lsst.ts.auxtelwep.sim.night import NightManifest, NightPlan, simulate_night


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, NightManifest]:
    out = tmp_path_factory.mktemp("night")
    plan = NightPlan(n_triplets=1, seed=3, hexapod=HexapodState(x=0.1, z=0.04), n_stars=3, blend_pair=False)
    manifest = simulate_night(out, plan)
    raw_dir = out / manifest.triplets[0].exposures[0].raw
    # Bad data a night can hold: a copy of a raw under another name (same OBSID) and a corrupt file.
    shutil.copy(raw_dir, raw_dir.with_name("AT_O_20240624_000099.fits"))
    raw_dir.with_name("AT_O_20240624_000050.fits").write_bytes(b"not a FITS file")
    return out, manifest


def test_find_triplets_groups_and_reports_every_raw(night: tuple[Path, NightManifest]) -> None:
    out, manifest = night
    found = find_triplets(out)
    assert found.n_raws == 5
    assert len(found.triplets) == 1
    triplet = found.triplets[0]
    roles = {e.role: e.obsid for e in manifest.triplets[0].exposures}
    assert (triplet.intra.stem, triplet.extra.stem) == (roles["intra"], roles["extra"])
    assert triplet.infocus is not None and triplet.infocus.stem == roles["infocus"]
    reasons = {r.obsids[0]: r.reason for r in found.rejected}
    assert "unreadable header" in reasons["AT_O_20240624_000050.fits"]
    # The copy carries the same OBSID: the reason names the file that was refused.
    assert reasons[roles["intra"]].startswith("AT_O_20240624_000099.fits: ")
    assert "already received" in reasons[roles["intra"]]
    assert len(found.rejected) == 2


def test_reprocess_cli_writes_one_line_per_triplet_and_rejection(
    night: tuple[Path, NightManifest], tmp_path: Path, capsys
) -> None:
    out, manifest = night
    results = tmp_path / "results.jsonl"
    status = main(
        [
            "reprocess",
            str(out),
            "--calibs",
            str(out / manifest.calibs),
            "--refcat",
            str(out / manifest.refcat),
            "--out",
            str(results),
            "--plot",
            str(tmp_path / "night.png"),
        ]
    )
    printed = capsys.readouterr().out
    assert status == 1  # some raws were rejected
    assert f"figure: {tmp_path / 'night.png'}" in printed and (tmp_path / "night.png").stat().st_size > 10_000
    assert "5 raws: 1 triplet, 2 rejections" in printed
    records = [json.loads(line) for line in results.read_text().splitlines()]
    processed = [r for r in records if "hexapod" in r]
    assert len(processed) == 1 and len([r for r in records if "rejected" in r]) == 2
    assert processed[0]["hexapod"]["z_mm"] == pytest.approx(-0.04, abs=0.003)


def test_a_raw_whose_obsid_disagrees_with_its_header_is_rejected(tmp_path: Path) -> None:
    # A raw whose OBSID (AT_O_<DAYOBS>_<SEQNUM:06d>) disagrees with its SEQNUM or DAYOBS was grouped by the
    # header's values and reported by the OBSID, without a word. Only the primary header is read.
    raw_dir = tmp_path / "raw" / "20240624"
    raw_dir.mkdir(parents=True)
    headers = {
        "AT_O_20240624_000007": {"DAYOBS": "20240624", "SEQNUM": 8},
        "AT_O_20240624_000009": {"DAYOBS": "20240625", "SEQNUM": 9},
        "AT_O_20240624_000010": {"DAYOBS": "20240624", "SEQNUM": 10},
    }
    for obsid, keys in headers.items():
        fits.PrimaryHDU(header=fits.Header({"OBSID": obsid, "REASON": "INTRA", **keys})).writeto(
            raw_dir / f"{obsid}.fits"
        )
    reasons = {r.obsids[0]: r.reason for r in find_triplets(tmp_path).rejected}
    assert reasons["AT_O_20240624_000007"] == (
        "AT_O_20240624_000007.fits: OBSID AT_O_20240624_000007 disagrees with the header's SEQNUM=8 "
        "(an OBSID is XX_X_<DAYOBS>_<SEQNUM:06d>)"
    )
    assert "disagrees with the header's DAYOBS=20240625 " in reasons["AT_O_20240624_000009"]
    assert "disagrees" not in reasons["AT_O_20240624_000010"]  # consistent: rejected for lack of partners


def test_a_triplet_line_names_its_images_and_the_errors() -> None:
    # Nights with the same GROUPIDs gave lines that could not be told apart, without any error.
    summary = {
        "intra": "AT_O_20240625_000001",
        "extra": "AT_O_20240625_000002",
        "infocus": "AT_O_20240625_000003",
        "detection": {"mode": "refit"},
        "zernikes": {
            "noll": [4, 7, 8, 11],
            "um": [-0.2113, -0.0178, 0.0359, 0.0],
            "um_err": [2e-4] * 4,
            "donuts_used": 4,
        },
        "hexapod": {"x_mm": -0.2012, "y_mm": 0.0998, "z_mm": -0.05, "u_deg": 0.0, "v_deg": 0.0},
        "hexapod_err": {"x_mm": 0.0031, "y_mm": 0.0031, "z_mm": 0.0001, "u_deg": None, "v_deg": None},
        "hexapod_solved_axes": ["x", "y", "z"],
        "timing_s": {"total": 2.8},
    }
    assert _summary_line("G1", summary) == (
        "AT_O_20240625_000001, AT_O_20240625_000002, AT_O_20240625_000003 (group G1): refit, 4 donuts, "
        "Z4=-211.3±0.2  Z7=-17.8±0.2  Z8=+35.9±0.2 nm; x -0.2012±0.0031 mm  y +0.0998±0.0031 mm  "
        "z -0.0500±0.0001 mm; u, v not solved; 2.8 s"
    )


def test_empty_data_root_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no raw/ directory"):
        find_triplets(tmp_path)


def test_interrupted_reprocess_keeps_the_lines_written(
    night: tuple[Path, NightManifest], tmp_path: Path, monkeypatch, capsys
) -> None:
    # A night can take many minutes: each line is on disk as soon as its triplet is done.
    out, manifest = night

    def interrupted(triplets, *, config):
        raise KeyboardInterrupt
        yield  # a generator, as process_triplets is

    monkeypatch.setattr("lsst.ts.auxtelwep.reprocess.process_triplets", interrupted)
    results = tmp_path / "results.jsonl"
    argv = ["reprocess", str(out), "--calibs", str(out / manifest.calibs), "--out", str(results)]
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    capsys.readouterr()
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(records) == 2 and all("rejected" in r for r in records)  # the two rejected raws


def test_one_raw_with_a_malformed_header_or_a_surprise_costs_only_itself(tmp_path: Path, monkeypatch) -> None:
    # A raw with SEQNUM='inf' stopped the whole night with an OverflowError (exit 1, traceback).
    raw_dir = tmp_path / "raw" / "20240624"
    raw_dir.mkdir(parents=True)
    for seq, keys in ((1, {"SEQNUM": "inf"}), (2, {"SEQNUM": 2}), (3, {"SEQNUM": 3})):
        obsid = f"AT_O_20240624_{seq:06d}"
        header = fits.Header({"OBSID": obsid, "DAYOBS": "20240624", "REASON": "INTRA", **keys})
        fits.PrimaryHDU(header=header).writeto(raw_dir / f"{obsid}.fits")
    (raw_dir / "AT_O_20240624_000004.fits").mkdir()
    real = reprocess.read_image_info

    def surprising(path: Path):
        if path.name == "AT_O_20240624_000003.fits":
            raise OverflowError("cannot convert float infinity to integer")
        return real(path)

    monkeypatch.setattr(reprocess, "read_image_info", surprising)
    reasons = {r.obsids[0]: r.reason for r in find_triplets(tmp_path).rejected}
    assert (
        "AT_O_20240624_000001.fits: header SEQNUM='inf' is not a number"
        in reasons["AT_O_20240624_000001.fits"]
    )
    assert "AT_O_20240624_000002" in reasons  # read, then rejected for lack of partners
    assert reasons["AT_O_20240624_000003.fits"].endswith(
        "AT_O_20240624_000003.fits: unexpected OverflowError: cannot convert float infinity to integer"
    )
    assert (
        "AT_O_20240624_000004.fits: is a directory, not a FITS file" in reasons["AT_O_20240624_000004.fits"]
    )


def test_camera_angles_from_a_table_reach_the_triplets(
    night: tuple[Path, NightManifest], tmp_path: Path
) -> None:
    # Real raws carry no camera angle: offline it comes from the EFD, per image, as the CSC reads it live.
    out, manifest = night
    roles = {e.role: e.obsid for e in manifest.triplets[0].exposures}
    table = tmp_path / "angles.csv"
    table.write_text(f"obsid,camera_angle_deg\n{roles['intra']},179.0\n{roles['extra']},-179.0\n")
    angles = reprocess.read_camera_angles(table)
    assert angles == {roles["intra"]: 179.0, roles["extra"]: -179.0}
    (triplet,) = find_triplets(out, camera_angles=angles).triplets
    assert triplet.camera_angle_deg == pytest.approx(-180.0)  # the pair's mean, across the wrap
    (triplet,) = find_triplets(out, camera_angles={roles["extra"]: 30.0}).triplets
    assert triplet.camera_angle_deg == 30.0
    (triplet,) = find_triplets(out).triplets
    assert triplet.camera_angle_deg is None  # the pipeline then looks for CAMANGLE, or solves focus only


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("obsid,angle\nA,1\n", "no column camera_angle_deg"),
        ("obsid,camera_angle_deg\nA,1\nB,\n", r"row 2 \(B\): camera_angle_deg='--' is no angle"),
        ("obsid,camera_angle_deg\nA,1\nB,north\n", "row 2 .B.: camera_angle_deg='north' is no angle"),
        ("obsid,camera_angle_deg\nA,1\nA,2\n", "A has two camera angles, 1 and 2 deg"),
        ("obsid,camera_angle_deg\nA,inf\n", "is no angle"),
    ],
)
def test_a_bad_camera_angle_table_is_named(tmp_path: Path, text: str, message: str) -> None:
    table = tmp_path / "angles.csv"
    table.write_text(text)
    with pytest.raises(InputError, match=message):
        reprocess.read_camera_angles(table)


def test_the_cli_names_an_unreadable_camera_angle_table(
    night: tuple[Path, NightManifest], tmp_path: Path, capsys
) -> None:
    out, _ = night
    assert main(["reprocess", str(out), "--camera-angles", str(tmp_path / "missing.ecsv")]) != 0
    assert "missing.ecsv: cannot read the camera angles as a table" in capsys.readouterr().err
