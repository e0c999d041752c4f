"""`ConfigurableCsc`: a `BaseCsc` configured from YAML files validated by a pydantic model.

On ``start`` the configuration is built from, in order (later files override earlier keys, nested mappings
merge): ``_init.yaml``, ``_<site>.yaml`` (site from ``$LSST_SITE``; skipped if absent), then the override
named by ``configurationOverride`` (a file name in the configuration directory). The merged mapping is
validated by ``config_model`` and handed to `ConfigurableCsc.configure`. ``configurationsAvailable`` lists the
override files (YAML files whose names do not start with ``_``); ``configurationApplied`` names the files
used.
The JSON schema of the configuration is ``config_model.model_json_schema()``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, ClassVar

import pydantic
import yaml

from .base import ExpectedError, State
from .base_csc import BaseCsc

__all__ = ["ConfigurableCsc", "merge_config"]


def merge_config(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``update``; nested mappings merge, other values replace.

    Parameters
    ----------
    base : `dict` [`str`, `object`]
        Configuration to update; not changed.
    update : `dict` [`str`, `object`]
        Values that take precedence.
    """
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged


class ConfigurableCsc(BaseCsc):
    """A CSC with a configuration.

    A subclass sets ``config_model`` (a pydantic model class) and implements `configure`.

    Parameters
    ----------
    name : `str`
        Component name.
    config_dir : `str` or `pathlib.Path`, optional
        Configuration directory; default ``default_config_dir`` (class attribute). If neither is set, no
        files are read and the model's defaults are used (an override name is then an error).
    index, initial_state, override, simulation_mode, check_if_duplicate, schema_dir
        As `BaseCsc`.

    Attributes
    ----------
    config_model : `type` [`pydantic.BaseModel`]
        The configuration model (class attribute).
    config_schema_version : `str`
        Written as ``schemaVersion`` (class attribute).
    default_config_dir : `pathlib.Path` or None
        Default configuration directory (class attribute).
    config : `pydantic.BaseModel` or None
        The configuration in use (None before the first ``start``).

    Raises
    ------
    ValueError
        If ``config_dir`` is not a directory.
    """

    config_model: ClassVar[type[pydantic.BaseModel]]
    config_schema_version: ClassVar[str] = "v1"
    default_config_dir: ClassVar[Path | None] = None

    def __init__(
        self,
        name: str,
        config_dir: str | Path | None = None,
        index: int | None = None,
        initial_state: State = State.STANDBY,
        override: str = "",
        simulation_mode: int = 0,
        *,
        check_if_duplicate: bool = False,
        schema_dir: Path | None = None,
    ) -> None:
        if not hasattr(type(self), "config_model"):
            raise TypeError(f"{type(self).__name__} must set the class attribute config_model")
        if config_dir is None:
            config_dir = self.default_config_dir
        if config_dir is not None:
            config_dir = Path(config_dir)
            if not config_dir.is_dir():
                raise ValueError(f"config_dir={str(config_dir)!r} is not a directory")
        self.config_dir: Path | None = config_dir
        self.config: pydantic.BaseModel | None = None
        super().__init__(
            name,
            index,
            initial_state,
            override,
            simulation_mode,
            check_if_duplicate=check_if_duplicate,
            schema_dir=schema_dir,
        )

    @classmethod
    def get_config_schema(cls) -> dict[str, Any]:
        """Return the JSON schema of the configuration."""
        return cls.config_model.model_json_schema()

    @property
    def config_url(self) -> str:
        return self.config_dir.resolve().as_uri() if self.config_dir is not None else ""

    def list_overrides(self) -> list[str]:
        """Return the override file names available in the configuration directory."""
        if self.config_dir is None:
            return []
        return sorted(
            p.name
            for p in self.config_dir.iterdir()
            if p.suffix in (".yaml", ".yml") and not p.name.startswith("_")
        )

    async def start_extra(self) -> None:
        self.evt_configurationsAvailable.set_write(
            overrides=",".join(self.list_overrides()),
            version="",
            url=self.config_url,
            schemaVersion=self.config_schema_version,
        )

    def read_config(self, override: str) -> tuple[pydantic.BaseModel, list[str]]:
        """Read and validate the configuration; return it and the names of the files used.

        Parameters
        ----------
        override : `str`
            Override file name in the configuration directory, read after ``_init.yaml`` and
            ``_<LSST_SITE>.yaml``;
            "" for none.

        Raises
        ------
        ExpectedError
            If a file is missing or unreadable, or the result does not validate.
        """
        files: list[Path] = []
        if self.config_dir is not None:
            init = self.config_dir / "_init.yaml"
            if init.exists():
                files.append(init)
            site = os.environ.get("LSST_SITE", "").strip()
            if site and (self.config_dir / f"_{site}.yaml").exists():
                files.append(self.config_dir / f"_{site}.yaml")
        if override:
            if self.config_dir is None:
                raise ExpectedError(
                    f"override={override!r} given but this CSC has no configuration directory"
                )
            path = self.config_dir / override
            if not path.is_file():
                raise ExpectedError(
                    f"override={override!r} not found in {self.config_dir}; "
                    f"available: {self.list_overrides()}"
                )
            files.append(path)
        merged: dict[str, Any] = {}
        for path in files:
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError) as e:
                raise ExpectedError(f"cannot read configuration file {path}: {e}") from e
            if not isinstance(data, dict):
                raise ExpectedError(
                    f"configuration file {path} must hold a mapping, not {type(data).__name__}"
                )
            merged = merge_config(merged, data)
        try:
            config = self.config_model.model_validate(merged)
        except pydantic.ValidationError as e:
            names = [p.name for p in files]
            raise ExpectedError(f"configuration from {names} is invalid: {e}") from e
        return config, [p.name for p in files]

    async def begin_start(self, data: Any) -> None:
        """Read, validate and apply the configuration; write ``configurationApplied``.

        Parameters
        ----------
        data : `DataType`
            The ``start`` command's data (``configurationOverride``).
        """
        config, names = self.read_config(data.configurationOverride)
        await self.configure(config)
        self.config = config
        self.evt_configurationApplied.set_write(
            configurations=",".join(names),
            version="",
            url=self.config_url,
            schemaVersion=self.config_schema_version,
            otherInfo="",
            force_output=True,
        )
        await super().begin_start(data)

    async def configure(self, config: Any) -> None:
        """Apply a validated configuration (a ``config_model`` instance); raise ExpectedError to refuse.

        Parameters
        ----------
        config : `pydantic.BaseModel`
            The configuration, an instance of ``config_model``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement configure")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add ``--configdir``, then the subclass's arguments.

        Parameters
        ----------
        parser : `argparse.ArgumentParser`
            The parser made by `make_argument_parser`.
        """
        parser.add_argument("--configdir", default=None, help="Configuration directory.")
        super().add_arguments(parser)

    @classmethod
    def add_kwargs_from_args(cls, args: argparse.Namespace, kwargs: dict[str, Any]) -> None:
        """Pass ``--configdir``, if given, as ``config_dir``.

        Parameters
        ----------
        args : `argparse.Namespace`
            The parsed command line.
        kwargs : `dict` [`str`, `object`]
            Constructor keyword arguments; updated in place.
        """
        if args.configdir is not None:
            kwargs["config_dir"] = args.configdir
        super().add_kwargs_from_args(args, kwargs)
