"""SAL interfaces read from ts_xml-format XML files in ``schema/``.

A component ``Name`` is described by ``schema/Name/Name_Commands.xml``, ``Name_Events.xml`` and
``Name_Telemetry.xml`` (any may be missing), plus the generic commands and events of
``schema/SALGenerics.xml`` that every component here carries (`GENERIC_COMMANDS`, `GENERIC_EVENTS`).
Every topic gets the private fields (`PRIVATE_FIELDS`) and the key field ``salIndex``; each component also
has an ``ackcmd`` topic. ``schema/SALSubsystems.xml`` (ts_xml's layout) tells which components are indexed:
those whose ``IndexEnumeration`` is not ``no``; a component it does not list is not indexed.

The schema directory is ``$AUXTELWEP_SCHEMA_DIR`` if set, else the package's ``schema/`` (in the source
tree a link to ``schema/`` at the repository root; in a wheel, a copy).
"""

from __future__ import annotations

import enum
import functools
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GENERIC_COMMANDS",
    "GENERIC_EVENTS",
    "PRIVATE_FIELDS",
    "ComponentInterface",
    "FieldSpec",
    "TopicKind",
    "TopicSpec",
    "get_schema_dir",
    "load_interface",
]

#: Generic commands every component carries (from SALGenerics.xml).
GENERIC_COMMANDS = ("start", "enable", "disable", "standby", "exitControl", "setLogLevel", "setAuthList")
#: Generic events every component carries (from SALGenerics.xml).
GENERIC_EVENTS = (
    "heartbeat",
    "logLevel",
    "logMessage",
    "softwareVersions",
    "errorCode",
    "summaryState",
    "simulationMode",
    "configurationsAvailable",
    "configurationApplied",
    "authList",
)

# XML IDL_Type -> canonical type name used by the transports.
_IDL_TYPES = {
    "boolean": "bool",
    "byte": "uint8",
    "octet": "uint8",
    "char": "string",
    "short": "int16",
    "unsigned short": "uint16",
    "int": "int32",
    "long": "int32",
    "unsigned int": "uint32",
    "unsigned long": "uint32",
    "long long": "int64",
    "unsigned long long": "uint64",
    "float": "float32",
    "double": "float64",
    "string": "string",
}


class TopicKind(enum.Enum):
    """Kind of topic; the value is the infix of the SAL topic name (``Name_<value>_<topic>``; telemetry has
    none, as in ts_xml: ``ATMCS_mount_AzEl_Encoders``)."""

    COMMAND = "command"
    EVENT = "logevent"
    TELEMETRY = ""
    ACKCMD = "ackcmd"


@dataclass(frozen=True)
class FieldSpec:
    """One field of a topic.

    Attributes
    ----------
    name : `str`
        Field name (``EFDB_Name``).
    type_name : `str`
        Canonical scalar type: bool, uint8, int16, uint16, int32, uint32, int64, uint64, float32,
        float64 or string.
    count : `int`
        1 for a scalar, else the fixed array length.
    units : `str`
        Units as written in the XML.
    description : `str`
        Description as written in the XML.
    """

    name: str
    type_name: str
    count: int = 1
    units: str = "unitless"
    description: str = ""


#: Fields every topic carries, before its own.
PRIVATE_FIELDS = (
    FieldSpec("salIndex", "int32", description="Index of the component (0 if not indexed); the DDS key."),
    FieldSpec("private_sndStamp", "float64", units="second", description="Time of writing (TAI unix s)."),
    FieldSpec("private_rcvStamp", "float64", units="second", description="Time of reading (TAI unix s)."),
    FieldSpec("private_seqNum", "int32", description="Sequence number of the sample from its writer."),
    FieldSpec("private_identity", "string", description="Identity of the writer: user@host or name[:index]."),
    FieldSpec("private_origin", "int32", description="Process id of the writer."),
)

_ACKCMD_FIELDS = (
    FieldSpec("ack", "int32", description="Acknowledgement code (SalRetCode)."),
    FieldSpec("error", "int32", description="Error code; 0 unless the command failed."),
    FieldSpec("result", "string", description="Message explaining the ack."),
    FieldSpec("identity", "string", description="private_identity of the command being acknowledged."),
    FieldSpec("origin", "int32", description="private_origin of the command being acknowledged."),
    FieldSpec("cmdtype", "int32", description="Index of the command in the sorted command names."),
    FieldSpec("timeout", "float64", units="second", description="For CMD_INPROGRESS: time it may take."),
)


@dataclass(frozen=True)
class TopicSpec:
    """One topic of a component.

    Attributes
    ----------
    component : `str`
        Component name, e.g. ``"AuxTelWEP"``.
    kind : `TopicKind`
        Command, event, telemetry or ackcmd.
    name : `str`
        Topic name without prefix, e.g. ``"summaryState"``.
    fields : `tuple` [`FieldSpec`]
        All fields, private ones first.
    description : `str`
        Description from the XML.
    """

    component: str
    kind: TopicKind
    name: str
    fields: tuple[FieldSpec, ...]
    description: str = ""

    @property
    def sal_name(self) -> str:
        """SAL topic name without component, e.g. ``logevent_summaryState`` or ``ackcmd``."""
        if self.kind is TopicKind.ACKCMD:
            return "ackcmd"
        return self.name if self.kind is TopicKind.TELEMETRY else f"{self.kind.value}_{self.name}"

    @property
    def attr_name(self) -> str:
        """Python attribute name: ``cmd_<name>``, ``evt_<name>``, ``tel_<name>`` or ``ack_ackcmd``."""
        prefix = {
            TopicKind.COMMAND: "cmd_",
            TopicKind.EVENT: "evt_",
            TopicKind.TELEMETRY: "tel_",
            TopicKind.ACKCMD: "ack_",
        }
        return prefix[self.kind] + self.name

    @property
    def dds_name(self) -> str:
        """DDS topic name, e.g. ``AuxTelWEP_logevent_summaryState``."""
        return f"{self.component}_{self.sal_name}"

    @property
    def typename(self) -> str:
        """DDS type name, e.g. ``AuxTelWEP::logevent_summaryState``."""
        return f"{self.component}::{self.sal_name}"

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class ComponentInterface:
    """All topics of one component, each dict keyed by topic name (without prefix), sorted by name.

    ``indexed`` is True if the component runs as several instances told apart by ``salIndex``.
    """

    name: str
    commands: dict[str, TopicSpec]
    events: dict[str, TopicSpec]
    telemetry: dict[str, TopicSpec]
    ackcmd: TopicSpec
    indexed: bool = False

    @property
    def all_topics(self) -> list[TopicSpec]:
        return [*self.commands.values(), *self.events.values(), *self.telemetry.values(), self.ackcmd]


def get_schema_dir() -> Path:
    """Return the directory holding the interface XML (see module docstring)."""
    env = os.environ.get("AUXTELWEP_SCHEMA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "schema"


def _text(elt: ET.Element, tag: str, default: str = "") -> str:
    child = elt.find(tag)
    return default if child is None or child.text is None else " ".join(child.text.split())


def _parse_item(item: ET.Element, path: Path) -> FieldSpec:
    name = _text(item, "EFDB_Name")
    idl_type = _text(item, "IDL_Type")
    if idl_type not in _IDL_TYPES:
        raise ValueError(
            f"{path}: field {name!r} has unknown IDL_Type={idl_type!r}; known: {sorted(_IDL_TYPES)}"
        )
    count = int(_text(item, "Count", "1"))
    type_name = _IDL_TYPES[idl_type]
    if type_name == "string" and count != 1:
        raise ValueError(f"{path}: string field {name!r} must have Count=1, not {count}")
    return FieldSpec(name, type_name, count, _text(item, "Units", "unitless"), _text(item, "Description"))


def _parse_file(path: Path, tag: str, kind: TopicKind, component: str) -> dict[str, TopicSpec]:
    """Parse the ``tag`` topics of ``path``; names lose their ``<subsystem>_<kind>_`` prefix."""
    topics: dict[str, TopicSpec] = {}
    if not path.exists():
        return topics
    root = ET.parse(path).getroot()
    for elt in root.iter(tag):
        full_name = _text(elt, "EFDB_Topic")
        # Component names have no underscore ("SALGeneric" for the generic topics).
        infix = f"_{kind.value}_" if kind.value else "_"
        _, sep, name = full_name.partition(infix)
        if not sep or not name or (not kind.value and name.startswith(("command_", "logevent_"))):
            raise ValueError(f"{path}: topic {full_name!r} should be named <Component>{infix}<topic>")
        own = tuple(_parse_item(item, path) for item in elt.findall("item"))
        clash = {f.name for f in own} & {f.name for f in PRIVATE_FIELDS}
        if clash:
            raise ValueError(f"{path}: topic {full_name!r} redefines private fields {sorted(clash)}")
        topics[name] = TopicSpec(component, kind, name, PRIVATE_FIELDS + own, _text(elt, "Description"))
    return topics


def _is_indexed(name: str, schema_dir: Path) -> bool:
    """Return True if ``SALSubsystems.xml`` gives ``name`` an ``IndexEnumeration`` other than ``no``."""
    path = schema_dir / "SALSubsystems.xml"
    if not path.exists():
        return False
    for elt in ET.parse(path).getroot().iter("SALSubsystem"):
        if _text(elt, "Name") == name:
            return _text(elt, "IndexEnumeration", "no").lower() != "no"
    return False


@functools.cache
def _load_cached(name: str, schema_dir: Path) -> ComponentInterface:
    generics = schema_dir / "SALGenerics.xml"
    if not generics.exists():
        raise FileNotFoundError(f"generic interface {generics} not found")
    gen_cmds = _parse_file(generics, "SALCommand", TopicKind.COMMAND, name)
    gen_evts = _parse_file(generics, "SALEvent", TopicKind.EVENT, name)
    missing = sorted(set(GENERIC_COMMANDS) - set(gen_cmds)) + sorted(set(GENERIC_EVENTS) - set(gen_evts))
    if missing:
        raise ValueError(f"{generics} lacks generic topics {missing}")
    comp_dir = schema_dir / name
    if not comp_dir.is_dir():
        raise FileNotFoundError(f"no interface for component {name!r}: {comp_dir} is not a directory")
    commands = {n: gen_cmds[n] for n in GENERIC_COMMANDS}
    events = {n: gen_evts[n] for n in GENERIC_EVENTS}
    for n, spec in _parse_file(
        comp_dir / f"{name}_Commands.xml", "SALCommand", TopicKind.COMMAND, name
    ).items():
        if n in commands:
            raise ValueError(f"{name}: command {n!r} duplicates a generic command")
        commands[n] = spec
    for n, spec in _parse_file(comp_dir / f"{name}_Events.xml", "SALEvent", TopicKind.EVENT, name).items():
        if n in events:
            raise ValueError(f"{name}: event {n!r} duplicates a generic event")
        events[n] = spec
    telemetry = _parse_file(comp_dir / f"{name}_Telemetry.xml", "SALTelemetry", TopicKind.TELEMETRY, name)
    ackcmd = TopicSpec(name, TopicKind.ACKCMD, "ackcmd", PRIVATE_FIELDS + _ACKCMD_FIELDS, "Command acks.")
    return ComponentInterface(
        name=name,
        commands=dict(sorted(commands.items())),
        events=dict(sorted(events.items())),
        telemetry=dict(sorted(telemetry.items())),
        ackcmd=ackcmd,
        indexed=_is_indexed(name, schema_dir),
    )


def load_interface(name: str, schema_dir: Path | str | None = None) -> ComponentInterface:
    """Return the interface of component ``name`` (parsed once per schema directory).

    Parameters
    ----------
    name : `str`
        Component name, e.g. ``"AuxTelWEP"``.
    schema_dir : `pathlib.Path` or `str`, optional
        Directory with ``SALGenerics.xml`` and one folder per component; default `get_schema_dir`.

    Raises
    ------
    FileNotFoundError
        If the component has no folder or SALGenerics.xml is missing.
    ValueError
        If the XML is malformed (unknown type, duplicate topic, private field redefined).
    """
    path = Path(schema_dir) if schema_dir is not None else get_schema_dir()
    return _load_cached(name, path.resolve())
