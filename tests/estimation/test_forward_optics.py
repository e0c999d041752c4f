"""The danish factory of the forward model: our numpy vertex merge gives danish's own mesh."""

from __future__ import annotations

import danish
import numpy as np
import pytest

from lsst.ts.auxtelwep.estimation.forward_optics import make_factory


@pytest.mark.parametrize("field_rad", [(0.0, 0.0), (1.0e-4, -5.0e-4), (-1.2e-3, 3.0e-4)])
def test_mesh_matches_danish(field_rad: tuple[float, float]) -> None:
    ours = make_factory(21.6, 10e-6, 677e-9)
    assert isinstance(ours, danish.DonutTriangleFactory)
    reference = danish.DonutTriangleFactory(
        nrad=ours.nrad,
        R_outer=ours.R_outer,
        R_inner=ours.R_inner,
        pupil_R_outer=ours.pupil_R_outer,
        pupil_R_inner=ours.pupil_R_inner,
        mask_params=ours.mask_params,
        focal_length=ours.focal_length,
        pixel_scale=ours.pixel_scale,
    )
    mesh, expected = ours._get_mesh(*field_rad), reference._get_mesh(*field_rad)
    # Triangles share corners: the merge has work to do.
    assert len(expected["vertices"]) < len(expected["triangles"])
    np.testing.assert_array_equal(mesh["vertices"], expected["vertices"])
    np.testing.assert_array_equal(mesh["triangles"], expected["triangles"])
    assert mesh["triangle_area_sum"] == pytest.approx(expected["triangle_area_sum"], rel=1e-14)


def test_annulus_built_once_per_factory() -> None:
    factory = make_factory(21.6, 20e-6, 677e-9)
    first = factory.build_annulus_mesh(nrad=factory.nrad, naz=factory.naz)
    assert factory.build_annulus_mesh(nrad=factory.nrad, naz=factory.naz) is first
    assert factory.build_annulus_mesh(nrad=10, naz=50) is not first
