"""`TestCsc`: a small reference CSC on the ``Test`` interface, used by the SAL layer's tests and examples."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pydantic

from .base import ExpectedError
from .configurable_csc import ConfigurableCsc

__all__ = ["TestConfig", "TestCsc"]


class TestConfig(pydantic.BaseModel):
    """Configuration of `TestCsc`."""

    model_config = pydantic.ConfigDict(extra="forbid", title="Test v1")
    __test__ = False  # not a pytest test class

    string0: str = "default"
    float0: float = 0.0
    int0: int = pydantic.Field(default=0, ge=0)


class TestCsc(ConfigurableCsc):
    """Reference CSC: echoes ``setScalars``/``setArrays`` as events, waits, fails and faults on request.

    ``setScalars`` needs authorisation and the ENABLED state.
    """

    __test__ = False  # not a pytest test class

    config_model: ClassVar[type[pydantic.BaseModel]] = TestConfig
    version: ClassVar[str] = "1.0"
    valid_simulation_modes: ClassVar[tuple[int, ...]] = (0, 1)
    auth_commands: ClassVar[frozenset[str]] = frozenset({"setScalars"})

    def __init__(self, index: int | None = None, **kwargs: Any) -> None:
        super().__init__("Test", index=index, **kwargs)

    async def configure(self, config: Any) -> None:
        """Log ``string0`` of the configuration.

        Parameters
        ----------
        config : `TestConfig`
            The validated configuration.
        """
        self.log.info(f"configured with string0={config.string0!r}")

    async def do_setScalars(self, data: Any) -> None:
        """Write the scalars as the ``scalars`` event and telemetry (needs ENABLED).

        Parameters
        ----------
        data : `DataType`
            The command's data (fields ``int0``, ``double0``, ``string0``, ``boolean0``).
        """
        self.assert_enabled("setScalars")
        values = dict(int0=data.int0, double0=data.double0, string0=data.string0, boolean0=data.boolean0)
        self.evt_scalars.set_write(**values)
        self.tel_scalars.set_write(**values)

    async def do_setArrays(self, data: Any) -> None:
        """Write the arrays as the ``arrays`` event (needs ENABLED).

        Parameters
        ----------
        data : `DataType`
            The command's data (fields ``int0``, ``double0``).
        """
        self.assert_enabled("setArrays")
        self.evt_arrays.set_write(int0=data.int0, double0=data.double0)

    async def do_wait(self, data: Any) -> None:
        """Wait, first acking CMD_INPROGRESS if ``ackTimeout`` > 0.

        Parameters
        ----------
        data : `DataType`
            The command's data (fields ``duration`` and ``ackTimeout``, seconds).
        """
        if data.ackTimeout > 0:
            self.cmd_wait.ack_in_progress(data, timeout=data.ackTimeout, result="waiting")
        await asyncio.sleep(data.duration)

    async def do_fail(self, data: Any) -> None:
        """Fail with ``message``: an `ExpectedError` if ``expected``, else a `RuntimeError`.

        Parameters
        ----------
        data : `DataType`
            The command's data (fields ``message`` and ``expected``).
        """
        if data.expected:
            raise ExpectedError(data.message)
        raise RuntimeError(data.message)

    async def do_fault(self, data: Any) -> None:
        """Go to FAULT with error code 42.

        Parameters
        ----------
        data : `DataType`
            The command's data (no fields used).
        """
        await self.fault(code=42, report="fault command")
