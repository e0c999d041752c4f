"""The CSC configuration: schema in sync with the models, file merging, errors that name file and field."""

from pathlib import Path

import pytest
import yaml

from lsst.ts.auxtelwep.cli import main as cli_main
from lsst.ts.auxtelwep.commands.schema import DEFAULT_SCHEMA_PATH, render_schema
from lsst.ts.auxtelwep.config import (
    CONFIG_TITLE,
    SHIPPED_CONFIG_DIR,
    AuxTelWepConfig,
    config_schema,
    load_config,
)
from lsst.ts.auxtelwep.errors import ConfigurationError


def test_schema_file_matches_the_models() -> None:
    # If this fails: run `auxtelwep schema --write` and commit schema/AuxTelWEP.yaml.
    assert DEFAULT_SCHEMA_PATH.read_text() == render_schema()
    schema = yaml.safe_load(DEFAULT_SCHEMA_PATH.read_text())
    assert schema["title"] == CONFIG_TITLE == "AuxTelWEP v1"
    assert set(schema["required"]) == {"data_root", "state_dir"}
    assert schema == config_schema()


def test_schema_describes_the_pipeline_section() -> None:
    # The pipeline options are a plain mapping in the CSC's model; the schema spells them out, nested
    # models and all, so that LOVE and script authors see every option and its default.
    from lsst.ts.auxtelwep.pipeline import PipelineConfig

    schema = config_schema()
    defs = schema["$defs"]
    pipeline = defs[schema["properties"]["pipeline"]["$ref"].removeprefix("#/$defs/")]
    assert set(pipeline["properties"]) == set(PipelineConfig.model_fields)
    assert pipeline["properties"]["estimation"]["$ref"] == "#/$defs/PipelineEstimationConfig"
    assert defs["PipelineEstimationConfig"]["properties"]["algorithm"]["default"] == "tie+danish"

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    assert all(ref.removeprefix("#/$defs/") in defs for ref in refs(schema))


def test_schema_command_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "AuxTelWEP.yaml"
    target.write_text("title: stale\n")
    assert cli_main(["schema", "--check", "--path", str(target)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert cli_main(["schema", "--write", "--path", str(target)]) == 0
    assert cli_main(["schema", "--check", "--path", str(target)]) == 0
    assert cli_main(["schema"]) == 0
    assert capsys.readouterr().out == render_schema()


def test_shipped_defaults_validate() -> None:
    config, files = load_config(site="")
    assert files == [str((SHIPPED_CONFIG_DIR / "_init.yaml").resolve())]
    assert config.data_root and config.state_dir
    assert config == AuxTelWepConfig(data_root=config.data_root, state_dir=config.state_dir)


def test_site_and_override_merge_in_order(tmp_path: Path) -> None:
    (tmp_path / "_init.yaml").write_text("data_root: /site/data\ncadence:\n  partner_timeout_s: 100\n")
    (tmp_path / "_summit.yaml").write_text("cadence:\n  order_policy: reject\n")
    (tmp_path / "fast.yaml").write_text(
        "cadence:\n  partner_timeout_s: 20\npipeline:\n  wavelength_nm: 620\n"
    )
    config, files = load_config(tmp_path, "fast.yaml", site="summit")
    assert [Path(f).name for f in files] == ["_init.yaml", "_init.yaml", "_summit.yaml", "fast.yaml"]
    assert config.data_root == "/site/data"  # site file over the shipped one
    assert config.cadence.partner_timeout_s == 20  # override last
    assert config.cadence.order_policy == "reject"  # nested keys merge, not replace
    assert config.cadence.pointing_tolerance_deg == 0.05  # model default kept
    assert config.pipeline == {"wavelength_nm": 620}  # passed through unchanged
    assert config.cadence.limits().partner_timeout_s == 20


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("cadence:\n  partner_timeout_s: -1\n", "cadence.partner_timeout_s"),
        (
            "correction:\n  gains: {x: -0.5, y: 0.5, z: 0.9, u: 0.5, v: 0.5}\n",
            r"every gain must be in \[0, 1\]",
        ),
        (
            "correction:\n  max_step: {x: -0.5, y: 0.5, z: 0.2, u: 0.05, v: 0.05}\n",
            "must be a finite number >= 0",
        ),
        ("telemetry_rate: 3\n", "telemetry_rate: Extra inputs are not permitted"),
        ("- a list\n", "must hold a mapping"),
    ],
)
def test_invalid_files_name_the_problem(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigurationError, match=words) as info:
        load_config(tmp_path, "bad.yaml", site="")
    assert "bad.yaml" in str(info.value)


def test_missing_override_lists_the_available_ones(tmp_path: Path) -> None:
    (tmp_path / "night.yaml").write_text("{}\n")
    with pytest.raises(ConfigurationError, match=r"override='day\.yaml' not found") as info:
        load_config(tmp_path, "day.yaml", site="")
    assert info.value.allowed == ["night.yaml"]
