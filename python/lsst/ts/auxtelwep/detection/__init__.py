"""Donut detection: three modes (wcs, refit, template), chosen by the quality of the WCS."""
