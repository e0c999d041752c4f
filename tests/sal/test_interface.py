"""Interface XML parsing and the package's exports."""

import pytest

from lsst.ts.auxtelwep import sal
from lsst.ts.auxtelwep.sal import GENERIC_COMMANDS, GENERIC_EVENTS, TopicKind, load_interface


def test_auxtelwep_interface():
    iface = load_interface("AuxTelWEP")
    assert set(GENERIC_COMMANDS) <= set(iface.commands)
    assert {"runWEP", "startClosedLoop", "stopClosedLoop", "issueCorrection"} <= set(iface.commands)
    assert set(GENERIC_EVENTS) <= set(iface.events)
    wfe = iface.events["wavefrontError"]
    assert wfe.dds_name == "AuxTelWEP_logevent_wavefrontError"
    assert wfe.kind is TopicKind.EVENT
    fields = {f.name: f for f in wfe.fields}
    assert fields["nollZernikeValues"].count == 28
    assert fields["nollZernikeValues"].units == "um"
    assert fields["salIndex"].type_name == "int32"
    assert set(iface.telemetry) == {"zernikeCorrection", "hexapodCorrection"}
    ack_fields = set(iface.ackcmd.field_names)
    assert {
        "ack",
        "error",
        "result",
        "identity",
        "origin",
        "cmdtype",
        "timeout",
        "private_seqNum",
    } <= ack_fields


def test_other_components():
    cam = load_interface("ATCamera").events["endReadout"]
    assert {"imageName", "additionalKeys", "additionalValues"} <= set(cam.field_names)
    assert "statusCode" in load_interface("ATOODS").events["imageInOODS"].field_names
    offset = load_interface("ATAOS").commands["offset"]
    assert {"x", "y", "z", "u", "v", "w", "m1", "m2"} <= set(offset.field_names)


# The topics of other components that we declare, as ts_xml declares them (lsst-ts/ts_xml
# python/lsst/ts/xml/data/sal_interfaces, same at 27caacc, ec52d38 and v28.0.1): fields in order, with
# their types. A DDS type is its fields in order, so any difference breaks talking to the real component.
_F32, _F64, _I32, _STR = "float32", "float64", "int32", "string"
TS_XML_TOPICS = {
    ("ATAOS", "commands", "offset"): [(n, _F32) for n in ("x", "y", "z", "u", "v", "w", "m1", "m2")],
    ("ATAOS", "events", "hexapodCorrectionCompleted"): [("azimuth", _F64), ("elevation", _F64)]
    + [("temperature", _F64)]
    + [(f"hexapod_{a}", _F32) for a in "xyzuvw"],
    ("ATCamera", "events", "endReadout"): [
        ("additionalKeys", _STR),
        ("additionalValues", _STR),
        ("imagesInSequence", _I32),
        ("imageName", _STR),
        ("imageIndex", _I32),
        ("imageSource", _STR),
        ("imageController", _STR),
        ("imageDate", _STR),
        ("imageNumber", _I32),
        ("timestampAcquisitionStart", _F64),
        ("requestedExposureTime", _F64),
        ("timestampEndOfReadout", _F64),
    ],
    ("ATHexapod", "commands", "moveToPosition"): [(a, _F64) for a in "xyzuvw"],
    ("ATHexapod", "commands", "applyPositionOffset"): [(a, _F64) for a in "xyzuvw"],
    ("ATHexapod", "events", "positionUpdate"): [(f"position{a}", _F64) for a in "XYZUVW"],
    ("ATOODS", "events", "imageInOODS"): [(n, _STR) for n in ("camera", "obsid", "raft", "sensor")]
    + [("statusCode", _I32), ("description", _STR)],
    # ATMCS telemetry at 19b06d2 (arrays of 100 samples).
    ("ATMCS", "telemetry", "mount_AzEl_Encoders"): [("cRIO_timestamp", _F64)]
    + [("elevationCalculatedAngle", _F64), ("azimuthCalculatedAngle", _F64)]
    + [(f"{axis}Encoder{k}Raw", _I32) for axis in ("elevation", "azimuth") for k in (1, 2, 3)]
    + [("trackId", _I32)],
    ("ATMCS", "telemetry", "mount_Nasmyth_Encoders"): [("cRIO_timestamp", _F64)]
    + [("nasmyth1CalculatedAngle", _F64), ("nasmyth2CalculatedAngle", _F64)]
    + [(f"nasmyth{n}Encoder{k}Raw", _I32) for n in (1, 2) for k in (1, 2, 3)]
    + [("trackId", _I32)],
}


@pytest.mark.parametrize(("component", "kind", "topic"), sorted(TS_XML_TOPICS))
def test_other_components_are_declared_as_in_ts_xml(component, kind, topic):
    spec = getattr(load_interface(component), kind)[topic]
    fields = [(f.name, f.type_name) for f in spec.fields if not f.name.startswith("private_")]
    assert [f for f in fields if f[0] != "salIndex"] == TS_XML_TOPICS[component, kind, topic]


def test_bad_xml(tmp_path):
    (tmp_path / "SALGenerics.xml").write_text((sal.get_schema_dir() / "SALGenerics.xml").read_text())
    with pytest.raises(FileNotFoundError, match="NoSuch"):
        load_interface("NoSuch", tmp_path)
    comp = tmp_path / "Bad"
    comp.mkdir()
    (comp / "Bad_Events.xml").write_text(
        "<SALEventSet><SALEvent><EFDB_Topic>Bad_logevent_x</EFDB_Topic>"
        "<item><EFDB_Name>y</EFDB_Name><IDL_Type>quaternion</IDL_Type></item></SALEvent></SALEventSet>"
    )
    with pytest.raises(ValueError, match="quaternion"):
        load_interface("Bad", tmp_path)


def test_all_matches_exports():
    for name in sal.__all__:
        assert hasattr(sal, name), name
    assert len(sal.__all__) == len(set(sal.__all__))
    public = {n for n in dir(sal) if not n.startswith("_") and not isinstance(getattr(sal, n), type(sal))}
    assert public <= set(sal.__all__), sorted(public - set(sal.__all__))
