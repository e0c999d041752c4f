"""`Domain`: one DDS participant shared by the controllers and remotes of a process (or of a test)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import Any

from .base import default_identity, get_user_host
from .transport import DdsTransport, Transport

__all__ = ["DEFAULT_PARTITION_PREFIX", "Domain", "dds_environment"]

#: Partition prefix used when ``$LSST_DDS_PARTITION_PREFIX`` is not set.
DEFAULT_PARTITION_PREFIX = "auxtelwep"


@contextlib.contextmanager
def dds_environment(
    domain_id: int | str | None = None, partition_prefix: str | None = None
) -> Iterator[None]:
    """Set ``LSST_DDS_DOMAIN_ID`` and ``LSST_DDS_PARTITION_PREFIX`` inside the block, restore them after.

    A value of None leaves that variable as it is (and still restores it on exit).

    Parameters
    ----------
    domain_id : `int`, `str` or None, optional
        Value of ``LSST_DDS_DOMAIN_ID``.
    partition_prefix : `str` or None, optional
        Value of ``LSST_DDS_PARTITION_PREFIX``.
    """
    values = {"LSST_DDS_DOMAIN_ID": domain_id, "LSST_DDS_PARTITION_PREFIX": partition_prefix}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update({key: str(value) for key, value in values.items() if value is not None})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Domain:
    """A DDS domain participant with the identity used by the commands it sends.

    Must be constructed with a running event loop. Use as an async context manager or call `close`.

    Parameters
    ----------
    domain_id : `int`, optional
        DDS domain id; default ``$LSST_DDS_DOMAIN_ID`` or 0.
    partition_prefix : `str`, optional
        Partition prefix; default ``$LSST_DDS_PARTITION_PREFIX`` or `DEFAULT_PARTITION_PREFIX`.
    transport : `Transport`, optional
        Transport to use instead of a new `DdsTransport` (for a fake in-process transport).

    Attributes
    ----------
    identity : `str`
        Written as ``private_identity`` of every sample from this domain. Starts as `default_identity`
        (``$LSST_IDENTITY`` or user@host); a `Controller` changes it to its ``name[:index]``.
    origin : `int`
        Process id, written as ``private_origin``.
    default_identity : `str`
        The identity this domain started with.
    user_host : `str`
        ``user@host`` of this process (`get_user_host`), whatever the identity (as ts_salobj's; RemoteGroup
        falls back on it when the identity is a CSC name).

    Raises
    ------
    ValueError
        If ``$LSST_DDS_DOMAIN_ID`` is not an integer.
    """

    def __init__(
        self,
        domain_id: int | None = None,
        partition_prefix: str | None = None,
        transport: Transport | None = None,
    ) -> None:
        if domain_id is None:
            env = os.environ.get("LSST_DDS_DOMAIN_ID", "0")
            try:
                domain_id = int(env)
            except ValueError:
                raise ValueError(f"LSST_DDS_DOMAIN_ID={env!r} is not an integer") from None
        if partition_prefix is None:
            partition_prefix = os.environ.get("LSST_DDS_PARTITION_PREFIX", DEFAULT_PARTITION_PREFIX)
        self.domain_id = domain_id
        self.partition_prefix = partition_prefix
        self.loop = asyncio.get_running_loop()
        self.user_host = get_user_host()
        self.default_identity = default_identity()
        self.identity = self.default_identity
        self.origin = os.getpid()
        self.transport: Transport = (
            transport if transport is not None else DdsTransport(domain_id, partition_prefix, self.loop)
        )
        self._salinfos: set[Any] = set()
        self._closed = False

    def add_salinfo(self, salinfo: Any) -> None:
        """Register a `SalInfo` so `close` closes it.

        Parameters
        ----------
        salinfo : `SalInfo`
            The object to close with the domain.

        Raises
        ------
        RuntimeError
            If the domain is closed.
        """
        if self._closed:
            raise RuntimeError("domain is closed")
        self._salinfos.add(salinfo)

    def remove_salinfo(self, salinfo: Any) -> None:
        """Forget a `SalInfo` (it closed); no error if it is not registered.

        Parameters
        ----------
        salinfo : `SalInfo`
            The object to forget.
        """
        self._salinfos.discard(salinfo)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Close every registered `SalInfo`, then the transport. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        for salinfo in list(self._salinfos):
            await salinfo.close()
        self.transport.close()

    def basic_close(self) -> None:
        """Synchronous close for error paths in constructors: frees the transport at once."""
        if self._closed:
            return
        self._closed = True
        for salinfo in list(self._salinfos):
            salinfo.basic_close()
        self.transport.close()

    async def __aenter__(self) -> Domain:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Domain(domain_id={self.domain_id}, partition_prefix={self.partition_prefix!r})"
