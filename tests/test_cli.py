"""The ``auxtelwep`` command line: subcommands are found, and building the parser stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lsst.ts.auxtelwep.cli import _attach_negative_lists, build_parser, main
from lsst.ts.auxtelwep.commands import count_of

COMMANDS = {"calibs", "demo", "detect", "isr", "process", "reprocess", "schema", "simulate"}


def test_every_command_is_registered() -> None:
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(subparsers.choices) == COMMANDS


def test_parser_does_not_import_the_heavy_stack() -> None:
    # `auxtelwep --help` and the argument errors must answer at once: each command imports its
    # implementation (optics, SAL, simulator, plotting) only when it runs.
    code = (
        "import json, sys; from lsst.ts.auxtelwep.cli import build_parser; build_parser(); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('batoid', 'galsim', 'danish', 'scipy', 'matplotlib', 'cyclonedds', 'astropy', 'pydantic'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_the_command_skips_the_collection_at_exit() -> None:
    # 0.25 s of a fresh `auxtelwep process` went to the collector walking every imported module's objects
    # at shutdown. An exit handler registered before main's runs after it: they are frozen by then.
    code = (
        "import atexit, gc; atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0)); "
        "from lsst.ts.auxtelwep.cli import main; main(['schema', '--check'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "frozen True"


def test_demo_option_defaults_are_the_library_defaults() -> None:
    # commands/demo.py writes the defaults again so that --help shows them without importing the demo.
    from lsst.ts.auxtelwep.demo import DemoOptions

    args = build_parser().parse_args(["demo"])
    library = DemoOptions()
    for name in ("n_triplets", "seeing_arcsec", "seed", "initial", "draw", "out", "n_stars", "keep_data"):
        assert getattr(args, name) == getattr(library, name), name
    assert (not args.no_stamps) == library.stamps


def test_detection_rejections_are_summarised_by_reason() -> None:
    # Template detection can reject dozens of candidates (edge peaks, cosmic rays, a saturated star's
    # trail): one line, most frequent reason first, positions only where they are few.
    from lsst.ts.auxtelwep.commands.process import _rejection_summary

    rejected = [
        {"xy": [3970.0 + i, 2513.0], "role": "intra", "reason": "within 128 px of the edge"} for i in range(5)
    ]
    rejected.append({"xy": [1843.9, 1469.5], "role": "intra", "reason": "saturated"})
    assert _rejection_summary(rejected) == "5 within 128 px of the edge; 1 saturated [intra (1844, 1470)]"


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    # `auxtelwep schema | head -1`: the pipe closes before the command writes. No traceback on stderr, and
    # the shell's status for a broken pipe (128 + SIGPIPE) rather than a crash.
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsst.ts.auxtelwep.cli", "schema"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # type: ignore[union-attr]
    stderr = proc.stderr.read().decode()  # type: ignore[union-attr]
    assert proc.wait(timeout=60) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_offsets_may_start_with_a_minus_sign() -> None:
    # argparse refused `--hexapod -0.3,0.2,0.1,0,0` ("expected one argument"): a value starting with "-"
    # is an option to it unless it is a single negative number.
    argv = ["simulate", "night", "--triplets", "1", "--out", "x", "--hexapod", "-0.3,0.2,0.1,0,0"]
    argv += ["--wcs-error", "-5,3,-0.1", "--seed", "-1"]
    args = build_parser().parse_args(_attach_negative_lists(argv))
    assert tuple(args.hexapod) == (-0.3, 0.2, 0.1, 0.0, 0.0)
    assert tuple(args.wcs_error) == (-5.0, 3.0, -0.1) and args.seed == -1


def test_an_output_in_a_missing_directory_is_refused_before_any_work(tmp_path, capsys) -> None:
    # `process --json /typo/out.json` processed the triplet for seconds, then died with a traceback.
    missing = tmp_path / "typo" / "out.json"
    for argv in (
        ["process", "a.fits", "b.fits", "--json", str(missing)],
        ["reprocess", str(tmp_path), "--plot", str(missing)],
        ["isr", "a.fits", "--out", str(missing)],
    ):
        with pytest.raises(SystemExit) as cm:
            build_parser().parse_args(argv)
        assert cm.value.code == 2
        # The message said "... is not a directory" of a directory that simply did not exist.
        assert f"directory {missing.parent} does not exist" in capsys.readouterr().err
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for argv, said in (
        (["detect", "a.fits", "b.fits", "--json", str(tmp_path)], "is a directory, not a file"),
        (["detect", "a.fits", "b.fits", "--json", str(a_file / "out.json")], f"{a_file} is not a directory"),
        (["simulate", "exposure", "--out", str(a_file / "sub" / "x.fits")], f"{a_file} is not a directory"),
    ):
        with pytest.raises(SystemExit) as cm:
            build_parser().parse_args(argv)
        assert cm.value.code == 2
        assert said in capsys.readouterr().err


def test_simulate_exposure_makes_its_directory(tmp_path, capsys) -> None:
    # doc/simulator.md's `simulate exposure --out /tmp/one/...` was refused when /tmp/one did not exist,
    # though `simulate night` makes its data root: a generated file's directory is made, as there.
    out = tmp_path / "one" / "AT_O_20240624_000001.fits"
    argv = ["simulate", "exposure", "--out", str(out), "--stars", "1", "--no-blend", "--cosmic-rays", "0"]
    assert main(argv) == 0, capsys.readouterr().err
    assert out.is_file() and (out.parent / "refcat.ecsv").is_file()


def test_a_file_the_system_refuses_is_one_line(tmp_path, capsys) -> None:
    # A write the system refuses after parsing (here a directory procfs will not create) was a traceback.
    argv = ["calibs", "build", "--bias", "a", "b", "--dark", "c", "--flat", "d", "e", "--out", "/proc/new"]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "/proc/new" in err, err


def test_dayobs_is_a_date(capsys) -> None:
    # `--dayobs 2024-06-24` looked for raw/2024-06-24 and found "no raw files".
    assert build_parser().parse_args(["reprocess", "night", "--dayobs", "2024-06-24"]).dayobs == "20240624"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["reprocess", "night", "--dayobs", "24-06-24"])
    assert "is not a date YYYYMMDD" in capsys.readouterr().err


def test_calibs_without_isr_is_named_as_ignored(tmp_path, capsys) -> None:
    # `process --no-isr --calibs DIR` ignored DIR without a word.
    from lsst.ts.auxtelwep.commands.process import pipeline_config

    args = build_parser().parse_args(["process", "a.fits", "b.fits", "--no-isr", "--calibs", str(tmp_path)])
    config = pipeline_config(args)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"warning: --calibs {tmp_path} is ignored" in err, err
    assert not config.apply_isr and config.calibs_dir is None


def test_counts_read_as_english() -> None:
    assert [count_of(n, "triplet") for n in (0, 1, 2)] == ["0 triplets", "1 triplet", "2 triplets"]
