"""The diffraction donut (`forward_optics.fresnel_image`) against danish's geometric one."""

from __future__ import annotations

import numpy as np
import pytest

from lsst.ts.auxtelwep.errors import InputError
from lsst.ts.auxtelwep.estimation.forward_optics import design_references, fresnel_image, make_factory
from lsst.ts.auxtelwep.instrument import AuxTel, Role


@pytest.mark.parametrize(("binning", "npix"), [(1, 243), (2, 121), (4, 61)])
def test_fresnel_donut_is_centred_and_oriented_like_danish(binning: int, npix: int) -> None:
    tel = AuxTel()
    ab = design_references(tel, Role.EXTRA, 0.0, 0.0) * 1e-6
    ab[7] += 0.2e-6  # 200 nm of coma: moves the centroid by about 2.8 px, which fixes the orientation
    image = fresnel_image(
        ab, npix=npix, binning=binning, wavelengths_m=(677e-9,), focal_length_m=tel.focal_length_m
    )
    geometric = make_factory(tel.focal_length_m, 10e-6 * binning, 677e-9).image(
        aberrations=ab, thx=0.0, thy=0.0, npix=npix
    )
    yy, xx = (np.mgrid[:npix, :npix] - (npix - 1) / 2) * binning

    def centroid(a):
        return np.array([np.sum(a * xx), np.sum(a * yy)]) / a.sum()

    # Nearly all the light lands in the stamp (the diffraction halo beyond 120 px holds < 1 %).
    assert 0.99 < image.sum() <= 1.0
    # Same centroid as the geometric donut within 0.3 px (measured 0.15 px in y: OPD vs transverse
    # aberration of the coma term; 0 in x): a flip or a half-pixel error would show as 2.8 or 0.5 px.
    assert np.allclose(centroid(image), centroid(geometric), atol=0.3)
    # The geometric hole is empty; diffraction puts light at its centre.
    c = npix // 2
    assert geometric[c, c] == 0.0
    assert image[c, c] > 0.1 * image[c, c + 60 // binning]


def test_fresnel_refuses_a_too_coarse_fft() -> None:
    # 300 nm on a 243 px stamp needs an FFT smaller than the pupil sampling.
    with pytest.raises(InputError, match="FFT size"):
        fresnel_image(np.zeros(23), npix=2001, binning=1, wavelengths_m=(301e-9,), focal_length_m=21.6)
