"""End to end on simulated LATISS raws: pipeline.process and ``auxtelwep process`` against the truth."""

import concurrent.futures
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from pydantic import ValidationError

from lsst.ts.auxtelwep import estimation, pipeline, reprocess
from lsst.ts.auxtelwep.cadence import check_roles
from lsst.ts.auxtelwep.calibs import load_calibrations
from lsst.ts.auxtelwep.cli import main
from lsst.ts.auxtelwep.commands.process import _print_summary
from lsst.ts.auxtelwep.detection import detect_donuts
from lsst.ts.auxtelwep.errors import (
    AuxTelWepError,
    CatalogError,
    ConfigurationError,
    InputError,
    RawFormatError,
)
from lsst.ts.auxtelwep.exposure import Exposure, camera_angle_from_header, read_raw, write_exposure
from lsst.ts.auxtelwep.instrument import HexapodState, Role
from lsst.ts.auxtelwep.isr import IsrConfig, run_isr
from lsst.ts.auxtelwep.pipeline import PipelineConfig, Triplet, process
from lsst.ts.auxtelwep.refcat import RefCatalog
from lsst.ts.auxtelwep.sim.night import DEFAULT_POINTING, NightManifest, NightPlan, simulate_night
from lsst.ts.auxtelwep.sim.truth import Truth, truth_path
from lsst.ts.auxtelwep.stamps import cut_pairs

MISALIGNMENT = HexapodState(x=0.15, y=-0.2, z=0.06)


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, NightManifest]:
    out = tmp_path_factory.mktemp("night")
    plan = NightPlan(
        n_triplets=1, seed=11, hexapod=MISALIGNMENT, n_stars=8, blend_pair=False, n_cosmic_rays=3
    )
    return out, simulate_night(out, plan)


def _triplet(night: tuple[Path, NightManifest]) -> Triplet:
    out, manifest = night
    paths = {e.role: out / e.raw for e in manifest.triplets[0].exposures}
    return Triplet(paths["intra"], paths["extra"], paths["infocus"], group_id=manifest.triplets[0].groupid)


def test_process_recovers_the_injected_misalignment(night: tuple[Path, NightManifest]) -> None:
    out, manifest = night
    config = PipelineConfig(calibs_dir=out / manifest.calibs, refcat=out / manifest.refcat)
    result = process(_triplet(night), config=config)
    assert result.estimate.n_used >= 1
    # Truth: the offset that undoes the injected state. Issue 7's targets: focus within 0.002 mm,
    # decenter within 0.02 mm.
    offset = result.correction.offset
    assert offset.z == pytest.approx(-MISALIGNMENT.z, abs=0.002)
    assert np.hypot(offset.x + MISALIGNMENT.x, offset.y + MISALIGNMENT.y) < 0.02
    assert result.correction.solved_axes == ("x", "y", "z")
    assert result.notes == ()  # one group: nothing to say about the images
    for stage in ("isr", "detection", "estimation", "correction", "total"):
        assert result.timings_s[stage] > 0


def test_without_the_camera_angle_only_focus_is_solved(tmp_path: Path) -> None:
    # Real LATISS raws carry no CAMANGLE (the simulator's key). Taken as 0, a camera turned by 60 deg
    # sent x, y rotated by 60 deg (re-simulated after the correction: 0.225 mm left of 0.224): now only z is
    # solved unless the angle is given (the CSC records it from the mount; `process --camera-angle`).
    pointing = dataclasses.replace(DEFAULT_POINTING, camera_angle_deg=60.0)
    plan = NightPlan(
        n_triplets=1, seed=3, hexapod=MISALIGNMENT, pointing=pointing, n_stars=6, blend_pair=False
    )
    manifest = simulate_night(tmp_path, plan)
    paths = {e.role: tmp_path / e.raw for e in manifest.triplets[0].exposures}
    for path in paths.values():
        with fits.open(path, mode="update") as hdul:
            del hdul[0].header["CAMANGLE"]
    config = PipelineConfig(calibs_dir=tmp_path / manifest.calibs, refcat=tmp_path / manifest.refcat)
    unknown = process(Triplet(paths["intra"], paths["extra"], paths["infocus"]), config=config)
    assert unknown.correction.solved_axes == ("z",) and unknown.camera_angle_deg is None
    assert unknown.correction.offset.z == pytest.approx(-MISALIGNMENT.z, abs=0.002)
    assert unknown.correction.offset.x == 0.0 and unknown.correction.ops_offset is None
    assert any(note.startswith("camera angle unknown") for note in unknown.notes)
    given = process(
        Triplet(paths["intra"], paths["extra"], paths["infocus"], camera_angle_deg=420.0), config=config
    )  # 420 deg is 60
    offset = given.correction.offset
    assert given.correction.solved_axes == ("x", "y", "z") and given.camera_angle_deg == 60.0
    assert np.hypot(offset.x + MISALIGNMENT.x, offset.y + MISALIGNMENT.y) < 0.02


def test_the_repr_of_a_result_is_a_short_summary(night: tuple[Path, NightManifest]) -> None:
    # The generated reprs printed every array: 23 kB for a WavefrontResult, the whole frame's header for
    # an Exposure. Now one line each, arrays as their shape and dtype.
    out, manifest = night
    config = PipelineConfig(calibs_dir=out / manifest.calibs, refcat=out / manifest.refcat)
    triplet = _triplet(night)
    result = process(triplet, config=config, keep_pairs=True)
    text = repr(result)
    assert len(text) < 500 and "\n" not in text, text
    assert all(o in text for o in (result.intra_obsid, result.extra_obsid, result.infocus_obsid)), text
    assert f"mode={result.catalog.mode!r}" in text and f"donuts_used={result.estimate.n_used}/" in text
    assert f"4: {1000 * result.estimate.um[0]:.1f}" in text and "x " in text  # Z4 in nm, the correction
    exposure = pipeline.prepare(triplet.intra, config=config)
    for part in (result.estimate, *result.estimate.pairs, result.catalog, *result.pairs, exposure):
        assert len(repr(part)) < 600 and "array([" not in repr(part), repr(part)
    assert "array((4000, 4072), float32)" in repr(exposure) and result.intra_obsid in repr(exposure)
    # Frozen all the way down: a result's Zernikes cannot be changed in place by whoever reads them.
    with pytest.raises(ValueError, match="read-only"):
        result.estimate.um[0] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        result.estimate.pairs[0].zernikes_um[0] = 0.0


@pytest.mark.parametrize(
    "state", [HexapodState(x=2.0, y=-2.0, z=0.095), HexapodState(x=1.4, y=-1.4, z=-0.011)], ids=str
)
def test_a_millimetre_misalignment_is_measured_from_one_triplet(tmp_path: Path, state: HexapodState) -> None:
    # M2 2.8 mm off (0.5 um of coma, issue 7's robustness range) and 0.095 mm out of focus, or 2 mm off near
    # focus: the image moves 1000-1500 px, beyond the first astrometry search. Every donut was flagged as a
    # blend (its coma read as an overlap); near focus template detection split each donut in two; and once
    # found, the field taken from the pixel put 10 um into each axis.
    plan = NightPlan(n_triplets=1, seed=5, hexapod=state, n_stars=6, blend_pair=False, n_cosmic_rays=0)
    manifest = simulate_night(tmp_path, plan)
    paths = {e.role: tmp_path / e.raw for e in manifest.triplets[0].exposures}
    config = PipelineConfig(calibs_dir=tmp_path / manifest.calibs, refcat=tmp_path / manifest.refcat)
    result = process(
        Triplet(paths["intra"], paths["extra"], paths["infocus"]), config=config, keep_pairs=True
    )
    assert result.estimate.n_used >= 1
    np.testing.assert_allclose(result.correction.offset.as_array()[:3], -state.as_array()[:3], atol=0.003)
    # Each donut's Zernikes are the deviation at its star's field, as the truth's: at the pixel's field the
    # design's own variation over the ~1500 px the image moved was 18-26 nm of Z4 and up to 9 nm of Z5/Z6,
    # against errors of 0.3-2.7 nm. What is left is noise and the estimator's ~1 nm at these aberrations.
    truth = Truth.read(truth_path(paths["intra"]))
    data = result.to_json_dict()
    for donut in (d for d in data["detection"]["donuts"] if d["used"]):
        x, y = donut["intra_xy"]
        star = min(truth.stars, key=lambda s: np.hypot(s.col - x, s.row - y))
        expected = dict(zip(truth.noll, star.zernikes_um["ta"], strict=True))
        measured = dict(zip(data["zernikes"]["noll"], donut["zernikes_um"], strict=True))
        errors = dict(zip(data["zernikes"]["noll"], donut["zernikes_err_um"], strict=True))
        terms = range(4, 12)
        np.testing.assert_array_less(
            np.abs([measured[j] - expected[j] for j in terms]), [4 * errors[j] + 0.0015 for j in terms]
        )
        np.testing.assert_allclose(donut["star_field_deg"], [star.field_x_deg, star.field_y_deg], atol=5e-5)
    # `process --plot` draws what those Zernikes predict: the forward model, whose design reference is the
    # pixel's, holds them referred back there (held as reported: chi2/dof 1.15-1.5 at SNR ~5000, not 1.0).
    panels = pipeline.model_stamps(result, config=config, max_pairs=1)
    assert max(float(panel["label"].rsplit("chi2/dof ", 1)[1]) for panel in panels) < 1.1


def test_stamp_models_draw_the_reported_zernikes(night: tuple[Path, NightManifest]) -> None:
    # `process --algorithm tie --plot` drew a forward fit re-run from the TIE answer: chi2/dof 1.01 under an
    # estimate that can be tens of nm off. The model is what the reported Zernikes predict.
    out, manifest = night
    config = PipelineConfig(
        calibs_dir=out / manifest.calibs, refcat=out / manifest.refcat, estimation={"algorithm": "tie"}
    )
    result = process(_triplet(night), config=config, keep_pairs=True)
    used = next(p for p in result.estimate.pairs if p.used)

    def reported(noll_index: int, shift_um: float) -> pipeline.WavefrontResult:
        off = used.zernikes_um.copy()
        off[list(result.estimate.noll).index(noll_index)] += shift_um
        pairs = tuple(
            dataclasses.replace(p, zernikes_um=off) if p is used else p for p in result.estimate.pairs
        )
        return dataclasses.replace(result, estimate=dataclasses.replace(result.estimate, pairs=pairs))

    def chi2(panels: list[dict]) -> list[float]:
        return [float(panel["label"].split("chi2/dof ", 1)[1].split()[0]) for panel in panels]

    assert max(chi2(pipeline.model_stamps(result, config=config, max_pairs=1))) < 1.5
    # 200 nm of coma the stamps do not have.
    assert min(chi2(pipeline.model_stamps(reported(7, 0.2), config=config, max_pairs=1))) > 3.0
    # 3 um of defocus puts the model in a caustic: its fit fails, and the panels say so (the plot raised).
    panels = pipeline.model_stamps(reported(4, 3.0), config=config, max_pairs=1)
    assert all(
        "model" in panel and "model fit failed: the solution is in a caustic" in panel["label"]
        for panel in panels
    )
    assert min(chi2(panels)) > 10.0


def test_cli_json_shape_and_no_isr_path(night: tuple[Path, NightManifest], tmp_path: Path, capsys) -> None:
    out, manifest = night
    triplet = _triplet(night)
    # --no-isr: ISR'd single-image files, as a person with their own ISR would hand them in.
    calibs = load_calibrations(out / manifest.calibs, IsrConfig())
    isrd = {}
    for role, path in (("intra", triplet.intra), ("extra", triplet.extra)):
        isrd[role] = tmp_path / f"{role}.fits"
        exposure = run_isr(read_raw(path), calibs, IsrConfig())
        if role == "extra":  # from another group: processed, with a note (the CSC would not pair them)
            exposure.header["GROUPID"] = "2024-06-25T03:00:00.000"
        write_exposure(exposure, isrd[role])
    json_path = tmp_path / "out.json"
    status = main(
        [
            "process",
            str(isrd["intra"]),
            str(isrd["extra"]),
            "--no-isr",
            "--refcat",
            str(out / manifest.refcat),
            "--json",
            str(json_path),
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "Z4=" in printed
    assert f"  how: {json.loads(json_path.read_text())['detection']['reason']}" in printed
    (note,) = json.loads(json_path.read_text())["notes"]
    assert "different groups" in note and "2024-06-25T03:00:00.000" in note
    assert f"note: {note}" in printed.splitlines()[1]
    # The correction is printed with its uncertainty, and what was not solved is said.
    hexapod_line = next(line for line in printed.splitlines() if line.startswith("hexapod correction"))
    assert " z -0.0" in hexapod_line and "±" in hexapod_line and hexapod_line.endswith("u, v not solved")
    data = json.loads(json_path.read_text())
    # The ops script's rule on the same measurement, beside it for comparison (issue 7).
    ops_line = printed.splitlines()[printed.splitlines().index(hexapod_line) + 1]
    assert ops_line.startswith("  for comparison, the ops script's rule")
    assert f"z {data['hexapod_ops_rule']['z_mm']:+.4f} mm" in ops_line
    assert {"intra", "extra", "infocus", "detection", "zernikes", "hexapod", "timing_s"} <= set(data)
    assert data["intra"] == triplet.intra.stem and data["infocus"] is None
    assert data["detection"]["mode"] in ("wcs", "refit", "template")
    assert set(data["detection"]["donuts"][0]) >= {"intra_xy", "extra_xy", "used"}
    for rejected in data["detection"]["rejected"]:  # candidates detection did not keep, with why
        assert set(rejected) == {"xy", "role", "reason"} and rejected["reason"]
    assert ("rejected at detection: " in printed) == bool(data["detection"]["rejected"])
    assert data["zernikes"]["noll"] == list(range(4, 23))
    assert len(data["zernikes"]["um"]) == len(data["zernikes"]["um_err"]) == 19
    assert set(data["hexapod"]) == {"x_mm", "y_mm", "z_mm", "u_deg", "v_deg"}
    assert set(data["timing_s"]) >= {"isr", "detection", "estimation", "total"}
    assert data["hexapod"]["z_mm"] == pytest.approx(-MISALIGNMENT.z, abs=0.003)
    # Uncertainties beside every number: the correction's (none for the axes not solved), the
    # combination's scatter, and per donut its SNR, seeing and Zernike errors.
    errors = data["hexapod_err"]
    assert errors["u_deg"] is None and errors["v_deg"] is None
    assert 0 < errors["z_mm"] < 0.002 and 0 < errors["x_mm"] < 0.02 and 0 < errors["y_mm"] < 0.02
    assert len(data["zernikes"]["scatter_um"]) == 19
    used = [d for d in data["detection"]["donuts"] if d["used"]]
    assert used
    for donut in used:
        assert len(donut["snr"]) == 2 and min(donut["snr"]) > 20
        assert all(0.5 < f < 2.0 for f in donut["fwhm_arcsec"])
        assert len(donut["zernikes_err_um"]) == 19 and all(0 < e < 0.05 for e in donut["zernikes_err_um"])
        assert f"SNR {donut['snr'][0]:.0f}/{donut['snr'][1]:.0f}" in printed
        assert donut["structure_fraction"] == [0.0, 0.0]  # a simulation: nothing beyond the noise
    assert "residual structure 0%/0%" in printed and "note: residual structure" not in printed
    assert data["zernikes"]["residual_structure"] == 0.0
    # Real donuts leave structure the model does not hold (the LATISS pair: 21 %): the summary says so.
    used[0]["structure_fraction"] = [0.21, 0.2]
    _print_summary(data)
    assert "note: residual structure up to 21% of the donut light" in capsys.readouterr().out


def test_cli_bad_input_exits_with_one_line(tmp_path: Path, capsys) -> None:
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(b"SIMPLE  =                    T" + b"\0" * 100)
    other = tmp_path / "other.fits"
    other.write_bytes(corrupt.read_bytes())
    status = main(["process", str(corrupt), str(other)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and "corrupt.fits" in err[0] and "FITS" in err[0]
    status = main(["process", str(tmp_path / "missing.fits"), str(corrupt)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "missing.fits: no such file" in err
    status = main(["process", str(corrupt), str(other), "--calibs", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "doBias" in err and "bias.fits" in err


def test_cli_error_from_a_multiline_library_message_is_one_line(
    night: tuple[Path, NightManifest], tmp_path: Path, capsys
) -> None:
    # astropy's message for a table cut off mid-row spans three lines.
    out, manifest = night
    text = (out / manifest.refcat).read_text()
    cut = tmp_path / "refcat.ecsv"
    cut.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 8])
    triplet = _triplet(night)
    argv = ["process", str(triplet.intra), str(triplet.extra), "--refcat", str(cut), "--mode", "wcs"]
    status = main([*argv, "--calibs", str(out / manifest.calibs)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "refcat.ecsv" in err[0], err


def test_cli_refuses_raws_where_isrd_images_go(night: tuple[Path, NightManifest], capsys) -> None:
    # A raw's first amplifier segment used to be taken for the whole image, and the error was about donuts.
    triplet = _triplet(night)
    for argv in (
        ["process", str(triplet.intra), str(triplet.extra), "--no-isr"],
        ["detect", str(triplet.intra), str(triplet.extra)],
    ):
        status = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1, err
        assert f"{triplet.intra}: 16 image HDUs (Segment10 ... Segment00), as in a raw" in err[0]


def test_cli_refuses_images_given_in_the_wrong_role(night: tuple[Path, NightManifest], capsys) -> None:
    # The headers (REASON, FOCUSZ, OBSID) say what each exposure is: a swapped pair would otherwise be
    # "measured" with the sign of focus reversed.
    out, manifest = night
    triplet = _triplet(night)
    intra, extra, infocus = (str(p) for p in (triplet.intra, triplet.extra, triplet.infocus))
    obsid = {e.role: e.obsid for e in manifest.triplets[0].exposures}
    options = ["--calibs", str(out / manifest.calibs), "--refcat", str(out / manifest.refcat)]
    given_as_intra = "was given as the intra-focal image but its header says"
    given_twice = "was given as both the intra-focal and the"
    cases = {
        (extra, intra): f"{obsid['extra']} {given_as_intra} extra-focal",
        # The same file twice: refused by its path, before it is read.
        (intra, intra): f"{obsid['intra']}.fits {given_twice} extra-focal image",
        (infocus, extra): f"{obsid['infocus']} {given_as_intra} in-focus",
        (intra, extra, "--infocus", intra): f"{obsid['intra']}.fits {given_twice} in-focus image",
    }
    for args, message in cases.items():
        status = main(["process", *args, *options])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1 and message in err[0], (args, err)


def test_cli_refuses_images_of_different_nights(
    night: tuple[Path, NightManifest], tmp_path: Path, capsys
) -> None:
    # The extra of another night (same GROUPID, as two simulated nights had) was processed without a word.
    out, manifest = night
    triplet = _triplet(night)
    other = tmp_path / "AT_O_20240625_000002.fits"
    shutil.copy(triplet.extra, other)
    with fits.open(other, mode="update") as hdus:
        hdus[0].header["DAYOBS"] = "20240625"
        hdus[0].header["OBSID"] = other.stem
    status = main(["process", str(triplet.intra), str(other), "--calibs", str(out / manifest.calibs)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert (
        f"different nights (intra-focal {triplet.intra.stem} DAYOBS=20240624, extra-focal "
        "AT_O_20240625_000002 DAYOBS=20240625)" in err[0]
    ), err


def test_prepared_exposures_are_taken_once_and_only_while_current(
    night: tuple[Path, NightManifest], tmp_path: Path
) -> None:
    out, manifest = night
    config = PipelineConfig(calibs_dir=out / manifest.calibs, refcat=out / manifest.refcat)
    raw = tmp_path / _triplet(night).intra.name
    shutil.copy(_triplet(night).intra, raw)
    try:
        pipeline.prepare(raw, config=config)
        pipeline.prepare(raw, config=config)
        assert len(pipeline._PREPARED) == 1
        prepared = next(iter(pipeline._PREPARED.values()))
        assert pipeline._take_or_load(raw, config) is prepared
        assert not pipeline._PREPARED
        # Rewritten after it was prepared, or asked for with other ISR settings: calibrated again.
        pipeline.prepare(raw, config=config)
        stale = next(iter(pipeline._PREPARED.values()))
        other = config.model_copy(update={"isr": IsrConfig(doDark=False)})
        assert pipeline._take_or_load(raw, other) is not stale
        os.utime(raw, ns=(raw.stat().st_atime_ns, raw.stat().st_mtime_ns + 10**9))
        fresh = pipeline._take_or_load(raw, config)
        assert fresh is not stale
        np.testing.assert_array_equal(fresh.image, stale.image)
        with pytest.raises(AuxTelWepError, match=r"missing\.fits"):
            pipeline.prepare(tmp_path / "missing.fits", config=config)
    finally:
        pipeline._PREPARED.clear()


def test_the_images_of_a_triplet_read_the_calibrations_once(
    night: tuple[Path, NightManifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh process calibrates a triplet's three images in threads: each must not read the products itself.
    out, manifest = night
    config = PipelineConfig(calibs_dir=out / manifest.calibs, refcat=out / manifest.refcat)
    reads: list[Path] = []
    real_load = pipeline.calibs_module.load_calibrations

    def slow_load(directory: Path, isr: IsrConfig):
        reads.append(directory)
        time.sleep(0.2)  # as long as reading full-frame products takes, so the threads overlap
        return real_load(directory, isr)

    monkeypatch.setattr(pipeline.calibs_module, "load_calibrations", slow_load)
    pipeline._cached_calibrations.cache_clear()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as threads:
            loaded = list(
                threads.map(lambda _: pipeline._calibrations(config.calibs_dir, config.isr), range(3))
            )
    finally:
        pipeline._cached_calibrations.cache_clear()
    assert len(reads) == 1
    assert loaded[0] is loaded[1] is loaded[2]


def test_estimates_made_ahead_are_reused_and_change_nothing(
    night: tuple[Path, NightManifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, manifest = night
    config = PipelineConfig(calibs_dir=out / manifest.calibs, refcat=out / manifest.refcat)
    triplet = _triplet(night)
    fresh = process(triplet, config=config)
    estimation.forget_estimates()
    try:
        # Without the in-focus image (detection falls back to another mode): the same donuts, same pairs.
        assert pipeline.estimate_ahead(triplet.intra, triplet.extra, config=config) >= fresh.estimate.n_used

        def not_again(pair, **kwargs):
            raise AssertionError(f"pair {pair.index} estimated again")

        monkeypatch.setattr(estimation, "estimate_pair", not_again)
        reused = process(triplet, config=config)
    finally:
        pipeline._PREPARED.clear()
    assert (reused.catalog.mode, fresh.catalog.mode) == ("refit", "refit"), (
        reused.catalog.reason,
        fresh.catalog.reason,
    )
    np.testing.assert_array_equal(reused.estimate.um, fresh.estimate.um)
    assert reused.correction.offset == fresh.correction.offset


def _exposure(**keys: object) -> Exposure:
    return Exposure(
        image=np.zeros((2, 2), np.float32), mask=np.zeros((2, 2), np.uint16), header=fits.Header(keys)
    )


def test_roles_are_checked_from_the_header_without_an_obsid(tmp_path: Path) -> None:
    intra = _exposure(REASON="INTRA", FOCUSZ=0.8)
    extra = _exposure(REASON="EXTRA", FOCUSZ=-0.8)
    check_roles({Role.INTRA: intra, Role.EXTRA: extra})  # as given: nothing to say
    with pytest.raises(
        InputError, match=r"the intra-focal image \(no OBSID\) was given as the intra-focal image "
    ):
        check_roles({Role.INTRA: extra, Role.EXTRA: intra})
    # The stages check too: used one by one, a swapped pair fitted cleanly with the focus sign reversed.
    with pytest.raises(InputError, match=r"given as the intra-focal image but its header says extra-focal"):
        detect_donuts(extra, intra)
    with pytest.raises(InputError, match=r"given as the intra-focal image but its header says extra-focal"):
        cut_pairs(extra, intra, [])
    # The same file twice is refused by its path before anything is read (headers may lack OBSID).
    raw = tmp_path / "raw.fits"
    with pytest.raises(
        InputError, match=r"raw.fits was given as both the intra-focal and the extra-focal image"
    ):
        process(Triplet(raw, tmp_path / "." / "raw.fits"))


@pytest.mark.parametrize("value", ["abc", "nan", "inf"])
def test_a_camera_angle_that_is_not_a_number_is_named(value: str) -> None:
    with pytest.raises(InputError, match=rf"CAMANGLE='{value}' is not a number of degrees"):
        camera_angle_from_header(fits.Header({"OBSID": "AT_O_20240624_000001", "CAMANGLE": value}))


def test_an_unreadable_unneeded_infocus_file_is_not_labelled_as_read(tmp_path: Path) -> None:
    # Detection did not need the in-focus image: the result stands, but a file that does not read was
    # reported as the in-focus image all the same (its file name, or the OBSID of a truncated copy).
    good = tmp_path / "AT_O_20240624_000003.fits"
    hdus = [fits.PrimaryHDU(header=fits.Header({"OBSID": "AT_O_20240624_000003"}))]
    fits.HDUList([*hdus, fits.ImageHDU(np.zeros((100, 100), dtype=np.float32))]).writeto(good)
    assert pipeline._infocus_obsid(good, []) == ("AT_O_20240624_000003", None)
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[:8000])
    (tmp_path / "text.fits").write_text("not FITS\n" * 400)
    for path, problem in (
        (tmp_path / "nonexistent.fits", "no such file"),
        (tmp_path / "text.fits", "not a readable FITS file"),
        (truncated, "truncated"),
    ):
        obsid, note = pipeline._infocus_obsid(path, [])
        assert obsid is None
        assert note is not None and note.startswith("in-focus image not used (detection did not need it)")
        assert f"{path}: " in note and problem in note


def test_reprocess_goes_on_after_an_error_nobody_foresaw(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = iter([RuntimeError("zero-size array"), "result"])

    def flaky(triplet: Triplet, *, config: PipelineConfig) -> str:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(reprocess, "process", flaky)
    triplets = (Triplet(Path("a.fits"), Path("b.fits")), Triplet(Path("c.fits"), Path("d.fits")))
    outcomes = list(reprocess.process_triplets(triplets, config=PipelineConfig()))
    assert (
        outcomes[0][1] is None
        and "unexpected error in the pipeline: RuntimeError('zero-size array')" in outcomes[0][2]
    )
    assert outcomes[1][1:] == ("result", "")


def test_a_configuration_is_taken_as_a_mapping_and_checked_at_the_call(tmp_path: Path) -> None:
    missing = (tmp_path / "intra.fits", tmp_path / "extra.fits")
    # A mapping is validated into a PipelineConfig: the run gets as far as the (missing) files.
    with pytest.raises(RawFormatError, match=r"intra\.fits: no such file"):
        pipeline.prepare(missing[0], config={"apply_isr": False})
    with pytest.raises(RawFormatError, match="no such file"):
        process(Triplet(*missing), config={"apply_isr": False})
    with pytest.raises(ConfigurationError, match="wavelength_nm"):
        process(Triplet(*missing), config={"wavelength_nm": 5.0})
    with pytest.raises(InputError, match="config: expected PipelineConfig, got str"):
        process(Triplet(*missing), config="pipeline.yaml")
    with pytest.raises(InputError, match="triplet: expected Triplet, got tuple"):
        process(missing)
    # At the call, not once per triplet when the results are read.
    with pytest.raises(ConfigurationError, match="estimation"):
        reprocess.process_triplets((Triplet(*missing),), config={"estimation": "nonsense"})


def test_a_configuration_is_immutable_like_its_sections() -> None:
    config = PipelineConfig()
    for field, value in (("wavelength_nm", 5.0), ("estimation", "nonsense")):
        with pytest.raises(ValidationError, match="frozen"):
            setattr(config, field, value)
    assert config.model_copy(update={"wavelength_nm": 620.0}).wavelength_nm == 620.0


def test_the_reference_catalog_is_read_once_per_file_version(tmp_path: Path) -> None:
    path = tmp_path / "refcat.ecsv"
    RefCatalog.from_arrays([150.0, 150.1], [-30.0, -30.1], [10.0, 11.0]).write(path)
    config = PipelineConfig(refcat=path)
    first = pipeline._refcat(config)
    assert pipeline._refcat(config) is first  # each triplet of a night: no new read
    # A catalog replaced during the night is read again, also when its size stays the same.
    RefCatalog.from_arrays([150.0, 150.2], [-30.0, -30.2], [10.0, 12.0]).write(path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    replaced = pipeline._refcat(config)
    assert replaced is not first
    np.testing.assert_array_equal(replaced.ra_deg, [150.0, 150.2])
    path.unlink()
    with pytest.raises(CatalogError, match=r"refcat\.ecsv"):
        pipeline._refcat(config)
