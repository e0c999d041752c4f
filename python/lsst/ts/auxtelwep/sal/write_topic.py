"""Write side of topics: `WriteTopic` and the controller's `ControllerEvent` and `ControllerTelemetry`."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from .base import current_tai
from .interface import TopicSpec
from .sal_info import SalInfo

__all__ = ["ControllerEvent", "ControllerTelemetry", "SetWriteResult", "WriteTopic"]


@dataclass(frozen=True)
class SetWriteResult:
    """What `WriteTopic.set_write` did (fields named and ordered as ts_salobj's).

    Attributes
    ----------
    did_change : `bool`
        True if ``set`` changed any field.
    was_written : `bool`
        True if a sample was written.
    data : `object`
        A copy of the data after the call (what was written, if anything was).
    """

    did_change: bool
    was_written: bool
    data: Any


def _values_equal(a: Any, b: Any) -> bool:
    """Compare two field values, counting NaN equal to NaN (also inside arrays)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


class WriteTopic:
    """A topic that writes samples; ``data`` holds the fields to write next.

    Parameters
    ----------
    salinfo : `SalInfo`
        Component and domain.
    spec : `TopicSpec`
        The topic.

    Attributes
    ----------
    data : `object`
        Current values (an instance of `DataType`); `set` changes them, `write` sends them.
    DataType : `type`
        The data class of the topic.
    has_data : `bool`
        True once `set` or `write` has been called.
    """

    def __init__(self, salinfo: SalInfo, spec: TopicSpec) -> None:
        self.salinfo = salinfo
        self.spec = spec
        self.name = spec.name
        self.attr_name = spec.attr_name
        self.DataType = salinfo.data_type(spec)
        self.data: Any = self.DataType()
        self.has_data = False
        self._field_counts = {f.name: f.count for f in spec.fields}
        self._writer = salinfo.make_writer(spec)
        self._seq_num = 0

    def _normalize(self, name: str, value: Any) -> Any:
        count = self._field_counts[name]
        if count == 1:
            if hasattr(value, "item"):  # numpy scalar
                value = value.item()
            return value
        if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
            raise ValueError(f"{self.attr_name}.{name} needs a sequence of {count} values, not {value!r}")
        values = [v.item() if hasattr(v, "item") else v for v in value]
        if len(values) != count:
            raise ValueError(f"{self.attr_name}.{name} needs {count} values; got {len(values)}")
        return values

    def set(self, **kwargs: Any) -> bool:
        """Set fields of `data`; return True if any value changed (NaN counts as equal to NaN).

        A value of None leaves its field as it is (the name must still be a field), as in ts_salobj.

        Parameters
        ----------
        **kwargs
            Field values; None leaves a field as it is.

        Raises
        ------
        AttributeError
            If a name is not a field of the topic.
        ValueError
            If an array field gets the wrong number of values.
        """
        unknown = sorted(set(kwargs) - set(self._field_counts))
        if unknown:
            raise AttributeError(
                f"{self.attr_name} has no fields {unknown}; fields are {sorted(self._field_counts)}"
            )
        changed = False
        for name, value in kwargs.items():
            if value is None:
                continue
            value = self._normalize(name, value)
            if not _values_equal(getattr(self.data, name), value):
                changed = True
            setattr(self.data, name, value)
        self.has_data = True
        return changed

    def write(self) -> Any:
        """Write `data` (filling the private fields) and return a copy of what was written."""
        self._seq_num = self._seq_num + 1 if self._seq_num < 2**31 - 1 else 1
        self.data.salIndex = self.salinfo.index
        self.data.private_sndStamp = current_tai()
        self.data.private_seqNum = self._seq_num
        self.data.private_identity = self.salinfo.identity
        self.data.private_origin = self.salinfo.domain.origin
        self._writer.write(self.data)
        self.has_data = True
        return copy.deepcopy(self.data)

    def set_write(self, *, force_output: bool = False, **kwargs: Any) -> SetWriteResult:
        """Set fields and write (this base class always writes; events write only on change).

        Parameters
        ----------
        force_output : `bool`, optional
            Ignored here (used by events).
        **kwargs
            Field values, as `set`.

        Returns
        -------
        result : `SetWriteResult`
            Whether values changed, ``was_written`` (True), and a copy of the data written.
        """
        did_change = self.set(**kwargs)
        data = self.write()
        return SetWriteResult(did_change=did_change, was_written=True, data=data)

    def basic_close(self) -> None:
        self._writer.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.salinfo.name_index}.{self.attr_name})"


class ControllerEvent(WriteTopic):
    """An event written by a controller: `set_write` writes only when a value changed, unless forced."""

    def set_write(self, *, force_output: bool = False, **kwargs: Any) -> SetWriteResult:
        """Set fields; write if any changed, if ``force_output``, or if nothing was ever written.

        Parameters
        ----------
        force_output : `bool`, optional
            Write even if no value changed.
        **kwargs
            Field values, as `set`.

        Returns
        -------
        result : `SetWriteResult`
            Whether it wrote, whether values changed, and a copy of the data.
        """
        never_written = self._seq_num == 0
        did_change = self.set(**kwargs)
        if did_change or force_output or never_written:
            return SetWriteResult(did_change=did_change, was_written=True, data=self.write())
        return SetWriteResult(did_change=False, was_written=False, data=copy.deepcopy(self.data))


class ControllerTelemetry(WriteTopic):
    """Telemetry written by a controller: `set_write` always writes."""
