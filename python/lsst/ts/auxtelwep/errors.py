"""The package's exception family.

Every error that bad input can cause is one of these, with a message a person can act on (it names the file,
the value and what was expected). Where a builtin type fits too, the class also inherits it, so callers that
catch ``ValueError`` keep working::

    AuxTelWepError
     +-- InputError (ValueError)            bad value, with ``value`` and ``allowed``
     |    +-- ConfigurationError            inconsistent or unsupported configuration
     |    +-- RawFormatError                a FITS file that is not a valid LATISS raw or exposure
     |    +-- CalibrationError              a calibration product missing, of the wrong shape or unit
     |    +-- CatalogError                  a reference catalog that cannot be used
     +-- DetectionError (RuntimeError)      no usable donuts, or a detection mode that failed
     +-- EstimationError (RuntimeError)     a wavefront fit that failed; keeps ``result`` when there is one
     +-- CadenceError (ValueError)          an image that does not fit the observing sequence

Which to raise: a problem with what the user handed us (file, value, configuration) is an ``InputError``
subclass; a problem found while doing the science on valid input is ``DetectionError`` or ``EstimationError``.
Translate third-party exceptions at the boundary with ``raise ... from exc``. `check_type` and `as_config`
refuse an argument of the wrong type at the call, before it fails later on a missing attribute.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pydantic

__all__ = [
    "AuxTelWepError",
    "CadenceError",
    "CalibrationError",
    "CatalogError",
    "ConfigurationError",
    "DetectionError",
    "EstimationError",
    "InputError",
    "RawFormatError",
    "as_config",
    "check_type",
]


class AuxTelWepError(Exception):
    """Base class of every error this package raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the message (and subclass data) when the error crosses a process pool.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[AuxTelWepError], args: tuple[Any, ...], state: dict[str, Any]) -> AuxTelWepError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class InputError(AuxTelWepError, ValueError):
    """A value handed to the package is not acceptable.

    Parameters
    ----------
    message : `str`
        What is wrong, naming the file or parameter.
    value : `object`, optional
        The offending value.
    allowed : `object`, optional
        What would have been accepted (a range, a set of names...).
    """

    def __init__(self, message: str, *, value: Any = None, allowed: Any = None) -> None:
        super().__init__(message)
        self.value = value
        self.allowed = allowed


class ConfigurationError(InputError):
    """The configuration is inconsistent or asks for something not supported."""


class RawFormatError(InputError):
    """A FITS file is not a readable LATISS raw or exposure (corrupt, truncated, wrong shape...)."""


class CalibrationError(InputError):
    """A calibration product is missing or unusable."""


class CatalogError(InputError):
    """A reference catalog cannot be read or lacks the needed columns."""


class CadenceError(AuxTelWepError, ValueError):
    """An image does not fit the observing sequence (unknown role, duplicate, out of order)."""


class DetectionError(AuxTelWepError, RuntimeError):
    """No usable donuts were found, or a detection mode failed."""


class EstimationError(AuxTelWepError, RuntimeError):
    """A wavefront fit failed.

    Parameters
    ----------
    message : `str`
        Why the fit failed.
    result : `object`, optional
        The (failed) fit result, for diagnosis.
    """

    def __init__(self, message: str, *, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


def check_type(name: str, value: Any, expected: type | tuple[type, ...], *, hint: str = "") -> None:
    """Refuse an argument that is not an instance of ``expected``.

    Parameters
    ----------
    name : `str`
        The parameter, as the caller knows it.
    value : `object`
        What was passed.
    expected : `type` or `tuple` of `type`
        What is accepted.
    hint : `str`, optional
        How to get an accepted value from what was passed, appended to the message.

    Raises
    ------
    InputError
        Naming the parameter, the type and value passed, and the types accepted.
    """
    if isinstance(value, expected):
        return
    names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
    raise InputError(
        f"{name}: expected {names}, got {type(value).__name__} {reprlib.repr(value)}"
        + (f": {hint}" if hint else ""),
        value=value,
        allowed=names,
    )


ConfigT = TypeVar("ConfigT", bound="pydantic.BaseModel")


def as_config(name: str, value: Any, model: type[ConfigT]) -> ConfigT:
    """A configuration argument as ``model``: itself, validated from a mapping, or the defaults for `None`.

    Parameters
    ----------
    name : `str`
        The parameter, as the caller knows it.
    value : ``model``, mapping or `None`
        What was passed.
    model : `type`
        The pydantic configuration class.

    Raises
    ------
    ConfigurationError
        If a mapping does not validate as ``model`` (naming the fields).
    InputError
        If ``value`` is neither a ``model`` nor a mapping.
    """
    import pydantic  # here: the command-line parser imports this module and must stay light

    if value is None:
        return model()
    if isinstance(value, Mapping):
        try:
            return model.model_validate(dict(value))
        except pydantic.ValidationError as exc:
            raise ConfigurationError(f"{name}: invalid {model.__name__}: {exc}", value=dict(value)) from exc
    check_type(name, value, model, hint=f"pass a {model.__name__} or a mapping of its fields")
    return value
