"""What `Controller` and `Remote` share: topics reached as attributes, and the ``async with`` lifecycle."""

from __future__ import annotations

import asyncio
from typing import Any, Self

__all__ = ["TopicOwner"]


class TopicOwner:
    """Base of `Controller` and `Remote`.

    Subclasses set ``_topics`` (attribute name such as ``cmd_start`` -> topic), ``start_task`` and
    ``done_task`` in their constructor, and define ``close()``. ``async with`` waits for ``start_task`` and
    closes on exit.
    """

    _topics: dict[str, Any]
    start_task: asyncio.Future
    done_task: asyncio.Future

    def __getattr__(self, name: str) -> Any:
        # Called only when normal lookup fails: topics (cmd_*, evt_*, tel_*) live in self._topics.
        topics = self.__dict__.get("_topics")
        if topics is not None and name in topics:
            return topics[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def topic_names(self) -> list[str]:
        """Attribute names of every topic."""
        return sorted(self._topics)

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start_task
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()
