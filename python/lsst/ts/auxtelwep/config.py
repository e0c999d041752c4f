"""Configuration of the AuxTelWEP CSC: the pydantic models, the files they are read from, the JSON schema.

Files, in order (later keys override earlier ones, nested mappings merge):

1. the shipped defaults, ``lsst/ts/auxtelwep/data/config/_init.yaml`` (deployment paths only: every other
   default is written once, in the models below);
2. ``<config_dir>/_init.yaml``, then ``<config_dir>/_<site>.yaml`` with the site from ``$LSST_SITE``
   (each skipped when absent);
3. the override named in the ``start`` command (a file in ``config_dir``).

The models are the single source: ``schema/AuxTelWEP.yaml`` is generated from them (`config_schema`,
``auxtelwep schema --write``) and a test keeps the two equal. Units: seconds, mm for hexapod x/y/z, degrees
for u/v and angles on the sky.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic
import yaml
from numpy.typing import NDArray

from .cadence import CadenceLimits
from .errors import ConfigurationError
from .sal.configurable_csc import merge_config

__all__ = [
    "CONFIG_TITLE",
    "SHIPPED_CONFIG_DIR",
    "ApplyConfig",
    "AuxTelWepConfig",
    "AxisValues",
    "CadenceConfig",
    "config_schema",
    "load_config",
]

#: Title of the configuration schema (salobj convention ``"<CSC> v<N>"``).
CONFIG_TITLE = "AuxTelWEP v1"
#: Directory of the shipped ``_init.yaml``.
SHIPPED_CONFIG_DIR = Path(__file__).parent / "data" / "config"


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class CadenceConfig(_Model):
    """How images are grouped into triplets and what counts as a cadence problem (see `cadence`)."""

    pointing_tolerance_deg: float = pydantic.Field(
        0.05, gt=0, description="Largest pointing change between in-focus and defocal images (deg)."
    )
    partner_timeout_s: float = pydantic.Field(
        300.0, gt=0, description="Time after a group's last image before unpaired images are reported (s)."
    )
    group_window_s: float = pydantic.Field(
        180.0, gt=0, description="Largest gap between images grouped without GROUPID (s)."
    )
    focus_tolerance_mm: float = pydantic.Field(
        0.2,
        gt=0,
        lt=0.4,
        description="Distance from a nominal FOCUSZ within which FOCUSZ tells the role (mm).",
    )
    order_policy: Literal["warn", "reject"] = pydantic.Field(
        "warn", description="What to do with blocked or out-of-order images."
    )
    require_infocus: bool = pydantic.Field(
        True, description="Wait for an in-focus image to complete a triplet (False: intra + extra suffice)."
    )
    wavefront_image_types: tuple[str, ...] = pydantic.Field(
        ("CWFS", "ENGTEST", "ACQ", "OBJECT", "SCIENCE", "FOCUS"),
        description="IMGTYPE values considered for wavefront estimation; others are ignored.",
    )

    def limits(self) -> CadenceLimits:
        """Return the `cadence.CadenceLimits` of this section."""
        return CadenceLimits(
            pointing_tolerance_deg=self.pointing_tolerance_deg,
            partner_timeout_s=self.partner_timeout_s,
            group_window_s=self.group_window_s,
            focus_tolerance_mm=self.focus_tolerance_mm,
            order_policy=self.order_policy,
            require_infocus=self.require_infocus,
            wavefront_image_types=tuple(t.upper() for t in self.wavefront_image_types),
        )


class AxisValues(_Model):
    """One number per hexapod axis: x, y, z (mm or unitless) and u, v (deg or unitless)."""

    x: float
    y: float
    z: float
    u: float
    v: float

    def as_array(self) -> NDArray[np.float64]:
        """Return ``[x, y, z, u, v]``."""
        return np.array([self.x, self.y, self.z, self.u, self.v], dtype=float)


def _nonnegative(values: AxisValues) -> AxisValues:
    # A NaN would pass a ">= 0" test and reach ATAOS (and every later total) as a NaN offset.
    if not np.all(np.isfinite(values.as_array())) or (values.as_array() < 0).any():
        raise ValueError(f"every axis must be a finite number >= 0, got {values.model_dump()}")
    return values


def _fractions(values: AxisValues) -> AxisValues:
    # A gain scales a correction that already nulls the measured error: above 1 it overshoots (2 would
    # swing M2 as far past the aligned position), below 0 it moves away; 0 holds an axis still.
    gains = values.as_array()
    if not np.all((gains >= 0) & (gains <= 1)):
        raise ValueError(f"every gain must be in [0, 1], got {values.model_dump()}")
    return values


class ApplyConfig(_Model):
    """How a hexapod correction is applied: turned into an ATAOS offset (gains, limits) and when.

    The ``correction`` section of the CSC configuration; how the correction is computed is the pipeline's
    `lsst.ts.auxtelwep.correction.CorrectionConfig`.
    """

    gains: AxisValues = pydantic.Field(
        AxisValues(x=1.0, y=1.0, z=1.0, u=1.0, v=1.0),
        description="Fraction of the correction applied per step, per axis, in [0, 1] (above 1 "
        "overshoots; 0 holds the axis). The correction comes from the batoid sensitivity (good to ~1 %), so "
        "full gain converges in one step; the ops script used 0.5, 0.5, 0.9 to make up for its published "
        "matrix being ~20 % off.",
    )
    max_step: AxisValues = pydantic.Field(
        AxisValues(x=0.6, y=0.6, z=0.2, u=0.05, v=0.05),
        description="Largest offset sent in one step, per axis (mm for x, y, z; deg for u, v).",
    )
    max_total: AxisValues = pydantic.Field(
        AxisValues(x=2.0, y=2.0, z=0.5, u=0.2, v=0.2),
        description="Largest sum of offsets sent since the CSC was enabled (startClosedLoop does not reset "
        "it), per axis (mm; deg).",
    )
    auto_apply: bool = pydantic.Field(
        True, description="In closed loop, apply each correction as soon as it is computed."
    )
    min_significance: float = pydantic.Field(
        2.0,
        ge=0,
        description="In closed loop, a correction is sent only if it is more than this many sigma from "
        "zero, over its axes as a whole (0: always): M2 does not chase noise on faint stars. "
        "issueCorrection sends what was measured.",
    )
    apply_timeout_s: float = pydantic.Field(
        30.0, gt=0, description="Time limit of the ATAOS offset command (s)."
    )
    settle_timeout_s: float = pydantic.Field(
        120.0,
        gt=0,
        description="Longest wait (s), after ATAOS acknowledges an offset, for it to report a hexapod move "
        "that includes it (hexapodCorrectionStarted, then hexapodCorrectionCompleted: ATAOS defers the move "
        "while the shutter is open). Images that start before the move is over are not used for the next "
        "correction; without such a report, the move is taken as over at the end of this wait.",
    )

    _check_limits = pydantic.field_validator("max_step", "max_total")(_nonnegative)
    _check_gains = pydantic.field_validator("gains")(_fractions)


class AuxTelWepConfig(_Model):
    """Configuration of the AuxTelWEP CSC."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, title=CONFIG_TITLE)

    data_root: str = pydantic.Field(
        description="Root of the raw data: a local path or file:// URI; raws are at "
        "<data_root>/raw/<DAYOBS>/<OBSID>.fits."
    )
    state_dir: str = pydantic.Field(description="Directory of the journal (SQLite); created if missing.")
    refcat_path: str = pydantic.Field("", description="Reference catalog file; blank for none.")
    calibs_dir: str = pydantic.Field("", description="Calibration products directory; blank for none.")
    cadence: CadenceConfig = CadenceConfig()
    correction: ApplyConfig = ApplyConfig()
    telemetry_interval_s: float = pydantic.Field(
        1.0, gt=0, description="Interval between zernikeCorrection/hexapodCorrection telemetry samples (s)."
    )
    n_workers: int = pydantic.Field(1, ge=1, le=8, description="Worker processes running the pipeline.")
    process_timeout_s: float = pydantic.Field(
        300.0, gt=0, description="Time limit of one triplet's processing (s); then it is rejected."
    )
    oods_timeout_s: float = pydantic.Field(
        60.0,
        gt=0,
        description="Time after endReadout to wait for imageInOODS before looking for the file (s).",
    )
    max_attempts: int = pydantic.Field(
        2, ge=1, description="Processing attempts of a triplet (a crash counts) before it is rejected."
    )
    pipeline: dict[str, Any] = pydantic.Field(
        default_factory=dict,
        description="Options of the science pipeline (lsst.ts.auxtelwep.pipeline.PipelineConfig); refcat and "
        "calibs_dir default to refcat_path and calibs_dir above.",
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(
            f"{path}: cannot read the configuration file ({exc})", value=str(path)
        ) from exc
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{path}: a configuration file must hold a mapping, not {type(data).__name__}", value=str(path)
        )
    return data


def load_config(
    config_dir: str | Path | None = None, override: str = "", *, site: str | None = None
) -> tuple[AuxTelWepConfig, list[str]]:
    """Read, merge and validate the configuration files (order in the module docstring).

    Parameters
    ----------
    config_dir : `str` or `pathlib.Path`, optional
        Configuration directory; None reads the shipped defaults only.
    override : `str`, optional
        File name in ``config_dir``; blank for none.
    site : `str`, optional
        Site name; default ``$LSST_SITE``.

    Returns
    -------
    config : `AuxTelWepConfig`
    files : `list` of `str`
        Paths of the files read, in order.

    Raises
    ------
    ConfigurationError
        If a file is missing, unreadable or not a mapping, or the merged configuration does not validate
        (the message names the files and the fields).
    """
    files = [SHIPPED_CONFIG_DIR / "_init.yaml"]
    site = os.environ.get("LSST_SITE", "").strip() if site is None else site
    if config_dir is not None:
        folder = Path(config_dir)
        if not folder.is_dir():
            raise ConfigurationError(f"config_dir={str(folder)!r} is not a directory", value=str(folder))
        candidates = [folder / "_init.yaml"] + ([folder / f"_{site}.yaml"] if site else [])
        files += [p for p in candidates if p.is_file()]
        if override:
            path = folder / override
            if not path.is_file():
                available = sorted(p.name for p in folder.glob("*.y*ml") if not p.name.startswith("_"))
                raise ConfigurationError(
                    f"override={override!r} not found in {folder}", value=override, allowed=available
                )
            files.append(path)
    elif override:
        raise ConfigurationError(
            f"override={override!r} given without a configuration directory", value=override
        )
    unique = list(dict.fromkeys(p.resolve() for p in files))
    merged: dict[str, Any] = {}
    for path in unique:
        merged = merge_config(merged, _read_yaml(path))
    try:
        config = AuxTelWepConfig.model_validate(merged)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(
            f"configuration from {[str(p) for p in unique]} is invalid: {problems}", value=merged
        ) from exc
    return config, [str(p) for p in unique]


def config_schema() -> dict[str, Any]:
    """Return the JSON schema of `AuxTelWepConfig` as written to ``schema/AuxTelWEP.yaml``.

    The ``pipeline`` section, a plain mapping in `AuxTelWepConfig` (the CSC's own process does not load the
    science stack; `AuxTelWepCsc.configure` validates it), is described by `pipeline.PipelineConfig`, whose
    nested models appear under ``$defs`` with the prefix ``Pipeline``.
    """
    from .pipeline import PipelineConfig

    schema = AuxTelWepConfig.model_json_schema()
    pipeline = PipelineConfig.model_json_schema(ref_template="#/$defs/Pipeline{model}")
    defs = schema.setdefault("$defs", {})
    for name, definition in pipeline.pop("$defs", {}).items():
        defs[f"Pipeline{name}"] = definition
    defs["PipelineConfig"] = pipeline
    field = schema["properties"]["pipeline"]
    schema["properties"]["pipeline"] = {
        "$ref": "#/$defs/PipelineConfig",
        "default": field.get("default", {}),
        "description": field["description"],
    }
    head = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/lsst-ts/ts_auxtelwep/blob/main/schema/AuxTelWEP.yaml",
        "title": schema.pop("title"),
        "description": f"{schema.pop('description')} Generated from lsst.ts.auxtelwep.config by "
        "`auxtelwep schema --write`: do not edit by hand.",
    }
    return head | schema
