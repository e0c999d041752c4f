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
