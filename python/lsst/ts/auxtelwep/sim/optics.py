"""Donut images: rays through the perturbed AuxTel model, blurred by the atmosphere (the public face).

The work is done in three modules, re-exported here:

- `lsst.ts.auxtelwep.sim.donut`: the ray trace to assembled-frame pixels, the two renderers
  (``method="expected"`` and ``"photons"``), the Kolmogorov kernel and adding a donut to a frame; its
  docstring says how a donut is made and states the conventions.
- `lsst.ts.auxtelwep.sim.truth`: the injected in-focus wavefront (`true_zernikes`) and `StampTruth`.
- `lsst.ts.auxtelwep.sim.stamp_pair`: `render_stamp_pair`, intra/extra stamps of one star with their truth.
"""

from __future__ import annotations

from .donut import (
    MAX_PHOTONS,
    PUPIL_INNER_RADIUS_M,
    PUPIL_OUTER_RADIUS_M,
    RenderedDonut,
    RenderMethod,
    add_donut,
    donut_centroid,
    render_donut,
    seeing_kernel,
    trace_to_pixels,
)
from .stamp_pair import StampPair, render_stamp_pair
from .truth import StampTruth, true_zernikes

__all__ = [
    "MAX_PHOTONS",
    "PUPIL_INNER_RADIUS_M",
    "PUPIL_OUTER_RADIUS_M",
    "RenderMethod",
    "RenderedDonut",
    "StampPair",
    "StampTruth",
    "add_donut",
    "donut_centroid",
    "render_donut",
    "render_stamp_pair",
    "seeing_kernel",
    "trace_to_pixels",
    "true_zernikes",
]
